// Channel-rules checks with the real socketcluster-client against an
// scc-frontend started with SCC_CHANNELS_FILE=rules-channels.yaml.
//
//   node rules-client.mjs --url ws://127.0.0.1:8000/socketcluster/ [--url2 URL]
//
// With --url2 (another frontend of the same cluster), the private
// channel's owner connects there and the other clients to --url, so
// refusals and deliveries are checked across frontends.
//
// Environment: SCC_CLIENT_AUTH_KEY (the server's HS256 key, required),
// SCC_INTEROP_STEP_TIMEOUT (each wait, ms, default 5000).
//
// Prints one JSON line per check, {"check":NAME,"ok":BOOL,...}, then
// {"summary":true,...}; exits 0 only when every check passed.
import socketClusterClient from 'socketcluster-client';
import { arg, run, assert, check, stepTimeout, withTimeout, signJWT as sign } from './harness.mjs';

const env = process.env;
const url = new URL(arg('--url') || 'ws://127.0.0.1:8000/socketcluster/');
const url2 = new URL(arg('--url2') || url.href);
const authKey = env.SCC_CLIENT_AUTH_KEY;

const signJWT = (payload) => sign(authKey, payload);

const now = () => Math.floor(Date.now() / 1000);

async function connect(claims, at = url) {
  const socket = socketClusterClient.create({
    hostname: at.hostname,
    port: Number(at.port),
    path: at.pathname,
    connectTimeout: stepTimeout,
    ackTimeout: stepTimeout,
    autoReconnect: false,
  });
  await withTimeout(socket.listener('connect').once(), 'connect');
  if (claims) await withTimeout(socket.authenticate(signJWT({ exp: now() + 600, ...claims })), 'authenticate');
  return socket;
}

// subscribeOutcome subscribes and resolves with 'subscribed' or the error
// of the client's subscribeFail event.
async function subscribeOutcome(socket, channel, options) {
  const ch = socket.subscribe(channel, options);
  const ok = ch.listener('subscribe').once().then(() => 'subscribed');
  const fail = ch.listener('subscribeFail').once().then(({ error }) => error);
  return withTimeout(Promise.race([ok, fail]), `subscribe ${channel}`);
}

async function expectBlocked(socket, channel, options) {
  const out = await subscribeOutcome(socket, channel, options);
  assert(out !== 'subscribed', `${channel}: subscribed, want SubscribeBlockedError`);
  assert(out.name === 'SubscribeBlockedError', `${channel}: ${out.name}: ${out.message}, want SubscribeBlockedError`);
  assert(socket.getChannelState(channel) !== 'subscribed', `${channel}: channel state ${socket.getChannelState(channel)}`);
  return out.message;
}

async function main() {
  assert(authKey, 'SCC_CLIENT_AUTH_KEY is not set');
  const anon = await connect();
  const owner = await connect({ sub: '42' }, url2);
  const other = await connect({ sub: 43 });

  await check('rules-anonymous-private-channel', () => expectBlocked(anon, 'user:42'));
  await check('rules-owner-private-channel', async () => {
    assert((await subscribeOutcome(owner, 'user:42')) === 'subscribed', 'owner was refused user:42');
  });
  await check('rules-other-user-private-channel', async () => {
    const msgs = [];
    for (const ch of ['user:42', 'user:42*', 'user:4?', 'user:*', 'user:４２', 'user:42\\']) {
      msgs.push(await expectBlocked(other, ch));
    }
    assert((await subscribeOutcome(other, 'user:43')) === 'subscribed', 'sub 43 was refused user:43');
    return msgs[0];
  });
  await check('rules-public-room', async () => {
    assert((await subscribeOutcome(anon, 'room:lobby')) === 'subscribed', 'anonymous refused a public room');
    const heard = anon.channel('room:lobby').once();
    let err;
    try {
      await withTimeout(anon.invokePublish('room:lobby', 'hi'), 'invokePublish');
    } catch (e) {
      err = e;
    }
    assert(err && err.name === 'PublishBlockedError', `anonymous publish: ${err ? err.name : 'accepted'}, want PublishBlockedError`);
    await withTimeout(owner.invokePublish('room:lobby', 'from owner'), 'authenticated invokePublish');
    const got = await withTimeout(heard, 'the authenticated publish');
    assert(got === 'from owner', `anonymous subscriber got ${JSON.stringify(got)}`);
  });
  await check('rules-client-publish-to-private-channel', async () => {
    let err;
    try {
      await withTimeout(owner.invokePublish('user:42', 'spoof'), 'invokePublish');
    } catch (e) {
      err = e;
    }
    assert(err && err.name === 'PublishBlockedError', `publish: ${err ? err.name : 'accepted'}, want PublishBlockedError`);
    return err.message;
  });
  await check('rules-reserved-channel', () => expectBlocked(owner, '#scc:user:42'));
  await check('rules-subscription-token', async () => {
    const tok = signJWT({ channel: 'live:1', exp: now() + 60 });
    await expectBlocked(anon, 'live:1');
    await expectBlocked(anon, 'live:2', { data: { token: tok } });
    await expectBlocked(anon, 'live:1', { data: { token: signJWT({ channel: 'live:1', exp: now() - 60 }) } });
    assert((await subscribeOutcome(anon, 'live:1', { data: { token: tok } })) === 'subscribed', 'valid subscription token refused');
  });
  await check('rules-logout-kicks-out', async () => {
    const kicked = owner.listener('kickOut').once();
    await withTimeout(owner.deauthenticate(), 'deauthenticate');
    const ev = await withTimeout(kicked, 'kickOut');
    assert(ev.channel === 'user:42', `kickOut of ${ev.channel}`);
    assert(owner.getChannelState('user:42') !== 'subscribed', 'user:42 still subscribed after logout');
    return ev.message;
  });

  for (const s of [anon, owner, other]) s.disconnect();
}

run(main);
