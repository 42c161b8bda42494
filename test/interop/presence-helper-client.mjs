// Checks of js/sccgo-presence.mjs over the real socketcluster-client
// against an scc-frontend started with SCC_CHANNELS_FILE=presence-channels.yaml
// and a small event cap (SCC_PRESENCE_EVENT_MAX_MEMBERS=2), so that a
// handful of joins at once is a storm.
//
//   node presence-helper-client.mjs --url ws://127.0.0.1:8000/socketcluster/ [--url2 URL]
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
import { arg, run, assert, check, stepTimeout, withTimeout, signJWT } from './harness.mjs';
import { Presence, companion } from '../../js/sccgo-presence.mjs';

const env = process.env;
const url = new URL(arg('--url') || 'ws://127.0.0.1:8000/socketcluster/');
const url2 = new URL(arg('--url2') || url.href);
const authKey = env.SCC_CLIENT_AUTH_KEY;
const room = 'room:helper';

function create(at) {
  return socketClusterClient.create({
    hostname: at.hostname,
    port: Number(at.port),
    path: at.pathname,
    connectTimeout: stepTimeout,
    ackTimeout: stepTimeout,
    autoReconnect: false,
  });
}

async function connect(sub, at = url) {
  const socket = create(at);
  await withTimeout(socket.listener('connect').once(), 'connect');
  if (sub) {
    const tok = signJWT(authKey, { sub, info: { name: sub }, exp: Math.floor(Date.now() / 1000) + 600 });
    await withTimeout(socket.authenticate(tok), 'authenticate');
  }
  return socket;
}

async function join(socket, channel = room) {
  const ch = socket.subscribe(channel);
  if (!socket.isSubscribed(channel)) await withTimeout(ch.listener('subscribe').once(), `subscribe ${channel}`);
  return ch;
}

