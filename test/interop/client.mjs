// Interop checks with the real socketcluster-client against a server.
//
//   node client.mjs --url ws://127.0.0.1:8000/socketcluster/
//
// Environment:
//   SCC_INTEROP_URL           the URL, when --url is not given
//   SCC_CLIENT_AUTH_KEY       the server's JWT key (HS256); required
//   SCC_INTEROP_TIMEOUT       hard limit for the whole run in ms (default 30000)
//   SCC_INTEROP_STEP_TIMEOUT  limit for each wait in ms (default 5000)
//   SCC_INTEROP_PING_TIMEOUT  expected pingTimeout in the handshake (optional)
//   SCC_INTEROP_MIN_PINGS     pings the first client must see before the
//                             forced reconnect (default 2)
//   SCC_INTEROP_ECHO_PROCEDURE  a procedure that answers with its data, if
//                             the server has one (optional)
//   SCC_INTEROP_PROTOCOL_VERSION  1 (#1/#2 pings) or 2 (empty frames, the
//                             default); the server must be configured alike
//
// Prints one JSON line per check: {"check":NAME,"ok":BOOL,"ms":N,...}; lines
// with "event" are diagnostics. The last line is {"summary":true,...}. Exits
// 0 when every check passed, 1 when one failed, 2 on the hard timeout.
import crypto from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import socketClusterClient from 'socketcluster-client';

const env = process.env;
const argURL = (() => {
  const i = process.argv.indexOf('--url');
  return i >= 0 ? process.argv[i + 1] : undefined;
})();
const url = new URL(argURL || env.SCC_INTEROP_URL || 'ws://127.0.0.1:8000/socketcluster/');
const authKey = env.SCC_CLIENT_AUTH_KEY;
const totalTimeout = Number(env.SCC_INTEROP_TIMEOUT || 30000);
const stepTimeout = Number(env.SCC_INTEROP_STEP_TIMEOUT || 5000);
const expectPingTimeout = env.SCC_INTEROP_PING_TIMEOUT ? Number(env.SCC_INTEROP_PING_TIMEOUT) : null;
const minPings = Number(env.SCC_INTEROP_MIN_PINGS ?? 2);
const echoProcedure = env.SCC_INTEROP_ECHO_PROCEDURE || '';
const protocolVersion = Number(env.SCC_INTEROP_PROTOCOL_VERSION || 2);
const pingFrame = protocolVersion === 1 ? '#1' : '';

const results = [];
const started = Date.now();

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function finish(code) {
  const failed = results.filter((r) => !r.ok).length;
  emit({ summary: true, passed: results.length - failed, failed, ms: Date.now() - started });
  process.exit(code ?? (failed ? 1 : 0));
}

const hardTimer = setTimeout(() => {
  results.push({ check: 'overall-timeout', ok: false });
  emit({ check: 'overall-timeout', ok: false, error: `run did not finish within ${totalTimeout}ms` });
  finish(2);
}, totalTimeout);
hardTimer.unref();

// check runs one named check; a failure is recorded and the run goes on.
async function check(name, fn) {
  const t0 = Date.now();
  try {
    const detail = await fn();
    const r = { check: name, ok: true, ms: Date.now() - t0 };
    if (detail !== undefined) r.detail = detail;
    results.push(r);
    emit(r);
    return true;
  } catch (err) {
    const r = { check: name, ok: false, ms: Date.now() - t0, error: String(err && err.message ? err.message : err) };
    if (err && err.name) r.errorName = err.name;
    results.push(r);
    emit(r);
    return false;
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// Inbox records what a stream yields and lets checks wait for an item.
class Inbox {
  constructor() {
    this.items = [];
    this.waiters = new Set();
  }
  push(item) {
    this.items.push(item);
    for (const w of this.waiters) w();
  }
  mark() {
    return this.items.length;
  }
  since(mark) {
    return this.items.slice(mark);
  }
  // waitFor resolves with the first item from index from on that matches
  // pred, waiting at most ms.
  async waitFor(pred, what, from = 0, ms = stepTimeout) {
    const find = () => {
      for (let i = from; i < this.items.length; i++) {
        if (pred(this.items[i])) return { item: this.items[i] };
      }
      return null;
    };
    const found = find();
    if (found) return found.item;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`timed out after ${ms}ms waiting for ${what}`));
      }, ms);
      const w = () => {
        const f = find();
        if (f) {
          clearTimeout(timer);
          this.waiters.delete(w);
          resolve(f.item);
        }
      };
      this.waiters.add(w);
    });
  }

  // waitCount waits until at least n items arrived from index from on.
  async waitCount(n, what, from = 0, ms = stepTimeout) {
    await this.waitFor(() => this.items.length - from >= n, what, from, ms);
    return this.since(from);
  }
}

