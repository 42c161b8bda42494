// Backend-hook checks with the real socketcluster-client against an
// scc-frontend started with SCC_CHANNELS_FILE=hooks-channels.yaml and the
// connect, subscribe and publish hooks pointing at the backend of
// hookwire_test.go, which decides by the session cookie:
//   revoked: reject (SessionRevokedError, close code 4501)
//   u42:     claims {sub: "42"}, server-side subscription granted:42
//   short:   claims {sub: "9"} expiring in 2s
//   refresh: a handshake carrying a token without valid claims (an
//            expired one) gets fresh claims {sub: "7"}
//
//   node hooks-client.mjs --url ws://127.0.0.1:8000/socketcluster/ [--url2 URL]
//
// With --url2 (another frontend of the same cluster), the publishers
// connect there.
//
// Environment: SCC_CLIENT_AUTH_KEY (required), SCC_INTEROP_STEP_TIMEOUT
// (each wait, ms, default 5000).
//
// Prints one JSON line per check, {"check":NAME,"ok":BOOL,...}, then
// {"summary":true,...}; exits 0 only when every check passed.
import socketClusterClient from 'socketcluster-client';
import { arg, run, assert, check, stepTimeout, withTimeout, signJWT as sign } from './harness.mjs';

const env = process.env;
const url = new URL(arg('--url') || 'ws://127.0.0.1:8000/socketcluster/');
const url2 = new URL(arg('--url2') || url.href);
const authKey = env.SCC_CLIENT_AUTH_KEY;

// until polls cond every 20ms until it holds or the step times out.
async function until(cond, what, ms = stepTimeout) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const signJWT = (payload) => sign(authKey, payload);

const now = () => Math.floor(Date.now() / 1000);

// create makes a socket that sends the session cookie in its upgrade
// request and does not reconnect by itself.
function create(session, at = url) {
  return socketClusterClient.create({
    hostname: at.hostname,
    port: Number(at.port),
    path: at.pathname,
    connectTimeout: stepTimeout,
    ackTimeout: stepTimeout,
    autoReconnect: false,
    wsOptions: session ? { headers: { Cookie: `theme=dark; session=${session}` } } : {},
  });
}

// connect resolves with the socket and its connect event (the handshake
// answer).
async function connect(session, at = url) {
  const socket = create(session, at);
  const status = await withTimeout(socket.listener('connect').once(), 'connect');
  return { socket, status };
}

async function subscribeOutcome(socket, channel, options) {
  const ch = socket.subscribe(channel, options);
  const ok = ch.listener('subscribe').once().then(() => 'subscribed');
  const fail = ch.listener('subscribeFail').once().then(({ error }) => error);
  return withTimeout(Promise.race([ok, fail]), `subscribe ${channel}`);
}

async function publishError(socket, channel, data) {
  try {
    await withTimeout(socket.invokePublish(channel, data), `invokePublish ${channel}`);
  } catch (e) {
    return e;
  }
  return null;
}

