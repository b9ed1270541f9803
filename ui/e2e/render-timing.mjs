// Render timing of feature pages in headless chromium (used by benchmarks/serve.py).
//
//   node e2e/render-timing.mjs BASE_URL DICTIONARY INDEX...
//
// For each index: navigate to /dictionaries/DICTIONARY/features/INDEX and time until the top
// contexts' token spans are visible. Prints one JSON object: {"ms": [...], "indices": [...]}.
import { chromium } from 'playwright-core';

const [base, dict, ...indices] = process.argv.slice(2);
const CHROMIUM = process.env.LM_SAES_CHROMIUM ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
const ms = [];
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
} finally {
  await browser.close();
}
console.log(JSON.stringify({ indices: indices.map(Number), ms, page_errors: errors }));
