// Render timing of feature pages in headless chromium (used by benchmarks/serve.py).
//
//   node e2e/render-timing.mjs BASE_URL DICTIONARY INDEX...
//
// For each index: navigate to /dictionaries/DICTIONARY/features/INDEX and time until the top
// contexts' token spans are visible; then the home page (until a dictionary link shows) and the
// dictionary page (until its feature list shows), each first load (a fresh browser context, no
// cache) and again. Prints one JSON object: {"ms": [...], "indices": [...], "pages": {...}}.
import { chromium } from 'playwright-core';

const [base, dict, ...indices] = process.argv.slice(2);
const CHROMIUM = process.env.LM_SAES_CHROMIUM ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
const ms = [];
const pages = {};
const errors = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (e) => errors.push(String(e)));
  for (const i of indices) {
    const t0 = performance.now();
    await page.goto(`${base}/dictionaries/${encodeURIComponent(dict)}/features/${i}`);
    await page.locator('[data-testid="top-contexts"] [data-testid="token"]').first().waitFor({ state: 'visible' });
    ms.push(performance.now() - t0);
  }
  for (const [name, path, selector] of [['home', '/', '[data-testid="dictionary-link"]'],
    ['dictionary', `/dictionaries/${encodeURIComponent(dict)}`, '[data-testid="feature-link"]'],
    ['feature', `/dictionaries/${encodeURIComponent(dict)}/features/${indices[0]}`, '[data-testid="top-contexts"] [data-testid="token"]']]) {
    const fresh = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    const times = [];
    for (let k = 0; k < 2; k++) {
      const t0 = performance.now();
      await fresh.goto(base + path);
      await fresh.locator(selector).first().waitFor({ state: 'visible' });
      times.push(Math.round(performance.now() - t0));
    }
    pages[name] = { first_ms: times[0], again_ms: times[1] };
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify({ indices: indices.map(Number), ms, pages, page_errors: errors }));