async function main() {
  assert(authKey, 'SCC_CLIENT_AUTH_KEY is not set');

  await check('hooks-connect-reject', async () => {
    const socket = create('revoked');
    const closed = socket.listener('close').once();
    const errored = socket.listener('error').once();
    const { code, reason } = await withTimeout(closed, 'close');
    const { error } = await withTimeout(errored, 'error');
    assert(code === 4501, `closed with ${code} (${reason}), want 4501`);
    assert(error && error.name === 'SessionRevokedError', `error ${error && error.name}: ${error && error.message}, want SessionRevokedError`);
    assert(socket.state !== socket.OPEN, 'socket is open');
    return `${code} ${reason}`;
  });

  const { socket: owner, status } = await connect('u42');
  const { socket: anon } = await connect('', url2);

  await check('hooks-connect-claims', async () => {
    assert(status.isAuthenticated === true, `handshake isAuthenticated ${status.isAuthenticated}`);
    await until(() => owner.authToken && owner.authToken.sub === '42', "the connect hook's claims as the auth token");
    assert(owner.authState === owner.AUTHENTICATED, `auth state ${owner.authState}`);
    assert(owner.authToken.name === 'Ada' && owner.authToken.exp > now(), `token ${JSON.stringify(owner.authToken)}`);
    assert(typeof owner.signedAuthToken === 'string', 'no signed token stored');
    return owner.authToken;
  });

  await check('hooks-connect-channels', async () => {
    assert(JSON.stringify(status.channels) === '["granted:42"]', `connect event channels ${JSON.stringify(status.channels)}`);
    assert((await subscribeOutcome(owner, 'granted:42')) === 'subscribed', 'granted:42 refused to its owner');
    const heard = owner.channel('granted:42').once();
    await withTimeout(anon.invokePublish('granted:42', { n: 1 }), 'publish to granted:42');
    const got = await withTimeout(heard, 'the publication on granted:42');
    assert(got && got.n === 1, `got ${JSON.stringify(got)}`);
    const out = await subscribeOutcome(anon, 'granted:42');
    assert(out !== 'subscribed' && out.name === 'SubscribeBlockedError', `anonymous subscribe to granted:42: ${out.name || out}`);
  });

  await check('hooks-subscribe-hook', async () => {
    assert((await subscribeOutcome(owner, 'team:7')) === 'subscribed', 'member refused team:7');
    const out = await subscribeOutcome(anon, 'team:7');
    assert(out !== 'subscribed', 'anonymous subscribed to team:7');
    assert(out.name === 'NotInTeamError' && out.message === 'not in team 7' && out.team === 7,
      `subscribeFail ${out.name}: ${out.message} (${JSON.stringify(out)}), want NotInTeamError`);
    assert(anon.getChannelState('team:7') !== 'subscribed', 'team:7 still subscribed');
    const bad = await subscribeOutcome(anon, 'team:invite', { data: { invite: 'wrong' } });
    assert(bad !== 'subscribed' && bad.name === 'NotInTeamError', `wrong invite: ${bad.name || bad}`);
    anon.unsubscribe('team:invite');
    assert((await subscribeOutcome(anon, 'team:invite', { data: { invite: 'x7k2' } })) === 'subscribed', 'invite code refused');
    return out.message;
  });

  await check('hooks-publish-hook', async () => {
    const err = await publishError(anon, 'team:7', 'spam');
    assert(err && err.name === 'SpamError' && err.message === 'no spam', `spam publish: ${err ? `${err.name}: ${err.message}` : 'accepted'}`);
    const heard = owner.channel('team:7').once();
    await withTimeout(anon.invokePublish('team:7', { text: 'hi' }), 'publish to team:7');
    const got = await withTimeout(heard, 'the publication on team:7');
    assert(got && got.text === 'hi' && got.from === 'anonymous', `subscriber got ${JSON.stringify(got)}, want the data the hook replaced`);
    return got;
  });

  await check('hooks-publish-order', async () => {
    const n = 12; // below SCC_PROXY_SOCKET_CONCURRENCY (16): a burst above it is refused
    const seen = [];
    const done = (async () => {
      for await (const d of owner.channel('team:7')) {
        seen.push(d.text);
        if (seen.length === n) break;
      }
    })();
    for (let i = 0; i < n; i++) anon.transmitPublish('team:7', { text: i });
    await withTimeout(done, `${n} publications`);
    assert(seen.every((v, i) => v === i), `order ${JSON.stringify(seen)}`);
  });

  await check('hooks-token-expiry', async () => {
    const { socket } = await connect('short');
    await until(() => socket.authToken && socket.authToken.sub === '9', 'the short token');
    const deauth = socket.listener('deauthenticate').once();
    const ev = await withTimeout(deauth, 'deauthenticate on expiry', 3 * stepTimeout);
    assert(socket.authState !== socket.AUTHENTICATED && socket.authToken === null, `auth state ${socket.authState}`);
    socket.disconnect();
    return ev.oldAuthToken;
  });

  await check('hooks-token-refresh', async () => {
    // The client holds an expired token (in its auth engine, as a browser
    // would in localStorage) and presents it in the handshake.
    const store = { token: signJWT({ sub: '7', exp: now() - 60 }) };
    const socket = socketClusterClient.create({
      hostname: url.hostname,
      port: Number(url.port),
      path: url.pathname,
      connectTimeout: stepTimeout,
      ackTimeout: stepTimeout,
      autoReconnect: false,
      wsOptions: { headers: { Cookie: 'session=refresh' } },
      authEngine: {
        async saveToken(name, token) { store.token = token; return token; },
        async removeToken() { const old = store.token; store.token = null; return old; },
        async loadToken() { return store.token; },
      },
    });
    const st = await withTimeout(socket.listener('connect').once(), 'connect');
    assert(st.isAuthenticated === true && !st.authError, `handshake answer ${JSON.stringify(st)}`);
    await until(() => socket.authToken && socket.authToken.sub === '7' && socket.authToken.exp > now(), 'the refreshed token');
    await until(() => store.token === socket.signedAuthToken, 'the refreshed token in the auth engine');
    socket.disconnect();
    return socket.authToken;
  });

  for (const s of [owner, anon]) s.disconnect();
}

run(main);
