// Presence checks with the real socketcluster-client against an
// scc-frontend started with SCC_CHANNELS_FILE=presence-channels.yaml
// (docs/presence.md): the #presence and #presenceStats procedures, and
// join/leave events on the #presence:<channel> companion channel, read
// with the stock client's own subscribe and invoke.
//
//   node presence-client.mjs --url ws://127.0.0.1:8000/socketcluster/ [--url2 URL]
//
// With --url2 (another frontend of the same cluster), half the members
// connect there.
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

async function subscribeOutcome(socket, channel, options) {
  const ch = socket.subscribe(channel, options);
  const ok = ch.listener('subscribe').once().then(() => 'subscribed');
  const fail = ch.listener('subscribeFail').once().then(({ error }) => error);
  return withTimeout(Promise.race([ok, fail]), `subscribe ${channel}`);
}

async function subscribed(socket, channel) {
  const out = await subscribeOutcome(socket, channel);
  assert(out === 'subscribed', `${channel}: ${out.name}: ${out.message}`);
  return socket.channel(channel);
}

// members lists every member of channel, page by page.
async function members(socket, channel) {
  const out = [];
  let offset = 0;
  let stats;
  for (;;) {
    const page = await withTimeout(socket.invoke('#presence', { channel, offset, limit: 2 }), '#presence');
    stats = { clients: page.clients, users: page.users };
    out.push(...page.members);
    if (!page.next) break;
    offset = page.next;
  }
  return { members: out, stats };
}

// untilEvent reads the companion channel until pred holds for an event.
async function untilEvent(channel, pred, what) {
  const deadline = Date.now() + stepTimeout;
  for (;;) {
    const left = deadline - Date.now();
    assert(left > 0, `no event: ${what}`);
    const ev = await withTimeout(channel.once(), what, left);
    if (pred(ev)) return ev;
  }
}

async function refusedInvoke(socket, proc, data) {
  try {
    await withTimeout(socket.invoke(proc, data), proc);
  } catch (e) {
    return e;
  }
  throw new Error(`${proc} answered, want an error`);
}

async function main() {
  assert(authKey, 'SCC_CLIENT_AUTH_KEY is not set');
  const ann = await connect({ sub: 'ann', info: { name: 'Ann' } });
  const ann2 = await connect({ sub: 'ann', info: { name: 'Ann' } }, url2);
  const bob = await connect({ sub: 'bob' }, url2);
  const anon = await connect();
  for (const s of [ann, ann2, bob]) await subscribed(s, 'room:chat');

  await check('presence-members', async () => {
    const want = [ann.id, ann2.id, bob.id].sort();
    const deadline = Date.now() + stepTimeout;
    let got;
    for (;;) {
      got = await members(bob, 'room:chat');
      const ids = got.members.map((m) => m.client).sort();
      if (JSON.stringify(ids) === JSON.stringify(want)) break;
      assert(Date.now() < deadline, `members ${JSON.stringify(ids)}, want ${JSON.stringify(want)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert(got.stats.clients === 3 && got.stats.users === 2, `stats ${JSON.stringify(got.stats)}`);
    const a = got.members.find((m) => m.client === ann.id);
    assert(a.user === 'ann' && a.info && a.info.name === 'Ann', `ann's entry ${JSON.stringify(a)}`);
    return got.stats;
  });
  await check('presence-stats', async () => {
    const st = await withTimeout(ann.invoke('#presenceStats', { channel: 'room:chat' }), '#presenceStats');
    assert(st.clients === 3 && st.users === 2, `stats ${JSON.stringify(st)}`);
    return st;
  });
  await check('presence-join-leave', async () => {
    const events = await subscribed(ann, '#presence:room:chat');
    const carl = await connect({ sub: 'carl' }, url2);
    const carlId = carl.id;
    await subscribed(carl, 'room:chat');
    const joined = await untilEvent(events, (ev) => (ev.join || []).some((m) => m.client === carlId), 'carl joins');
    assert(joined.clients === 4 && joined.users === 3, `counts after the join ${JSON.stringify(joined)}`);
    carl.disconnect();
    const left = await untilEvent(events, (ev) => (ev.leave || []).some((m) => m.client === carlId), 'carl leaves');
    assert(left.clients === 3, `counts after the leave ${JSON.stringify(left)}`);
    return { join: joined, leave: left };
  });
  await check('presence-refused-without-subscription', async () => {
    const e1 = await refusedInvoke(anon, '#presence', { channel: 'room:chat' });
    const e2 = await refusedInvoke(anon, '#presenceStats', { channel: 'private:1' });
    const out = await subscribeOutcome(anon, '#presence:private:1');
    assert(out !== 'subscribed' && out.name === 'SubscribeBlockedError', `events of private:1: ${out.name || out}`);
    return [e1.message, e2.message, out.message];
  });
  await check('presence-companion-read-only', async () => {
    let err;
    try {
      await withTimeout(ann.invokePublish('#presence:room:chat', { join: [{ client: 'forged' }] }), 'invokePublish');
    } catch (e) {
      err = e;
    }
    assert(err, 'a client published on a companion channel');
    return err.name;
  });

  for (const s of [ann, ann2, bob, anon]) s.disconnect();
}

run(main);
