// Runs recovery/page.html (served by the test's frontend) in a real
// headless Chromium and prints its result as one JSON line.
//
// Usage: node recovery.mjs '{"chromium": PATH, "url": PAGE_URL}'
import { chromium } from 'playwright-core';

const cfg = JSON.parse(process.argv[2] || '{}');
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');
let browser = null;

async function main() {
  browser = await chromium.launch({
    executablePath: cfg.chromium,
    headless: true,
    timeout: 15000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(cfg.url, { timeout: 15000 });
  await page.waitForFunction(() => window.__result !== undefined, null, { timeout: 60000 });
  const result = await page.evaluate(() => window.__result);
  emit({ ...result, pageErrors: errors, version: browser.version() });
}

main().catch((e) => emit({ ok: false, error: String(e && e.stack || e) })).finally(async () => {
  if (browser) await browser.close().catch(() => {});
  process.exit(0);
});
