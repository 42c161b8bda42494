// Real socketcluster-client sockets for the server API interop test.
//
//   node api-clients.mjs '<JSON list of clients>'
//
// Each client is {"name", "url", "token" (optional), "channels": [...]}: it
// connects (no automatic reconnect), authenticates with the token when
// given, subscribes to its channels and then reports, one JSON line each:
//   {"name", "event": "ready"}                       subscribed to all
//   {"name", "event": "message", "channel", "data"}  a channel message
//   {"name", "event": "kickOut", "channel"}          the server unsubscribed it
//   {"name", "event": "disconnect", "code", "reason"}
//   {"name", "event": "error", "message"}
// It runs until killed or SCC_INTEROP_TIMEOUT ms (default 60000) pass.
import socketClusterClient from 'socketcluster-client';

const clients = JSON.parse(process.argv[2]);
const timeout = Number(process.env.SCC_INTEROP_TIMEOUT || 60000);
setTimeout(() => process.exit(2), timeout).unref();

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function run(c) {
  const url = new URL(c.url);
  const socket = socketClusterClient.create({
    hostname: url.hostname,
    port: Number(url.port),
    path: url.pathname,
    autoReconnect: false,
    connectTimeout: 5000,
    ackTimeout: 5000,
  });
  (async () => {
    for await (const ev of socket.listener('disconnect')) {
      emit({ name: c.name, event: 'disconnect', code: ev.code, reason: ev.reason });
    }
  })();
  (async () => {
    for await (const ev of socket.listener('kickOut')) {
      emit({ name: c.name, event: 'kickOut', channel: ev.channel });
    }
  })();
  (async () => {
    for await (const { error } of socket.listener('error')) {
      emit({ name: c.name, event: 'error', message: error && error.message });
    }
  })();
  await socket.listener('connect').once();
  if (c.token) {
    await socket.authenticate(c.token);
  }
  for (const name of c.channels) {
    const ch = socket.subscribe(name);
    (async () => {
      for await (const data of ch) {
        emit({ name: c.name, event: 'message', channel: name, data });
      }
    })();
    await ch.listener('subscribe').once();
  }
  emit({ name: c.name, event: 'ready', id: socket.id });
}

await Promise.all(clients.map((c) => run(c).catch((err) => emit({ name: c.name, event: 'error', message: String(err) }))));
await new Promise(() => {});
