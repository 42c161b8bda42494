// Checks of scc-frontend's rpc hook with the real socketcluster-client.
//
//   node rpc-hook-client.mjs --url ws://127.0.0.1:8000/socketcluster/ --mode up
//
// --mode up: the frontend's SCC_PROXY_RPC_URL is the test's backend, which
// answers chat.history with a result, deny with an error object and slow
// not at all (the frontend's hook timeout is far below the client's
// ackTimeout). --mode down: nothing listens at SCC_PROXY_RPC_URL.
//
// Prints one JSON line per check, {"check":NAME,"ok":BOOL,...}, then
// {"summary":true,...}; exits 0 when every check passed.
import { isDeepStrictEqual } from 'node:util';
import socketClusterClient from 'socketcluster-client';

const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const url = new URL(arg('--url'));
const mode = arg('--mode') || 'up';
const results = [];
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const hardTimer = setTimeout(() => {
  emit({ check: 'overall-timeout', ok: false, error: 'run did not finish within 30s' });
  process.exit(2);
}, 30000);
hardTimer.unref();

async function check(name, fn) {
  try {
    const detail = await fn();
    results.push({ check: name, ok: true });
    emit({ check: name, ok: true, detail });
  } catch (err) {
    results.push({ check: name, ok: false });
    emit({ check: name, ok: false, error: String(err && err.message ? err.message : err), errorName: err && err.name });
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// rejection returns the error an invoke rejects with, failing if it resolves.
async function rejection(p) {
  try {
    const res = await p;
    throw new Error(`resolved with ${JSON.stringify(res)}`);
  } catch (err) {
    return err;
  }
}

const socket = socketClusterClient.create({
  hostname: url.hostname,
  port: Number(url.port),
  path: url.pathname,
  autoReconnect: false,
  ackTimeout: 10000,
});

await check('rpc-hook-handshake', async () => {
  const ev = await Promise.race([
    socket.listener('connect').once(),
    new Promise((_, rej) => setTimeout(() => rej(new Error('no connect within 5s')), 5000)),
  ]);
  return { id: ev.id };
});

if (mode === 'up') {
  await check('rpc-hook-result', async () => {
    const res = await socket.invoke('chat.history', { room: 'r1' });
    assert(isDeepStrictEqual(res, { room: 'r1', messages: ['hi'] }), `result ${JSON.stringify(res)}`);
    return res;
  });
  await check('rpc-hook-error-object', async () => {
    const err = await rejection(socket.invoke('deny', { room: 'r1' }));
    assert(err.name === 'NotAllowedError', `name ${err.name}`);
    assert(err.message === 'Not in this room', `message ${err.message}`);
    assert(err.room === 'r1', `extra property ${err.room}`);
    return { name: err.name, message: err.message };
  });
  await check('rpc-hook-timeout', async () => {
    const t0 = Date.now();
    const err = await rejection(socket.invoke('slow', null));
    assert(err.name === 'TimeoutError', `name ${err.name}: ${err.message}`);
    // The frontend's hook timeout answered, not the client's ackTimeout.
    assert(Date.now() - t0 < 9000, `took ${Date.now() - t0}ms`);
    return { message: err.message };
  });
} else {
  await check('rpc-hook-backend-down', async () => {
    const err = await rejection(socket.invoke('chat.history', { room: 'r1' }));
    assert(err.name === 'BackendError', `name ${err.name}: ${err.message}`);
    assert(!/127\.0\.0\.1/.test(err.message), `message names the backend: ${err.message}`);
    return { message: err.message };
  });
}
await check('rpc-hook-still-connected', async () => {
  assert(socket.state === socket.OPEN, `state ${socket.state}`);
});

socket.disconnect();
const failed = results.filter((r) => !r.ok).length;
emit({ summary: true, passed: results.length - failed, failed });
process.exit(failed ? 1 : 0);
