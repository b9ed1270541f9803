// End-to-end test of the lm-saes web UI with playwright-core and Debian's chromium: one spec per
// page (e2e/pages/*.mjs), run in order in one browser, at 1280x900 and then at 390x844.
//
//   LM_SAES_URL=http://127.0.0.1:PORT node e2e/run.mjs   # against a running `lm-saes serve`
//   node e2e/run.mjs --mock                              # against e2e/mock-server.mjs (development)
//
// Env: LM_SAES_URL (server root), LM_SAES_SCREENSHOTS (default <repo>/docs/screenshots; with --mock a temporary directory),
//      LM_SAES_DICTIONARY (dictionary to test; default the first listed with a 'default' analysis),
//      LM_SAES_SWEEP (a sweep whose page to test as well; with --mock the mock's sweep),
//      LM_SAES_DECOMPOSITION (a TMS 5-2 decomposition whose pages to test as well),
//      LM_SAES_LM_DECOMPOSITION (a language model's decomposition whose live inference to test),
//      LM_SAES_CHROMIUM (default /usr/bin/chromium).
// Exits 1 with a message naming the failed step; a screenshot of the failure goes next to the others.
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { ARGS, Failure, harness } from './lib.mjs';
import decompositionPage from './pages/decomposition.mjs';
import dictionaryPage from './pages/dictionary.mjs';
import errorPages from './pages/errors.mjs';
import featurePage from './pages/feature.mjs';
import homePage from './pages/home.mjs';
import inferPage from './pages/infer.mjs';
import mobile from './pages/mobile.mjs';
import steerPage from './pages/steer.mjs';
import sweepPage from './pages/sweep.mjs';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const MOCK = process.argv.includes('--mock'); // canned data: never over the documented screenshots
// A relative LM_SAES_SCREENSHOTS is relative to where the command was typed (`npm --prefix ui run` runs in ui/).
const SHOTS = process.env.LM_SAES_SCREENSHOTS ? resolve(process.env.INIT_CWD ?? process.cwd(), process.env.LM_SAES_SCREENSHOTS) : MOCK ? join(tmpdir(), 'lm-saes-e2e-mock') : join(REPO, 'docs/screenshots');
const CHROMIUM = process.env.LM_SAES_CHROMIUM ?? '/usr/bin/chromium';

let base = process.env.LM_SAES_URL?.replace(/\/+$/, '');
let mock = null;
if (MOCK) {
  const { startMockServer } = await import('./mock-server.mjs');
  mock = await startMockServer(0);
  base = mock.url;
  console.log(`using mock server ${base}`);
}
if (!base) {
  console.error('e2e: set LM_SAES_URL to a running `lm-saes serve` (e.g. http://127.0.0.1:8000), or pass --mock');
  process.exit(2);
}

const state = { dict: process.env.LM_SAES_DICTIONARY, sweep: process.env.LM_SAES_SWEEP || (mock ? 'topk-k' : undefined), spd: process.env.LM_SAES_DECOMPOSITION, lmSpd: process.env.LM_SAES_LM_DECOMPOSITION, browser: null };
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
state.browser = browser;
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const t = harness(await context.newPage(), base, SHOTS, state);
await mkdir(SHOTS, { recursive: true });
const t0 = Date.now();
try {
  for (const spec of [homePage, dictionaryPage, featurePage, steerPage, inferPage, errorPages, sweepPage, decompositionPage, mobile]) await spec(t);
  console.log(`e2e passed against ${base} in ${((Date.now() - t0) / 1000).toFixed(1)} s; screenshots in ${SHOTS}`);
} catch (e) {
  const page = state.failing ?? t.page;
  const shot = join(SHOTS, 'e2e-failure.png');
  await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
  console.error(`FAIL ${state.step ?? t.current}: ${e instanceof Failure ? e.message : e?.stack ?? e}`);
  console.error(`  at ${page.url()}; screenshot ${shot}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  mock?.server.close();
}
