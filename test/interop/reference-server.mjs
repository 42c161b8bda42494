// A stock socketcluster-server 20 with the same environment contract as
// scc-frontend: SOCKETCLUSTER_PORT, SCC_FRONTEND_HOST, SCC_CLIENT_AUTH_KEY,
// SCC_PING_INTERVAL, SCC_PING_TIMEOUT, SCC_PROTOCOL_VERSION; /healthz and /readyz on the same port,
// WebSocket at /socketcluster/.
//
// It is the reference implementation client.mjs is checked against, and the
// server capture-frames.mjs taps. Beyond the stock server it has:
//   - invoking a procedure nobody serves fails at once with
//     NoMatchingProcedureError (a stock server lets it time out);
//   - procedures for the captures: echo, fail, login, kickMe, batchMe.
//
// Run: node reference-server.mjs   (prints {"listening":PORT} on stdout)
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import socketClusterServer from 'socketcluster-server';

const PROCEDURES = new Set(['echo', 'fail', 'login', 'kickMe', 'batchMe']);

// parseDuration reads bare milliseconds ("1000") or Go-style "1s"/"250ms".
export function parseDuration(value, fallback) {
  if (value == null || value === '') return fallback;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(String(value).trim());
  if (!m) throw new Error(`bad duration: ${value}`);
  const n = Number(m[1]);
  return Math.round(m[2] === 's' ? n * 1000 : m[2] === 'm' ? n * 60000 : n);
}

// startReferenceServer starts the server and resolves once it listens.
// onFrame(direction, socketId, frame) sees every WebSocket text frame:
// direction is 'C>S' or 'S>C'.
export async function startReferenceServer(opts = {}) {
  const httpServer = http.createServer((req, res) => {
    const path = (req.url || '').split('?')[0];
    if (path === '/healthz' || path === '/readyz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
    if (path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('');
      return;
    }
    res.writeHead(404);
    res.end();
  });

  const options = {
    path: '/socketcluster/',
    pingInterval: opts.pingInterval ?? 8000,
    pingTimeout: opts.pingTimeout ?? 30000,
    protocolVersion: opts.protocolVersion ?? 2,
  };
  if (opts.authKey) options.authKey = opts.authKey;
  const agServer = socketClusterServer.attach(httpServer, options);

  let nextConn = 0;
  if (opts.onFrame) {
    agServer.wsServer.on('connection', (ws) => {
      const conn = ++nextConn;
      const send = ws.send;
      ws.send = function (data, ...rest) {
        opts.onFrame('S>C', conn, typeof data === 'string' ? data : String(data));
        return send.call(this, data, ...rest);
      };
      ws.on('message', (buf, isBinary) => {
        opts.onFrame('C>S', conn, isBinary ? `<binary ${buf.length} bytes>` : buf.toString());
      });
    });
  }

  agServer.setMiddleware(agServer.MIDDLEWARE_INBOUND, async (stream) => {
    for await (const action of stream) {
      if (action.type === action.INVOKE && !PROCEDURES.has(action.procedure)) {
        const err = new Error(`No procedure named ${action.procedure}`);
        err.name = 'NoMatchingProcedureError';
        action.block(err);
        continue;
      }
      action.allow();
    }
  });

  (async () => {
    for await (const { socket } of agServer.listener('connection')) {
      serveSocket(agServer, socket);
    }
  })();
  (async () => {
    for await (const { error } of agServer.listener('error')) {
      if (opts.onError) opts.onError(error);
    }
  })();

  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve);
  });

  return {
    agServer,
    httpServer,
    port: httpServer.address().port,
    async close() {
      await agServer.close();
      httpServer.closeAllConnections?.();
      await new Promise((resolve) => httpServer.close(() => resolve()));
    },
  };
}

function serveProcedure(socket, name, handler) {
  (async () => {
    for await (const req of socket.procedure(name)) {
      try {
        await handler(req);
      } catch (err) {
        req.error(err);
      }
    }
  })();
}

function serveSocket(agServer, socket) {
  serveProcedure(socket, 'echo', (req) => req.end(req.data));
  serveProcedure(socket, 'fail', (req) => {
    const err = new Error('Procedure failed on purpose');
    err.name = 'MyAppError';
    err.extra = 42;
    req.error(err);
  });
  serveProcedure(socket, 'login', async (req) => {
    await socket.setAuthToken({ username: (req.data && req.data.username) || 'alice' });
    req.end();
  });
  serveProcedure(socket, 'kickMe', (req) => {
    socket.kickOut(req.data.channel, req.data.message);
    req.end();
  });
  serveProcedure(socket, 'batchMe', async (req) => {
    socket.startBatching();
    socket.transmit('b1', 1);
    socket.transmit('b2', 2);
    await agServer.exchange.invokePublish(req.data.channel, 'batched-pub');
    req.end();
    // Let the publish reach this socket's buffer before the flush.
    setTimeout(() => socket.stopBatching(), 20);
  });
}

async function main() {
  const server = await startReferenceServer({
    port: Number(process.env.SOCKETCLUSTER_PORT || 8000),
    host: process.env.SCC_FRONTEND_HOST || '127.0.0.1',
    authKey: process.env.SCC_CLIENT_AUTH_KEY || undefined,
    pingInterval: parseDuration(process.env.SCC_PING_INTERVAL, 8000),
    pingTimeout: parseDuration(process.env.SCC_PING_TIMEOUT, 30000),
    protocolVersion: Number(process.env.SCC_PROTOCOL_VERSION || 2),
    onFrame: process.env.SCC_TRACE_FRAMES
      ? (dir, conn, frame) => process.stderr.write(`${conn} ${dir} ${frame}\n`)
      : undefined,
  });
  process.stdout.write(JSON.stringify({ listening: server.port }) + '\n');
  const stop = async () => {
    await server.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    process.stderr.write(`${err.stack || err}\n`);
    process.exit(1);
  });
}