function pump(stream, inbox, map = (x) => x) {
  (async () => {
    for await (const item of stream) inbox.push(map(item));
  })();
  return inbox;
}

// expectError awaits promise, which must reject with an error named name.
async function expectError(promise, name) {
  let res;
  try {
    res = await withTimeout(promise, `a ${name}`);
  } catch (err) {
    assert(err.name === name, `error ${err.name}: ${err.message}, want ${name}`);
    return err;
  }
  throw new Error(`succeeded with ${JSON.stringify(res)}, want ${name}`);
}

// presetAuth is an auth engine that starts with a stored token, so the
// next handshake carries it.
function presetAuth(token) {
  const engine = {
    stored: token,
    removed: 0,
    loadToken: async () => engine.stored,
    saveToken: async (name, t) => (engine.stored = t),
    removeToken: async () => {
      const old = engine.stored;
      engine.stored = null;
      engine.removed++;
      return old;
    },
  };
  return engine;
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

// signJWT makes an HS256 token the way jsonwebtoken does.
function signJWT(payload, key) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(payload));
  const sig = b64url(crypto.createHmac('sha256', key).update(`${head}.${body}`).digest());
  return `${head}.${body}.${sig}`;
}

function withTimeout(promise, what, ms = stepTimeout) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// instrument wraps a client socket with inboxes for its events.
function instrument(name, socket) {
  const s = {
    name,
    socket,
    connects: pump(socket.listener('connect'), new Inbox()),
    disconnects: pump(socket.listener('disconnect'), new Inbox()),
    stateChanges: pump(socket.listener('subscribeStateChange'), new Inbox()),
    subscribes: pump(socket.listener('subscribe'), new Inbox()),
    raw: pump(socket.listener('message'), new Inbox(), ({ message }) => String(message)),
    channels: {},
  };
  (async () => {
    for await (const { error } of socket.listener('error')) {
      emit({ event: 'socket-error', socket: name, name: error && error.name, message: error && error.message });
    }
  })();
  (async () => {
    for await (const ev of socket.listener('disconnect')) {
      emit({ event: 'disconnect', socket: name, code: ev.code, reason: ev.reason });
    }
  })();
  s.subscribe = (channel, options) => {
    const ch = socket.subscribe(channel, options);
    if (!s.channels[channel]) s.channels[channel] = pump(ch, new Inbox());
    return ch;
  };
  s.pings = () => s.raw.items.filter((m) => m === pingFrame).length;
  return s;
}

function newClient(name, extra = {}) {
  const socket = socketClusterClient.create({
    protocolVersion,
    ...extra,
    hostname: url.hostname,
    port: Number(url.port || (url.protocol === 'wss:' ? 443 : 80)),
    secure: url.protocol === 'wss:',
    path: url.pathname || '/socketcluster/',
    connectTimeout: stepTimeout,
    ackTimeout: stepTimeout,
    autoReconnectOptions: { initialDelay: 100, randomness: 100, multiplier: 1, maxDelay: 500 },
  });
  return instrument(name, socket);
}

