// The frontend kill -9 check of js/sccgo-recovery.mjs with the real
// socketcluster-client, run by TestClusterRecoveryHelperFrontendKill
// against a cluster with history on for every channel.
//
//   node recovery-kill-client.mjs --url PROXY_URL --url2 B_URL
//        [--sockets 4] [--channels 6] [--per-socket 3] [--total 300] [--kill-at 50]
//
// Subscriber sockets connect through --url (a TCP proxy in front of
// frontend A) and reconnect by themselves, as the stock client does; each
// is wrapped by Recovery and subscribes to --per-socket of the --channels
// channels. A publisher on --url2 (frontend B) publishes 1..total on every
// channel. After --kill-at rounds it prints {"event":"kill"}: the test
// then kills frontend A (-9) and, a moment later, points the proxy at B.
// The check passes when every subscription got 1..total exactly once, in
// order, every socket reconnected, and each subscription's one
// resubscribe after the kill asked to recover and was told it recovered.
//
// Environment: SCC_INTEROP_STEP_TIMEOUT (each wait, ms, default 5000;
// catching up after the kill may take four of them).
//
// Prints {"event":"kill"}, one JSON line for the check,
// {"check":"recovery-frontend-kill","ok":BOOL,...}, then {"summary":true,...};
// exits 0 only when the check passed.
import socketClusterClient from 'socketcluster-client';
import { arg, run, assert, check, emit, stepTimeout, withTimeout } from './harness.mjs';
import { Recovery } from '../../js/sccgo-recovery.mjs';

const url = new URL(arg('--url') || 'ws://127.0.0.1:8000/socketcluster/');
const url2 = new URL(arg('--url2') || url.href);
const nSockets = Number(arg('--sockets') || 4);
const nChannels = Number(arg('--channels') || 6);
const perSocket = Number(arg('--per-socket') || 3);
const total = Number(arg('--total') || 300);
const killAt = Number(arg('--kill-at') || 50);
// roundPause spreads the publications over a few seconds, so they go on
// while A is dead and while the subscribers resubscribe on B.
const roundPause = 10;

function create(at, autoReconnect) {
  return socketClusterClient.create({
    hostname: at.hostname,
    port: Number(at.port),
    path: at.pathname,
    connectTimeout: stepTimeout,
    ackTimeout: stepTimeout,
    autoReconnect,
    // The stock defaults wait 10 to 20 s before the first retry.
    autoReconnectOptions: { initialDelay: 100, randomness: 100, multiplier: 1.5, maxDelay: 500 },
  });
}

async function connect(at, autoReconnect) {
  const socket = create(at, autoReconnect);
  await withTimeout(socket.listener('connect').once(), 'connect');
  return socket;
}

// subscription is one channel of one socket: what it received and the
// helper's recovery events for it.
function subscription(rec, name) {
  const s = { name, got: [], events: [], replayed: 0, wake: null };
  const ch = rec.subscribe(name);
  (async () => {
    for await (const d of ch) {
      s.got.push(d);
      if (s.wake) s.wake();
    }
  })();
  s.subscribed = withTimeout(ch.listener('subscribe').once(), `subscribe ${name}`);
  return s;
}

// done says the subscription has seen the last number (or as many
// messages as were published).
const done = (s) => s.got.length >= total || s.got[s.got.length - 1] === total;

async function main() {
  const pub = await connect(url2, false);
  const sockets = [];
  const subs = [];
  let killedAt = 0;
  let lastRecovered = 0;
  const failed = [];
  try {
    await check('recovery-frontend-kill', async () => {
      for (let i = 0; i < nSockets; i++) {
        const socket = await connect(url, true);
        const rec = new Recovery(socket);
        const own = [];
        rec.addEventListener('recovery', (e) => {
          const d = e.detail;
          const s = own.find((x) => x.name === d.channel);
          if (!s) return;
          s.events.push({ asked: d.asked, recovered: d.recovered, offset: d.offset, reason: d.reason });
          if (d.asked && d.recovered) {
            // The helper moves the position on as the replay arrives.
            s.replayed += d.offset - rec.position(d.channel).offset;
            lastRecovered = Date.now();
          }
        });
        rec.addEventListener('recoveryfailed', (e) => failed.push(e.detail));
        const conn = { socket, rec, reconnects: 0 };
        (async () => {
          for await (const _ of socket.listener('connect')) conn.reconnects++;
        })();
        sockets.push(conn);
        for (let k = 0; k < perSocket; k++) {
          const s = subscription(rec, `hist:${(i * perSocket + k) % nChannels}`);
          s.socket = i;
          own.push(s);
          subs.push(s);
        }
      }
      await Promise.all(subs.map((s) => s.subscribed));

      const channels = Array.from({ length: nChannels }, (_, k) => `hist:${k}`);
      for (let n = 1; n <= total; n++) {
        await withTimeout(Promise.all(channels.map((ch) => pub.invokePublish(ch, n))), `publish round ${n}`);
        if (n === killAt) {
          killedAt = Date.now();
          emit({ event: 'kill' });
        }
        await new Promise((r) => setTimeout(r, roundPause));
      }

      await withTimeout(Promise.all(subs.map(async (s) => {
        while (!done(s)) await new Promise((r) => { s.wake = r; });
      })), 'every subscription to reach the last number', 4 * stepTimeout);
      // Anything sent twice would arrive right behind.
      await new Promise((r) => setTimeout(r, 200));

      const want = JSON.stringify(Array.from({ length: total }, (_, k) => k + 1));
      const wrong = subs.filter((s) => JSON.stringify(s.got) !== want);
      assert(wrong.length === 0, `${wrong.length} of ${subs.length} subscriptions did not get 1..${total} once in order; first: socket ${wrong[0]?.socket} ${wrong[0]?.name} got ${wrong[0]?.got.length}: ${describe(wrong[0]?.got)}`);
      const notReconnected = sockets.filter((c) => c.reconnects < 1).length;
      assert(notReconnected === 0, `${notReconnected} of ${sockets.length} sockets never reconnected`);
      const notRecovered = subs.filter((s) => {
        const asked = s.events.filter((e) => e.asked);
        return asked.length !== 1 || !asked[0].recovered;
      });
      assert(notRecovered.length === 0, `${notRecovered.length} of ${subs.length} subscriptions were not told they recovered, once; first: socket ${notRecovered[0]?.socket} ${notRecovered[0]?.name} events ${JSON.stringify(notRecovered[0]?.events)}`);
      assert(failed.length === 0, `recoveryfailed: ${JSON.stringify(failed.slice(0, 3))}`);
      return {
        sockets: sockets.length,
        subscriptions: subs.length,
        total,
        killAt,
        replayed: subs.reduce((a, s) => a + s.replayed, 0),
        allRecoveredAfterKillMs: lastRecovered - killedAt,
      };
    });
  } finally {
    for (const c of sockets) {
      c.rec.close();
      c.socket.disconnect();
    }
    pub.disconnect();
  }
}

// describe summarises a received sequence: its gaps and repeats.
function describe(got) {
  if (!got) return '';
  const out = [];
  let want = 1;
  for (const n of got) {
    if (n !== want) out.push(n < want ? `${n} again` : `${want}..${n - 1} missing`);
    want = Math.max(want, n + 1);
    if (out.length >= 5) break;
  }
  if (want <= total && out.length < 5) out.push(`${want}..${total} missing`);
  return out.join(', ') || 'in order';
}

run(main);
