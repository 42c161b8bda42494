// Recovery checks with the real socketcluster-client and the ES module
// js/sccgo-recovery.mjs against an scc-frontend started with history on
// for every channel (SCC_HISTORY_SIZE=100, SCC_HISTORY_TTL=1m).
//
//   node recovery-client.mjs --url ws://127.0.0.1:8000/socketcluster/ [--url2 URL]
//
// With --url2 (another frontend of the same cluster) the publisher and
// the reconnections go there.
//
// With --epoch-change MS (a frontend whose SCC_HISTORY_META_TTL is MS
// milliseconds) only the check of an epoch change seen mid-stream runs:
// the channel idles past MS, the server drops its history, and the next
// message comes under a new epoch.
//
// Environment: SCC_INTEROP_STEP_TIMEOUT (each wait, ms, default 5000).
//
// Prints one JSON line per check, {"check":NAME,"ok":BOOL,...}, then
// {"summary":true,...}; exits 0 only when every check passed.
import socketClusterClient from 'socketcluster-client';
import { arg, run, assert, check, stepTimeout, withTimeout } from './harness.mjs';
import { Recovery } from '../../js/sccgo-recovery.mjs';

const env = process.env;
const url = new URL(arg('--url') || 'ws://127.0.0.1:8000/socketcluster/');
const url2 = new URL(arg('--url2') || url.href);

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

async function connect(at = url) {
  const socket = create(at);
  await withTimeout(socket.listener('connect').once(), 'connect');
  return socket;
}

// reader collects a channel's data in order.
function reader(channel) {
  const got = [];
  let wake = null;
  (async () => {
    for await (const d of channel) {
      got.push(d);
      if (wake) wake();
    }
  })();
  return {
    got,
    async until(n, what) {
      await withTimeout((async () => {
        while (got.length < n) await new Promise((r) => { wake = r; });
      })(), what);
    },
  };
}

async function publishAll(pub, ch, from, to) {
  for (let i = from; i <= to; i++) await withTimeout(pub.invokePublish(ch, i), `publish ${i}`);
}

// goAway disconnects socket (its channels stay pending in the stock
// client), runs fn meanwhile, then connects it to at again.
async function goAway(socket, fn, at) {
  socket.disconnect();
  await fn();
  if (at) socket.options.hostname = at.hostname, socket.options.port = Number(at.port);
  socket.connect();
  await withTimeout(socket.listener('connect').once(), 'reconnect');
}

// epochChange: a subscriber that never disconnects sees a message under
// another epoch (the server dropped the channel's history while it was
// idle): the helper emits recoveryfailed (reason epoch) and tracks the
// new epoch.
async function epochChange(metaTTL) {
  const pub = await connect(url2);
  await check('recovery-epoch-change-mid-stream', async () => {
    const s = await connect();
    const rec = new Recovery(s);
    const failed = [];
    rec.addEventListener('recoveryfailed', (e) => failed.push(e.detail));
    const ch = rec.subscribe('room:epoch');
    await withTimeout(ch.listener('subscribe').once(), 'subscribe');
    const r = reader(ch);
    await publishAll(pub, 'room:epoch', 1, 1);
    await r.until(1, 'message 1');
    const first = rec.position('room:epoch');
    assert(first.offset === 1 && first.epoch !== '', `position ${JSON.stringify(first)}`);
    assert(failed.length === 0, `recoveryfailed before any epoch change: ${JSON.stringify(failed)}`);
    // Idle past the server's SCC_HISTORY_META_TTL (its sweep runs every
    // second), then publish; a publish that still finds the old epoch
    // starts the wait again.
    const deadline = Date.now() + 10 * (metaTTL + 1000);
    for (let i = 2; failed.length === 0; i++) {
      assert(Date.now() < deadline, `no epoch change seen after ${i - 2} idle periods`);
      await new Promise((res) => setTimeout(res, metaTTL + 1200));
      await publishAll(pub, 'room:epoch', i, i);
      await r.until(i, `message ${i}`);
    }
    const d = failed[0];
    const pos = rec.position('room:epoch');
    assert(failed.length === 1 && d.reason === 'epoch' && !d.asked && !d.recovered && d.epoch !== first.epoch,
      `recoveryfailed ${JSON.stringify(failed)}`);
    assert(pos.epoch === d.epoch && pos.offset === d.offset, `tracking ${JSON.stringify(pos)} after ${JSON.stringify(d)}`);
    rec.close();
    s.disconnect();
    return d;
  });
  pub.disconnect();
}

async function main() {
  const metaTTL = arg('--epoch-change');
  if (metaTTL !== undefined) return epochChange(Number(metaTTL));
  const pub = await connect(url2);

  await check('recovery-stock-client-ignores-position', async () => {
    const plain = await connect();
    const ch = plain.subscribe('room:plain');
    await withTimeout(ch.listener('subscribe').once(), 'subscribe');
    const r = reader(ch);
    await publishAll(pub, 'room:plain', 1, 1);
    await withTimeout(pub.invokePublish('room:plain', { text: 'hi' }), 'publish object');
    await r.until(2, 'two messages');
    assert(r.got[0] === 1 && JSON.stringify(r.got[1]) === '{"text":"hi"}', `stock client got ${JSON.stringify(r.got)}`);
    plain.disconnect();
  });

  await check('recovery-reconnect-within-window', async () => {
    const s = await connect();
    const rec = new Recovery(s);
    const events = [];
    rec.addEventListener('recovery', (e) => events.push(e.detail));
    const ch = rec.subscribe('room:r');
    await withTimeout(ch.listener('subscribe').once(), 'subscribe');
    const r = reader(ch);
    await publishAll(pub, 'room:r', 1, 3);
    await r.until(3, 'live 1..3');
    await goAway(s, () => publishAll(pub, 'room:r', 4, 10), url2);
    await r.until(10, 'recovered 4..10');
    await publishAll(pub, 'room:r', 11, 11);
    await r.until(11, 'live 11');
    const want = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    assert(JSON.stringify(r.got) === JSON.stringify(want), `got ${JSON.stringify(r.got)}`);
    const last = events[events.length - 1];
    assert(last && last.asked && last.recovered && last.offset === 10, `recovery events ${JSON.stringify(events)}`);
    assert(rec.position('room:r').offset === 11, `position ${JSON.stringify(rec.position('room:r'))}`);
    rec.close();
    s.disconnect();
    return { events: events.length };
  });

  await check('recovery-too-late-is-told', async () => {
    const s = await connect();
    const rec = new Recovery(s);
    const failed = new Promise((resolve) => rec.addEventListener('recoveryfailed', (e) => resolve(e.detail), { once: true }));
    const ch = rec.subscribe('room:late', { data: { app: 'kept' } });
    await withTimeout(ch.listener('subscribe').once(), 'subscribe');
    const r = reader(ch);
    await goAway(s, () => publishAll(pub, 'room:late', 1, 150), url2);
    const d = await withTimeout(failed, 'recoveryfailed');
    assert(d.reason === 'gone' && d.offset === 150 && !d.recovered, `recoveryfailed ${JSON.stringify(d)}`);
    await publishAll(pub, 'room:late', 151, 151);
    await r.until(1, 'live after a failed recovery');
    assert(r.got.length === 1 && r.got[0] === 151, `got ${JSON.stringify(r.got)} (nothing replayed, then live)`);
    rec.close();
    s.disconnect();
    return d;
  });

  pub.disconnect();
}

run(main);
