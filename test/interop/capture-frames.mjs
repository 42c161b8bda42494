// Captures real frames between socketcluster-client 20 and
// socketcluster-server 20 (reference-server.mjs) and writes them to
// protocol/testdata/frames/*.txt for the protocol package's golden tests and
// fuzz seeds: one frame per line, "C>S <frame>" or "S>C <frame>"; lines
// starting with '#' describe the step that follows.
//
//   node capture-frames.mjs [outdir]
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import socketClusterClient from 'socketcluster-client';
import { startReferenceServer } from './reference-server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const outDir = process.argv[2] || path.join(here, '..', '..', 'protocol', 'testdata', 'frames');
const authKey = 'capture-key';

let lines = null;
function note(text) {
  lines.push(`# ${text}`);
}
function onFrame(dir, conn, frame) {
  if (lines) lines.push(`${dir} ${frame}`);
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}
function signJWT(payload, key) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(payload));
  const sig = b64url(crypto.createHmac('sha256', key).update(`${head}.${body}`).digest());
  return `${head}.${body}.${sig}`;
}
const now = Math.floor(Date.now() / 1000);
const goodToken = signJWT({ username: 'alice', iat: now, exp: now + 3600 }, authKey);
const expiredToken = signJWT({ username: 'alice', iat: now - 7200, exp: now - 3600 }, authKey);
const badSigToken = signJWT({ username: 'alice', iat: now, exp: now + 3600 }, 'another-key');