// until polls pred (sync) every 20ms until it holds.
async function until(pred, what) {
  const deadline = Date.now() + stepTimeout;
  while (!pred()) {
    assert(Date.now() < deadline, `timed out waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// untilChange waits for a 'change' of list after which pred holds.
function untilChange(list, pred, what) {
  if (pred()) return Promise.resolve();
  return withTimeout(new Promise((resolve) => {
    const on = () => {
      if (pred()) {
        list.removeEventListener('change', on);
        resolve();
      }
    };
    list.addEventListener('change', on);
  }), what);
}

const ids = (ms) => [...ms].map((m) => m.client).sort();
const same = (a, b) => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());

async function main() {
  assert(authKey, 'SCC_CLIENT_AUTH_KEY is not set');
  const ann = await connect('ann');
  const ann2 = await connect('ann', url2);
  const bob = await connect('bob', url2);
  for (const s of [ann, ann2, bob]) await join(s);
  const presence = new Presence(ann);

  await check('helper-stats-and-pages', async () => {
    const want = [ann.id, ann2.id, bob.id];
    let all;
    const deadline = Date.now() + stepTimeout;
    for (;;) {
      all = await withTimeout(presence.members(room, { pageSize: 2 }), 'members');
      if (same(ids(all.members), want)) break;
      assert(Date.now() < deadline, `members ${JSON.stringify(ids(all.members))}, want ${JSON.stringify(want)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert(all.clients === 3 && all.users === 2, `counts ${all.clients}/${all.users}`);
    const page = await withTimeout(presence.presence(room, { offset: 0, limit: 2 }), 'presence');
    assert(page.members.length === 2 && page.next === 2, `first page ${JSON.stringify(page)}`);
    const st = await withTimeout(presence.presenceStats(room), 'presenceStats');
    assert(st.clients === 3 && st.users === 2, `stats ${JSON.stringify(st)}`);
    const a = all.members.find((m) => m.client === ann.id);
    assert(a.user === 'ann' && a.info && a.info.name === 'ann', `ann's entry ${JSON.stringify(a)}`);
    return st;
  });

  await check('helper-join-leave-listener', async () => {
    // A channel of its own, so that no earlier join is pending: ann's
    // and carl's joins fit in one event under the cap of 2.
    const listen = 'room:helper-listen';
    await join(ann, listen);
    const seen = [];
    const stop = presence.onJoinLeave(listen, (ev) => seen.push(ev));
    await withTimeout(ann.channel(companion(listen)).listener('subscribe').once(), 'subscribe to the events');
    const carl = await connect('carl', url2);
    const carlId = carl.id;
    await join(carl, listen);
    await until(() => seen.some((ev) => (ev.join || []).some((m) => m.client === carlId)), () => `carl ${carlId} to join (events ${JSON.stringify(seen)})`);
    carl.disconnect();
    await until(() => seen.some((ev) => (ev.leave || []).some((m) => m.client === carlId)), 'carl leaves');
    stop();
    assert(!ann.isSubscribed(companion(listen), true), 'still subscribed to the events after stop()');
    ann.unsubscribe(listen);
    return { events: seen.length };
  });

  await check('helper-refused-without-subscription', async () => {
    const out = await connect();
    let err;
    try {
      await withTimeout(new Presence(out).presenceStats(room), 'presenceStats');
    } catch (e) {
      err = e;
    }
    assert(err && err.name === 'InvalidActionError', `want InvalidActionError, got ${err && err.name}`);
    out.disconnect();
    return err.name;
  });

  await check('helper-live-list', async () => {
    const list = presence.track(room);
    await untilChange(list, () => list.ready && same(list.members.keys(), [ann.id, ann2.id, bob.id]), 'the first read');
    const dave = await connect('dave');
    const daveId = dave.id;
    await join(dave);
    await untilChange(list, () => list.members.has(daveId) && list.clients === 4 && list.users === 3, 'dave in the list');
    dave.disconnect();
    await untilChange(list, () => !list.members.has(daveId) && list.clients === 3, 'dave out of the list');
    list.close();
    return { clients: list.clients, users: list.users };
  });

  await check('helper-live-list-storm', async () => {
    // Twelve joins at once against a cap of 2 per event: an event leaves
    // changes out, and the list reads itself again.
    const list = presence.track(room);
    await untilChange(list, () => list.ready && list.members.size === 3, 'the first read');
    let reloads = 0;
    list.addEventListener('change', (e) => { if (e.detail.reloaded) reloads++; });
    const crowd = await Promise.all([...Array(12).keys()].map((i) => connect('', i % 2 ? url2 : url)));
    await Promise.all(crowd.map((s) => join(s)));
    const want = [ann.id, ann2.id, bob.id, ...crowd.map((s) => s.id)];
    await untilChange(list, () => same(list.members.keys(), want) && list.clients === want.length, 'every member of the storm in the list');
    assert(reloads > 0, 'the list never read itself again after a storm');
    for (const s of crowd) s.disconnect();
    await untilChange(list, () => list.members.size === 3 && list.clients === 3, 'the storm gone from the list');
    list.close();
    return { reloads };
  });

  await check('helper-live-list-reconnect', async () => {
    // The list's socket goes away; meanwhile a member leaves, and nobody
    // tells the absent socket. When it is back the list is read again.
    const eve = await connect('eve');
    const eveId = eve.id;
    const watcher = await connect('watcher', url2);
    await join(watcher);
    const list = new Presence(watcher).track(room);
    await join(eve);
    await untilChange(list, () => list.ready && list.members.has(eveId), 'eve in the list');
    let reloads = 0;
    list.addEventListener('change', (e) => { if (e.detail.reloaded) reloads++; });
    const oldId = watcher.id;
    watcher.disconnect();
    eve.disconnect();
    watcher.connect();
    await withTimeout(watcher.listener('connect').once(), 'reconnect');
    await untilChange(list, () => reloads > 0 && list.members.has(watcher.id) && !list.members.has(oldId) && !list.members.has(eveId) &&
      list.members.size === list.clients, 'the list read again after the reconnect');
    list.close();
    watcher.disconnect();
    return { clients: list.clients };
  });

  for (const s of [ann, ann2, bob]) s.disconnect();
}

run(main);