async function main() {
  assert(authKey, 'SCC_CLIENT_AUTH_KEY is not set');
  const run = crypto.randomBytes(4).toString('hex');
  const ch1 = `interop-${run}-main`;
  const ch2 = `interop-${run}-data`;
  const chAuth = `interop-${run}-auth`;
  emit({ event: 'start', url: url.href, client: socketClusterClient.version, protocolVersion, run });

  const A = newClient('A');
  const B = newClient('B');
  let statusA;
  let connectedAt = Date.now();

  await check('handshake', async () => {
    statusA = (await A.connects.waitFor(() => true, 'A connect')) || {};
    connectedAt = Date.now();
    const statusB = (await B.connects.waitFor(() => true, 'B connect')) || {};
    for (const st of [statusA, statusB]) {
      assert(typeof st.id === 'string' && st.id.length > 0, `id ${JSON.stringify(st.id)} is not a non-empty string`);
      assert(Number.isFinite(st.pingTimeout) && st.pingTimeout > 0, `pingTimeout ${st.pingTimeout} is not a positive number`);
      assert(st.isAuthenticated === false, `isAuthenticated is ${st.isAuthenticated}, want false`);
      assert(!st.authError, `unexpected authError ${JSON.stringify(st.authError)}`);
    }
    assert(statusA.id !== statusB.id, 'two sockets got the same id');
    assert(A.socket.state === 'open' && A.socket.authState === 'unauthenticated', `A state ${A.socket.state}/${A.socket.authState}`);
    return { id: statusA.id, pingTimeout: statusA.pingTimeout };
  });

  if (expectPingTimeout != null) {
    await check('handshake-ping-timeout', async () => {
      assert(statusA && statusA.pingTimeout === expectPingTimeout, `pingTimeout ${statusA && statusA.pingTimeout}, want ${expectPingTimeout}`);
    });
  }

  await check('subscribe', async () => {
    const ch = A.subscribe(ch1);
    await withTimeout(ch.listener('subscribe').once(), `subscribe to ${ch1}`);
    assert(A.socket.isSubscribed(ch1), 'isSubscribed is false');
    assert(ch.state === 'subscribed', `channel state ${ch.state}`);
  });

  await check('subscribe-with-data', async () => {
    const ch = A.subscribe(ch2, { data: { token: 'x' } });
    await withTimeout(ch.listener('subscribe').once(), `subscribe to ${ch2}`);
    // B subscribes too, so later checks can see that publishes on ch2 are
    // still delivered to someone.
    const chB = B.subscribe(ch2);
    await withTimeout(chB.listener('subscribe').once(), `B subscribe to ${ch2}`);
  });

  await check('publish-receive', async () => {
    const mark = A.channels[ch1].mark();
    B.socket.transmitPublish(ch1, { from: 'B', n: 1 });
    const got = await A.channels[ch1].waitFor((d) => d && d.from === 'B' && d.n === 1, 'B publish on A', mark);
    assert(isDeepStrictEqual(got, { from: 'B', n: 1 }), `got ${JSON.stringify(got)}`);
  });

  await check('transmit-publish-echo', async () => {
    const mark = A.channels[ch1].mark();
    const payload = { from: 'A', kind: 'transmit', text: 'héllo "wörld" \n', nested: [1, 2.5, null, true] };
    A.socket.transmitPublish(ch1, payload);
    const got = await A.channels[ch1].waitFor((d) => d && d.kind === 'transmit', 'own transmitPublish echo', mark);
    assert(isDeepStrictEqual(got, payload), `got ${JSON.stringify(got)}`);
  });

  await check('invoke-publish', async () => {
    const mark = A.channels[ch1].mark();
    const ack = await withTimeout(A.socket.invokePublish(ch1, { from: 'A', kind: 'invoke' }), 'invokePublish ack');
    assert(ack === undefined || ack === null || typeof ack === 'object', `ack ${JSON.stringify(ack)}`);
    await A.channels[ch1].waitFor((d) => d && d.kind === 'invoke', 'own invokePublish echo', mark);
  });

  await check('publish-scalar-data', async () => {
    const mark = A.channels[ch1].mark();
    for (const v of ['plain string', 0, false, null]) {
      await withTimeout(B.socket.invokePublish(ch1, v), `invokePublish of ${JSON.stringify(v)}`);
    }
    const got = await A.channels[ch1].waitCount(4, 'four scalar publishes', mark);
    assert(isDeepStrictEqual(got, ['plain string', 0, false, null]), `got ${JSON.stringify(got)}`);
  });

  await check('batch', async () => {
    const mark = A.channels[ch1].mark();
    A.socket.startBatching();
    for (let i = 1; i <= 3; i++) A.socket.transmitPublish(ch1, { batch: i });
    A.socket.stopBatching();
    const got = (await A.channels[ch1].waitCount(3, 'three batched publishes', mark)).map((d) => d && d.batch);
    assert(isDeepStrictEqual(got, [1, 2, 3]), `got ${JSON.stringify(got)}`);
  });

  await check('invoke-missing-procedure', async () => {
    let err;
    try {
      const res = await A.socket.invoke('sccgo.interop.noSuchProcedure', { x: 1 });
      throw new Error(`invoke succeeded with ${JSON.stringify(res)}`);
    } catch (e) {
      err = e;
    }
    assert(err.name === 'NoMatchingProcedureError', `error ${err.name}: ${err.message}, want NoMatchingProcedureError`);
    assert(typeof err.message === 'string' && err.message.length > 0, 'error has no message');
    return { name: err.name, message: err.message };
  });

  await check('subscribe-malformed-channel', async () => {
    const err = await expectError(A.socket.invoke('#subscribe', { channel: 5 }), 'InvalidActionError');
    return { message: err.message };
  });

  await check('publish-malformed-channel', async () => {
    const err = await expectError(A.socket.invoke('#publish', { channel: { not: 'a string' }, data: 1 }), 'InvalidActionError');
    return { message: err.message };
  });

  await check('unsubscribe-not-subscribed', async () => {
    const err = await expectError(A.socket.invoke('#unsubscribe', `interop-${run}-never`), 'BrokerError');
    return { message: err.message };
  });

  if (echoProcedure) {
    await check('invoke-procedure', async () => {
      const res = await A.socket.invoke(echoProcedure, { b: 2 });
      assert(isDeepStrictEqual(res, { b: 2 }), `got ${JSON.stringify(res)}`);
    });
  }

  const now = Math.floor(Date.now() / 1000);
  const goodToken = signJWT({ username: 'interop', run, iat: now, exp: now + 3600 }, authKey);

  await check('authenticate-bad-signature', async () => {
    const bad = signJWT({ username: 'mallory', iat: now, exp: now + 3600 }, authKey + '-wrong');
    let err;
    try {
      const res = await A.socket.authenticate(bad);
      throw new Error(`authenticate succeeded with ${JSON.stringify(res)}`);
    } catch (e) {
      err = e;
    }
    assert(err.name === 'AuthTokenInvalidError', `error ${err.name}: ${err.message}, want AuthTokenInvalidError`);
    assert(err.isBadToken === true, `isBadToken is ${err.isBadToken}`);
    assert(A.socket.authState === 'unauthenticated', `authState ${A.socket.authState}`);
    return { message: err.message };
  });

  await check('authenticate', async () => {
    const res = await withTimeout(A.socket.authenticate(goodToken), 'authenticate');
    assert(res && res.isAuthenticated === true, `result ${JSON.stringify(res)}`);
    assert(!res.authError, `authError ${JSON.stringify(res.authError)}`);
    assert(A.socket.authState === 'authenticated', `authState ${A.socket.authState}`);
    assert(A.socket.authToken && A.socket.authToken.username === 'interop', `authToken ${JSON.stringify(A.socket.authToken)}`);
    assert(A.socket.signedAuthToken === goodToken, 'signedAuthToken is not the token sent');
  });

  await check('subscribe-wait-for-auth', async () => {
    const ch = A.subscribe(chAuth, { waitForAuth: true });
    await withTimeout(ch.listener('subscribe').once(), `subscribe to ${chAuth}`);
    const mark = A.channels[chAuth].mark();
    B.socket.transmitPublish(chAuth, { secret: 1 });
    await A.channels[chAuth].waitFor((d) => d && d.secret === 1, 'publish on the waitForAuth channel', mark);
  });

  await check('unsubscribe', async () => {
    A.socket.unsubscribe(ch2);
    assert(!A.socket.isSubscribed(ch2, true), 'still subscribed on the client');
    // The server handles a socket's packets in order: once this ack is
    // back, the #unsubscribe (a transmit, with no reply) is done.
    await withTimeout(A.socket.invokePublish(ch1, { fence: 1 }), 'fence publish ack');
    const rawMark = A.raw.mark();
    const bMark = B.channels[ch2].mark();
    const aMark = A.channels[ch1].mark();
    B.socket.transmitPublish(ch2, { after: 'unsubscribe' });
    B.socket.transmitPublish(ch1, { sentinel: 1 });
    // B is still subscribed to ch2, so the publish was fanned out.
    await B.channels[ch2].waitFor((d) => d && d.after === 'unsubscribe', 'B to get the ch2 publish', bMark);
    await A.channels[ch1].waitFor((d) => d && d.sentinel === 1, 'sentinel on ch1', aMark);
    const leaked = A.raw.since(rawMark).filter((m) => m.includes('"#publish"') && m.includes(ch2));
    assert(leaked.length === 0, `server still sent ${leaked.length} publish(es) for ${ch2}: ${leaked[0]}`);
  });

  await check('ping-pong', async () => {
    // Stay connected past the advertised pingTimeout (when it is short
    // enough for a test), so a server that missed our pongs would have
    // closed the connection by now.
    const pingTimeout = (statusA && statusA.pingTimeout) || 0;
    const outlast = pingTimeout <= 10000 ? pingTimeout + 500 : 0;
    const waitMs = Math.max(stepTimeout, outlast + 2000);
    await A.raw.waitFor(() => A.pings() >= minPings && Date.now() - connectedAt >= outlast, `${minPings} pings and ${outlast}ms connected`, 0, waitMs);
    assert(A.disconnects.items.length === 0, `A disconnected: ${JSON.stringify(A.disconnects.items)}`);
    assert(A.socket.state === 'open', `A state ${A.socket.state}`);
    return { pings: A.pings(), ms: Date.now() - started };
  });

  // Force a reconnect: drop the TCP connection under the client, as a
  // network failure would. The client sees 1006 and reconnects by itself.
  const connMark = A.connects.mark();
  const discMark = A.disconnects.mark();
  const stateMark = A.stateChanges.mark();
  const subMark = A.subscribes.mark();
  await check('reconnect', async () => {
    A.socket.transport.socket.terminate();
    const d = await A.disconnects.waitFor(() => true, 'disconnect', discMark);
    await A.stateChanges.waitFor((e) => e.channel === ch1 && e.newChannelState === 'pending', `${ch1} to go pending`, stateMark);
    const st = await A.connects.waitFor(() => true, 'reconnect', connMark);
    assert(st.id && st.id !== statusA.id, `new id ${st.id}, old ${statusA.id}`);
    return { code: d.code, newId: st.id };
  });

  await check('reconnect-handshake-token', async () => {
    const st = A.connects.items[connMark];
    assert(st, 'no reconnect');
    assert(st.isAuthenticated === true, `isAuthenticated ${st.isAuthenticated} after reconnecting with a stored token (authError ${JSON.stringify(st.authError)})`);
    assert(A.socket.authState === 'authenticated', `authState ${A.socket.authState}`);
  });

  await check('resubscribe', async () => {
    for (const ch of [ch1, chAuth]) {
      await A.stateChanges.waitFor((e) => e.channel === ch && e.newChannelState === 'subscribed', `${ch} to be subscribed again`, stateMark);
      await A.subscribes.waitFor((e) => e.channel === ch, `subscribe event for ${ch}`, subMark);
    }
    assert(!A.socket.isSubscribed(ch2, true), `${ch2} came back after unsubscribe`);
    assert(isDeepStrictEqual(A.socket.subscriptions().sort(), [ch1, chAuth].sort()), `subscriptions ${A.socket.subscriptions()}`);
  });

  await check('publish-after-reconnect', async () => {
    const m1 = A.channels[ch1].mark();
    const m2 = A.channels[chAuth].mark();
    B.socket.transmitPublish(ch1, { after: 'reconnect' });
    B.socket.transmitPublish(chAuth, { after: 'reconnect' });
    await A.channels[ch1].waitFor((d) => d && d.after === 'reconnect', `publish on ${ch1}`, m1);
    await A.channels[chAuth].waitFor((d) => d && d.after === 'reconnect', `publish on ${chAuth}`, m2);
  });

  await check('deauthenticate', async () => {
    await A.socket.deauthenticate();
    assert(A.socket.authState === 'unauthenticated', `authState ${A.socket.authState}`);
    // The connection stays usable.
    const mark = A.channels[ch1].mark();
    await withTimeout(A.socket.invokePublish(ch1, { after: 'deauth' }), 'publish after deauthenticate');
    await A.channels[ch1].waitFor((d) => d && d.after === 'deauth', 'echo after deauthenticate', mark);
  });

  // Handshakes that carry a stored token (§1.4).
  const handshakeWith = async (label, token) => {
    const auth = presetAuth(token);
    const C = newClient(label, { authEngine: auth, autoReconnect: false });
    try {
      const st = await C.connects.waitFor(() => true, `${label} connect`);
      // A bad token is followed by #removeAuthToken, which makes the client
      // drop it from storage.
      if (!st.isAuthenticated) await C.raw.waitFor((m) => m.includes('"#removeAuthToken"'), '#removeAuthToken').catch(() => {});
      await new Promise((r) => setTimeout(r, 0));
      return { st, auth, C };
    } finally {
      C.socket.disconnect();
    }
  };

  await check('handshake-valid-token', async () => {
    const t = signJWT({ username: 'interop', iat: now, exp: now + 3600 }, authKey);
    const { st, C } = await handshakeWith('C1', t);
    assert(st.isAuthenticated === true, `isAuthenticated ${st.isAuthenticated}, authError ${JSON.stringify(st.authError)}`);
    assert(!st.authError, `authError ${JSON.stringify(st.authError)}`);
    const setToken = C.raw.items.filter((m) => m.includes('"#setAuthToken"'));
    assert(setToken.length === 0, `server sent #setAuthToken after a token handshake: ${setToken[0]}`);
  });

  await check('handshake-expired-token', async () => {
    const t = signJWT({ username: 'interop', iat: now - 7200, exp: now - 3600 }, authKey);
    const { st, auth } = await handshakeWith('C2', t);
    assert(st.isAuthenticated === false, `isAuthenticated ${st.isAuthenticated}`);
    assert(st.authError && st.authError.name === 'AuthTokenExpiredError', `authError ${JSON.stringify(st.authError)}`);
    assert(st.authError.isBadToken === true, 'authError.isBadToken is not true');
    assert(st.authError.expiry != null, 'authError has no expiry');
    assert(auth.removed > 0 && auth.stored === null, 'the client did not get #removeAuthToken');
    return { message: st.authError.message, expiry: st.authError.expiry };
  });

  await check('handshake-bad-signature', async () => {
    const t = signJWT({ username: 'interop', iat: now, exp: now + 3600 }, authKey + '-wrong');
    const { st, auth } = await handshakeWith('C3', t);
    assert(st.isAuthenticated === false, `isAuthenticated ${st.isAuthenticated}`);
    assert(st.authError && st.authError.name === 'AuthTokenInvalidError', `authError ${JSON.stringify(st.authError)}`);
    assert(st.authError.isBadToken === true, 'authError.isBadToken is not true');
    assert(auth.removed > 0 && auth.stored === null, 'the client did not get #removeAuthToken');
    return { message: st.authError.message };
  });

  await check('disconnect', async () => {
    const mark = A.disconnects.mark();
    A.socket.disconnect();
    B.socket.disconnect();
    const d = await A.disconnects.waitFor(() => true, 'disconnect', mark);
    assert(d.code === 1000, `code ${d.code}`);
    assert(A.socket.state === 'closed', `state ${A.socket.state}`);
  });
}

main().then(
  () => finish(),
  (err) => {
    results.push({ check: 'script', ok: false });
    emit({ check: 'script', ok: false, error: String(err && err.stack ? err.stack : err) });
    finish(1);
  },
);