// A storage that starts with a token, so the handshake carries it.
function presetAuth(token) {
  let stored = token;
  return {
    loadToken: async () => stored,
    saveToken: async (name, t) => (stored = t),
    removeToken: async () => {
      const old = stored;
      stored = null;
      return old;
    },
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// collector consumes a channel from now on; the function it returns waits
// until one more message than last time has arrived.
function collector(ch) {
  const got = [];
  (async () => {
    for await (const d of ch) got.push(d);
  })();
  let seen = 0;
  return async () => {
    seen++;
    for (let i = 0; i < 200 && got.length < seen; i++) await sleep(5);
    if (got.length < seen) throw new Error(`channel ${ch.name}: no message ${seen}`);
  };
}

async function connect(port, extra = {}) {
  const socket = socketClusterClient.create({
    hostname: '127.0.0.1',
    port,
    autoReconnect: false,
    ...extra,
  });
  (async () => {
    for await (const _ of socket.listener('error')) {
      // Expected errors (bad tokens, kicked out) are part of the captures.
    }
  })();
  const status = await socket.listener('connect').once();
  return { socket, status };
}

async function close(...sockets) {
  for (const s of sockets) s.disconnect();
  await sleep(50);
}

async function scenario(name, server, fn) {
  lines = [];
  await fn(server.port);
  await sleep(50);
  fs.writeFileSync(path.join(outDir, `${name}.txt`), lines.join('\n') + '\n');
  process.stdout.write(`${name}: ${lines.filter((l) => !l.startsWith('#')).length} frames\n`);
  lines = null;
}

async function main() {
  fs.mkdirSync(outDir, { recursive: true });
  const server = await startReferenceServer({ authKey, pingInterval: 150, pingTimeout: 3000, onFrame });
  const v1 = await startReferenceServer({ authKey, pingInterval: 150, pingTimeout: 3000, protocolVersion: 1, onFrame });

  await scenario('handshake', server, async (port) => {
    note('no token, then one ping and pong (protocol v2: empty frames)');
    let c = await connect(port);
    await c.socket.listener('message').once();
    await sleep(20);
    await close(c.socket);

    note('valid token');
    c = await connect(port, { authEngine: presetAuth(goodToken) });
    await close(c.socket);

    note('expired token: authError and #removeAuthToken');
    c = await connect(port, { authEngine: presetAuth(expiredToken) });
    await sleep(20);
    await close(c.socket);

    note('token signed with another key: authError and #removeAuthToken');
    c = await connect(port, { authEngine: presetAuth(badSigToken) });
    await sleep(20);
    await close(c.socket);

    note('not a JWT at all');
    c = await connect(port, { authEngine: presetAuth('garbage.token.value') });
    await sleep(20);
    await close(c.socket);
  });

  await scenario('ping-v1', v1, async (port) => {
    note('protocol v1: ping "#1", pong "#2"');
    const c = await connect(port, { protocolVersion: 1 });
    await c.socket.listener('message').once();
    await sleep(200);
    await close(c.socket);
  });

  await scenario('subscribe', server, async (port) => {
    const c = await connect(port);
    note('plain subscribe');
    let ch = c.socket.subscribe('room1');
    await ch.listener('subscribe').once();
    note('subscribe with data');
    ch = c.socket.subscribe('room2', { data: { token: 'x' } });
    await ch.listener('subscribe').once();
    note('waitForAuth subscribe: sent only once authenticated');
    ch = c.socket.subscribe('private', { waitForAuth: true, data: { k: 'v' } });
    const subscribed = ch.listener('subscribe').once();
    await sleep(20);
    await c.socket.authenticate(goodToken);
    await subscribed;
    note('subscribe with falsy data: data is not sent');
    ch = c.socket.subscribe('room3', { data: 0 });
    await ch.listener('subscribe').once();
    note('invalid channel name');
    try {
      await c.socket.invoke('#subscribe', { channel: 5 });
    } catch {}
    await close(c.socket);
  });

  await scenario('publish', server, async (port) => {
    const a = await connect(port);
    const b = await connect(port);
    const ch = a.socket.subscribe('room1');
    await ch.listener('subscribe').once();
    const next = collector(ch);
    note('transmitPublish: no cid; echoed to the publisher');
    a.socket.transmitPublish('room1', { text: 'hi via transmitPublish' });
    await next();
    note('invokePublish: cid, ack and echo');
    await a.socket.invokePublish('room1', { text: 'hi via invokePublish' });
    await next();
    note('a publish from a socket that is not subscribed');
    await b.socket.invokePublish('room1', { text: 'from b', n: [1, 2.5, -3e-7, null, true], s: 'é "q" \\ \n \u2028 </script>' });
    await next();
    note('scalar data');
    for (const v of ['plain', 0, false, null, 12345678901234567890]) {
      await b.socket.invokePublish('room1', v);
      await next();
    }
    note('publish with no data');
    await b.socket.invokePublish('room1');
    await next();
    note('a malformed publish');
    try {
      await b.socket.invoke('#publish', { channel: { not: 'a string' }, data: 1 });
    } catch {}
    await close(a.socket, b.socket);
  });

  await scenario('unsubscribe', server, async (port) => {
    const a = await connect(port);
    const ch = a.socket.subscribe('room2');
    await ch.listener('subscribe').once();
    note('unsubscribe: a transmit with the bare channel name, no reply');
    a.socket.unsubscribe('room2');
    await sleep(20);
    note('unsubscribe as an invoke from a channel the socket is not in');
    try {
      await a.socket.invoke('#unsubscribe', 'zzz');
    } catch {}
    await close(a.socket);
  });

  await scenario('invoke', server, async (port) => {
    const a = await connect(port);
    note('custom transmit: no reply');
    a.socket.transmit('hello', { a: 1 });
    note('invoke with a reply');
    await a.socket.invoke('echo', { b: 2 });
    note('invoke with data undefined: no data key');
    await a.socket.invoke('echo');
    note('invoke that fails with a custom error');
    try {
      await a.socket.invoke('fail', null);
    } catch {}
    note('invoke of a procedure nobody serves');
    try {
      await a.socket.invoke('noSuchProcedure', [1, 2]);
    } catch {}
    await close(a.socket);
  });

  await scenario('auth', server, async (port) => {
    const a = await connect(port);
    note('authenticate with a valid token');
    await a.socket.authenticate(goodToken);
    note('client deauthenticate: #removeAuthToken, no data');
    await a.socket.deauthenticate();
    await sleep(20);
    note('authenticate with garbage: error and #removeAuthToken');
    try {
      await a.socket.authenticate('garbage.token.value');
    } catch {}
    note('authenticate with an expired token');
    try {
      await a.socket.authenticate(expiredToken);
    } catch {}
    note('server setAuthToken: #setAuthToken');
    await a.socket.invoke('login', { username: 'bob' });
    await sleep(20);
    note('server kickOut');
    const ch = a.socket.subscribe('room1');
    await ch.listener('subscribe').once();
    await a.socket.invoke('kickMe', { channel: 'room1', message: 'bye' });
    await sleep(20);
    await close(a.socket);
  });

  await scenario('batch', server, async (port) => {
    const a = await connect(port);
    const ch = a.socket.subscribe('room2');
    await ch.listener('subscribe').once();
    const next = collector(ch);
    note('client batch');
    a.socket.startBatching();
    a.socket.transmit('e1', 1);
    a.socket.transmit('e2', 2);
    a.socket.transmitPublish('room2', 'p');
    a.socket.stopBatching();
    await next();
    note('server batch');
    await a.socket.invoke('batchMe', { channel: 'room2' });
    await next();
    await sleep(50);
    await close(a.socket);
  });

  await server.close();
  await v1.close();
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`${err.stack || err}\n`);
    process.exit(1);
  },
);
