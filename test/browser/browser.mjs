// Drives the demo chat page and the state server's status page in a real
// headless Chromium (playwright-core, the system's /usr/bin/chromium).
//
// Usage: node browser.mjs '<config JSON>'
//
// Config fields:
//   chromium     path to the Chromium executable
//   artifacts    directory for screenshots (created if missing)
//   demoA        URL of the demo page for tab A (e.g. frontend 1's /demo/)
//   demoB        URL of the demo page for tab B (on another frontend)
//   room         chat room both tabs join
//   afterExchange  "wait": after the first exchange print the step and read
//                one line from stdin before the second exchange (the caller
//                kills a broker in between); "skip": stop after the first
//                exchange's screenshots (no second exchange)
//   statusURL    status page to render at the end ("" skips it)
//   expectRing   broker ids the status page's ring must list (exactly)
//   expectFrontends  how many frontend rows the members table must show
//   recoverMs    how long the second exchange may take (default 10000)
//   timeoutMs    hard limit for the whole run (default 90000)
//
// Output: one JSON object per line on stdout: {"step": ...} progress
// events, and finally {"ok": true, "screenshots": [...], "status": {...},
// "recovery": {...}} or {"ok": false, "error": "..."} (exit code 1).

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const cfg = JSON.parse(process.argv[2] || '{}');
const recoverMs = cfg.recoverMs || 10000;
const timeoutMs = cfg.timeoutMs || 90000;
const stepMs = 15000; // one wait for the page (connect, a render)

