// The shared harness of the interop checks: each check script runs named
// checks against the real socketcluster-client, prints one JSON line per
// check, {"check":NAME,"ok":BOOL,...}, then {"summary":true,...}, and
// exits 0 only when every check passed.
import crypto from 'node:crypto';

const env = process.env;

// arg returns the value after a command-line flag, or undefined.
export const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};

// stepTimeout bounds each wait (SCC_INTEROP_STEP_TIMEOUT, ms, default 5000).
export const stepTimeout = Number(env.SCC_INTEROP_STEP_TIMEOUT || 5000);

export const results = [];
export const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const hardTimer = setTimeout(() => {
  emit({ check: 'overall-timeout', ok: false, error: 'run did not finish in time' });
  process.exit(2);
}, 20 * stepTimeout);
hardTimer.unref();

// check runs fn as the check name and records its outcome.
export async function check(name, fn) {
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

export function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

export function withTimeout(promise, what, ms = stepTimeout) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const b64url = (buf) => Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');

// signJWT signs payload with HS256 under key.
export function signJWT(key, payload) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(payload));
  const sig = b64url(crypto.createHmac('sha256', key).update(`${head}.${body}`).digest());
  return `${head}.${body}.${sig}`;
}

// run runs main, prints the summary and exits.
export function run(main) {
  main().then(() => {
    const failed = results.filter((r) => !r.ok).length;
    emit({ summary: true, passed: results.length - failed, failed });
    process.exit(failed ? 1 : 0);
  }, (err) => {
    emit({ check: 'main', ok: false, error: String(err && err.stack ? err.stack : err) });
    process.exit(1);
  });
}
