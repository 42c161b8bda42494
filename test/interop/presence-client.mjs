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
import crypto from 'node:crypto';
import socketClusterClient from 'socketcluster-client';

const env = process.env;
const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const url = new URL(arg('--url') || 'ws://127.0.0.1:8000/socketcluster/');
const url2 = new URL(arg('--url2') || url.href);
const authKey = env.SCC_CLIENT_AUTH_KEY;
const stepTimeout = Number(env.SCC_INTEROP_STEP_TIMEOUT || 5000);
const results = [];
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const hardTimer = setTimeout(() => {
  emit({ check: 'overall-timeout', ok: false, error: 'run did not finish in time' });
  process.exit(2);
}, 20 * stepTimeout);
hardTimer.unref();

async function check(name, fn) {
  const t0 = Date.now();
  try {
    const detail = await fn();
    const r = { check: name, ok: true, ms: Date.now() - t0 };
    if (detail !== undefined) r.detail = detail;
    results.push(r);
    emit(r);
  } catch (err) {
    const r = { check: name, ok: false, ms: Date.now() - t0, error: String(err && err.message ? err.message : err) };
    results.push(r);
    emit(r);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
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

const b64url = (buf) => Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');

function signJWT(payload) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(payload));
  const sig = b64url(crypto.createHmac('sha256', authKey).update(`${head}.${body}`).digest());
  return `${head}.${body}.${sig}`;
}

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
  const failed = results.filter((r) => !r.ok).length;
  emit({ summary: true, passed: results.length - failed, failed });
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  emit({ check: 'main', ok: false, error: String(err && err.stack ? err.stack : err) });
  process.exit(1);
});