function emit(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

let browser = null;

async function cleanup() {
  if (browser) {
    const b = browser;
    browser = null;
    await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  }
}

let finished = false; // the result line was written
const hardStop = setTimeout(async () => {
  finished = true;
  await Promise.race([shootOpenPages(), new Promise((r) => setTimeout(r, 5000))]);
  emit({ ok: false, error: `browser run exceeded ${timeoutMs} ms`, screenshots });
  await cleanup();
  process.exit(1);
}, timeoutMs);

// Lines from the caller (stdin), for the step that waits for it.
const lines = [];
let lineWaiter = null;
createInterface({ input: process.stdin }).on('line', (l) => {
  if (lineWaiter) { const w = lineWaiter; lineWaiter = null; w(l); } else { lines.push(l); }
});
function nextLine() {
  if (lines.length) { return Promise.resolve(lines.shift()); }
  return new Promise((resolve) => { lineWaiter = resolve; });
}

const pageErrors = [];   // uncaught exceptions: fail the run
const consoleErrors = []; // e.g. a refused WebSocket while reconnecting: reported
const screenshots = [];
const openPages = []; // {label, page}: shot on failure

async function openDemo(context, label, url) {
  const page = await context.newPage();
  openPages.push({ label, page });
  page.on('pageerror', (e) => pageErrors.push(`${label}: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') { consoleErrors.push(`${label}: ${m.text()}`); } });
  const resp = await page.goto(url, { timeout: stepMs });
  if (!resp || resp.status() !== 200) {
    throw new Error(`${label}: GET ${url} = ${resp ? resp.status() : 'no response'}`);
  }
  await waitConnected(page, label, stepMs);
  return page;
}

async function waitConnected(page, label, ms) {
  try {
    await page.waitForFunction(() => {
      const s = document.getElementById('status');
      return s && s.getAttribute('data-state') === 'connected' && !document.getElementById('send').disabled;
    }, null, { timeout: ms, polling: 50 });
  } catch (e) {
    const st = await page.evaluate(() => document.getElementById('status').textContent + ' / ' +
      document.getElementById('detail').textContent).catch(() => '?');
    throw new Error(`${label}: page never connected (status: ${st})`);
  }
}

// say types text into the page's input and presses Send.
async function say(page, text) {
  await page.fill('#input', text);
  await page.click('#send', { timeout: stepMs });
}

// seen reports whether page shows a message with exactly this text.
async function seen(page, text, ms) {
  try {
    await page.waitForFunction((t) => Array.from(document.querySelectorAll('#messages li.msg .text'))
      .some((e) => e.textContent === t), text, { timeout: ms, polling: 50 });
    return true;
  } catch (e) {
    if (e.name !== 'TimeoutError') { throw e; }
    return false;
  }
}

// deliver sends from one tab until the other shows it, retrying with a new
// text (a publish in flight when a broker dies may be lost) until the
// deadline. It returns the milliseconds it took and the attempts.
async function deliver(from, to, label, deadline) {
  const start = Date.now();
  for (let attempt = 1; ; attempt++) {
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new Error(`${label}: no message arrived within the deadline (${attempt - 1} attempts)`);
    }
    // The sender may be reconnecting: wait for it, within the deadline.
    await waitConnected(from, label + ' sender', left).catch(() => {});
    if (Date.now() >= deadline) { continue; }
    const text = `${label} #${attempt} ${Math.random().toString(36).slice(2, 8)}`;
    try {
      await say(from, text);
    } catch (e) {
      continue; // not clickable (disconnected): try again
    }
    if (await seen(to, text, Math.min(1500, Math.max(1, deadline - Date.now())))) {
      // The sender renders its own message too (it is subscribed).
      if (!(await seen(from, text, stepMs))) {
        throw new Error(`${label}: the sender never showed its own message`);
      }
      return { ms: Date.now() - start, attempts: attempt };
    }
  }
}

async function shot(page, name) {
  const path = join(cfg.artifacts, name);
  await page.screenshot({ path, fullPage: true });
  screenshots.push(path);
  emit({ step: 'screenshot', path });
}

// statusSnapshot reads what the status page shows.
function statusSnapshot(page) {
  return page.evaluate(() => {
    const text = (id) => (document.getElementById(id) || {}).textContent || '';
    return {
      conn: text('conn'),
      error: document.getElementById('error').hidden ? '' : text('error'),
      ringVersion: text('ring-version'),
      ringCount: text('ring-count'),
      ringBrokers: Array.from(document.querySelectorAll('#ring-brokers li')).map((li) => li.textContent),
      totalBrokers: text('total-brokers'),
      totalFrontends: text('total-frontends'),
      members: Array.from(document.querySelectorAll('#members tr')).map((tr) => {
        const c = Array.from(tr.children).map((td) => td.textContent);
        return { role: c[0], id: c[1], addr: c[2], health: c[3], inRing: c[4], draining: c[5], ring: c[10] };
      }),
    };
  });
}

function statusMatches(s) {
  if (!/^\d+$/.test(s.ringVersion.replace(/[,.\s]/g, '')) || s.error) { return false; }
  const want = [...(cfg.expectRing || [])].sort();
  const got = s.ringBrokers.map((b) => b.split(' @ ')[0]).sort();
  if (want.length && JSON.stringify(want) !== JSON.stringify(got)) { return false; }
  const fronts = s.members.filter((m) => m.role === 'frontend' && m.health === 'healthy');
  const brokers = s.members.filter((m) => m.role === 'broker' && m.health === 'healthy');
  if (cfg.expectFrontends && fronts.length < cfg.expectFrontends) { return false; }
  return brokers.length >= Math.max(1, want.length);
}

async function main() {
  mkdirSync(cfg.artifacts, { recursive: true });
  browser = await chromium.launch({
    executablePath: cfg.chromium,
    headless: true,
    timeout: stepMs,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
    // launch() always gives Chromium a fresh temporary --user-data-dir of
    // its own (and removes it on close); it refuses one in args.
  });
  emit({ step: 'launched', version: browser.version() });
  // Two contexts: two independent visitors.
  const viewport = { width: 900, height: 700 };
  const ctxA = await browser.newContext({ viewport });
  const ctxB = await browser.newContext({ viewport });
  const a = await openDemo(ctxA, 'A', cfg.demoA);
  const b = await openDemo(ctxB, 'B', cfg.demoB);
  const frontA = await a.textContent('#frontend');
  const frontB = await b.textContent('#frontend');
  emit({ step: 'connected', frontendA: frontA, frontendB: frontB });

  const first = {
    aToB: await deliver(a, b, 'A to B', Date.now() + stepMs),
    bToA: await deliver(b, a, 'B to A', Date.now() + stepMs),
  };
  await shot(a, 'demo-a-1.png');
  await shot(b, 'demo-b-1.png');
  emit({ step: 'exchanged', first });

  let recovery = null;
  if (cfg.afterExchange !== 'skip') {
    if (cfg.afterExchange === 'wait') {
      emit({ step: 'waiting' });
      const l = await nextLine();
      emit({ step: 'resumed', line: l });
    }
    const deadline = Date.now() + recoverMs;
    recovery = {
      aToB: await deliver(a, b, 'A to B again', deadline),
      bToA: await deliver(b, a, 'B to A again', deadline),
    };
    await shot(a, 'demo-a-2.png');
    await shot(b, 'demo-b-2.png');
    emit({ step: 'recovered', recovery });
  }

  let status = null;
  if (cfg.statusURL) {
    const ctxS = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const s = await ctxS.newPage();
    openPages.push({ label: 'status', page: s });
    s.on('pageerror', (e) => pageErrors.push(`status: ${e.message}`));
    const resp = await s.goto(cfg.statusURL, { timeout: stepMs });
    if (!resp || resp.status() !== 200) {
      throw new Error(`status page: GET ${cfg.statusURL} = ${resp ? resp.status() : 'no response'}`);
    }
    const until = Date.now() + stepMs;
    for (;;) {
      status = await statusSnapshot(s);
      if (statusMatches(status)) { break; }
      if (Date.now() > until) {
        throw new Error('status page never showed the expected ring and members; last: ' + JSON.stringify(status));
      }
      await s.waitForTimeout(200);
    }
    await shot(s, 'status.png');
  }

  if (pageErrors.length) {
    throw new Error('page errors: ' + pageErrors.join('; '));
  }
  return { ok: true, frontendA: frontA, frontendB: frontB, first, recovery, status, screenshots, consoleErrors };
}

// shootOpenPages saves what every open page shows, for a failure report.
async function shootOpenPages() {
  for (const { label, page } of openPages) {
    await shot(page, `failed-${label.toLowerCase()}.png`).catch(() => {});
  }
}

let code = 0;
try {
  const res = await main();
  if (!finished) { emit(res); }
} catch (e) {
  code = 1;
  if (!finished) {
    await shootOpenPages();
    emit({ ok: false, error: String(e && e.message ? e.message : e), screenshots });
  }
}
if (finished) { await new Promise(() => {}); } // the timeout handler exits
clearTimeout(hardStop);
await cleanup();
process.exit(code);
