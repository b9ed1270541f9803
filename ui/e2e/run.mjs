// End-to-end browser test of the lm-saes web UI with playwright-core and Debian's chromium.
//
//   LM_SAES_URL=http://127.0.0.1:PORT node e2e/run.mjs   # against a running `lm-saes serve`
//   node e2e/run.mjs --mock                              # against e2e/mock-server.mjs (development)
//
// Env: LM_SAES_URL (server root), LM_SAES_SCREENSHOTS (default <repo>/docs/screenshots),
//      LM_SAES_DICTIONARY (dictionary to test; default the first listed with a 'default' analysis),
//      LM_SAES_SWEEP (a sweep whose page to test as well; with --mock the mock's sweep),
//      LM_SAES_CHROMIUM (default /usr/bin/chromium).
// Exits 1 with a message naming the failed step; a screenshot of the failure goes next to the others.
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SHOTS = process.env.LM_SAES_SCREENSHOTS ? resolve(process.env.LM_SAES_SCREENSHOTS) : join(REPO, 'docs/screenshots');
const CHROMIUM = process.env.LM_SAES_CHROMIUM ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const TIMEOUT = 15_000;

class Failure extends Error {}
function check(cond, message) {
  if (!cond) throw new Failure(message);
}

let base = process.env.LM_SAES_URL?.replace(/\/+$/, '');
let mock = null;
if (process.argv.includes('--mock')) {
  const { startMockServer } = await import('./mock-server.mjs');
  mock = await startMockServer(0);
  base = mock.url;
  console.log(`using mock server ${base}`);
}
const SWEEP = process.env.LM_SAES_SWEEP || (mock ? 'topk-k' : undefined);
if (!base) {
  console.error('e2e: set LM_SAES_URL to a running `lm-saes serve` (e.g. http://127.0.0.1:8000), or pass --mock');
  process.exit(2);
}

async function getJson(path, init) {
  const res = await fetch(base + path, init);
  const body = await res.json().catch(() => null);
  return { status: res.status, body };
}

const enc = encodeURIComponent;
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(TIMEOUT);
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));
await mkdir(SHOTS, { recursive: true });

let current = 'start';
async function step(name, fn) {
  current = name;
  const t0 = Date.now();
  await fn();
  check(pageErrors.length === 0, `uncaught error in the page: ${pageErrors.join(' | ')}`);
  console.log(`ok   ${name} (${Date.now() - t0} ms)`);
}
/** Poll the page URL (client-side routing changes it without a page load). */
async function waitUrl(pred, what) {
  const t0 = Date.now();
  while (!pred(new URL(page.url()))) {
    if (Date.now() - t0 > TIMEOUT) throw new Failure(`URL stayed ${page.url()}; expected ${what}`);
    await page.waitForTimeout(25);
  }
}
const tid = (id) => page.locator(`[data-testid="${id}"]`);
const exactly = (text) => new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);

/** The UI's number format (fmt in src/format.ts), to compare a shown value with the API's. */
function fmt(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (Number.isInteger(v) && Math.abs(v) < 1e9) return v.toLocaleString('en-US');
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return v.toFixed(digits);
}

/** The rows in the order the sweep table sorts them: missing values last, ties in record order. */
function sortedRows(rows, value, desc) {
  return rows
    .map((r, i) => ({ r, i, v: value(r) }))
    .sort((a, b) => {
      if (a.v === undefined || b.v === undefined) return (a.v === undefined) - (b.v === undefined) || a.i - b.i;
      return (desc ? b.v - a.v : a.v - b.v) || a.i - b.i;
    })
    .map(({ r }) => r.name);
}

let dict; // the dictionary under test
let featureIndex;
try {
  await step('health endpoint answers ok', async () => {
    const { status, body } = await getJson('/api/health');
    check(status === 200 && body?.status === 'ok', `GET /api/health gave ${status} ${JSON.stringify(body)}`);
  });

  await step('home lists every dictionary', async () => {
    const { body: dicts } = await getJson('/api/dictionaries');
    check(Array.isArray(dicts) && dicts.length > 0, `GET /api/dictionaries returned no dictionaries: ${JSON.stringify(dicts)}`);
    await page.goto(base + '/');
    await tid('dictionary-link').first().waitFor();
    const names = await tid('dictionary-link').allTextContents();
    check(JSON.stringify(names) === JSON.stringify(dicts.map((d) => d.name)), `home shows ${JSON.stringify(names)}, API has ${JSON.stringify(dicts.map((d) => d.name))}`);
    dict = process.env.LM_SAES_DICTIONARY ?? dicts.find((d) => (d.analyses ?? []).includes('default'))?.name;
    check(dict, `no dictionary has a 'default' analysis: ${JSON.stringify(dicts.map((d) => [d.name, d.analyses]))}`);
    check(names.includes(dict), `LM_SAES_DICTIONARY=${dict} is not among ${JSON.stringify(names)}`);
  });

  await step('home lists every sweep (or no sweep section without any)', async () => {
    const { status, body: sweeps } = await getJson('/api/sweeps');
    check(status === 200 && Array.isArray(sweeps), `GET /api/sweeps gave ${status} ${JSON.stringify(sweeps)}`);
    if (sweeps.length === 0) {
      check((await tid('sweeps-section').count()) === 0, 'home shows a sweeps section with no sweep stored');
      return;
    }
    await tid('sweep-link').first().waitFor();
    const names = await tid('sweep-link').allTextContents();
    check(JSON.stringify(names) === JSON.stringify(sweeps.map((s) => s.name)), `home shows sweeps ${JSON.stringify(names)}, API has ${JSON.stringify(sweeps.map((s) => s.name))}`);
    check(!SWEEP || names.includes(SWEEP), `LM_SAES_SWEEP=${SWEEP} is not among ${JSON.stringify(names)}`);
  });

  await step('dictionary page shows metrics, density histogram and features', async () => {
    await tid('dictionary-link').filter({ hasText: exactly(dict) }).first().click();
    await waitUrl((u) => u.pathname === `/dictionaries/${enc(dict)}`, `path /dictionaries/${enc(dict)}`);
    await tid('metrics').waitFor();
    check((await tid('metrics').locator('tr').count()) >= 4, 'metrics table has fewer than 4 rows');
    const { body: detail } = await getJson(`/api/dictionaries/${enc(dict)}`);
    check(detail?.analysis, `dictionary ${dict} has no analysis; the feature pages cannot be tested (pick one with LM_SAES_DICTIONARY)`);
    if (detail.analysis.density_histogram) {
      await tid('density-histogram').waitFor();
      const bars = await tid('density-histogram').locator('rect').count();
      const bins = detail.analysis.density_histogram.counts.length;
      check(bars === bins, `density histogram has ${bars} bars, API has ${bins} bins`);
    }
    await tid('feature-link').first().waitFor();
    const { body: list } = await getJson(`/api/dictionaries/${enc(dict)}/features?skip=0&limit=50`);
    const shown = (await tid('feature-link').allTextContents()).map(Number);
    check(JSON.stringify(shown) === JSON.stringify(list.items.map((f) => f.index)), `feature list shows ${shown.slice(0, 5)}…, API gives ${list.items.slice(0, 5).map((f) => f.index)}…`);
    check((await tid('page-info').textContent()).includes(list.total.toLocaleString('en-US')), `page info lacks total ${list.total}`);
  });

  await step('feature list sorts by max activation via the URL', async () => {
    await tid('sort').selectOption('max_activation');
    await waitUrl((u) => u.searchParams.get('sort') === 'max_activation', 'sort=max_activation');
    await tid('order').selectOption('desc');
    await waitUrl((u) => u.searchParams.get('order') === 'desc', 'order=desc');
    const { body: list } = await getJson(`/api/dictionaries/${enc(dict)}/features?sort=max_activation&order=desc&skip=0&limit=50`);
    const want = String(list.items[0].index);
    await page.waitForFunction((w) => document.querySelector('[data-testid="feature-link"]')?.textContent === w, want);
    featureIndex = list.items[0].index;
    if (list.total > 50) {
      await tid('next-page').click();
      await waitUrl((u) => u.searchParams.get('skip') === '50', 'skip=50');
      const { body: p2 } = await getJson(`/api/dictionaries/${enc(dict)}/features?sort=max_activation&order=desc&skip=50&limit=50`);
      await page.waitForFunction((w) => document.querySelector('[data-testid="feature-link"]')?.textContent === w, String(p2.items[0].index));
      await page.goBack();
      await waitUrl((u) => !u.searchParams.has('skip'), 'no skip= after going back');
    }
    await tid('feature-link').first().waitFor();
    await page.screenshot({ path: join(SHOTS, 'dictionary.png'), fullPage: true });
  });

  let feature;
  await step('feature page highlights every token with the API activation', async () => {
    await tid('feature-link').filter({ hasText: new RegExp(`^${featureIndex}$`) }).first().click();
    await waitUrl((u) => u.pathname === `/dictionaries/${enc(dict)}/features/${featureIndex}`, `path /dictionaries/${enc(dict)}/features/${featureIndex}`);
    await tid('feature-index').filter({ hasText: String(featureIndex) }).waitFor();
    const { status, body } = await getJson(`/api/dictionaries/${enc(dict)}/features/${featureIndex}`);
    check(status === 200, `GET feature ${featureIndex} gave ${status}`);
    feature = body;
    check(feature.top_contexts.length > 0, `feature ${featureIndex} (highest max activation) has no top contexts`);
    const want = feature.top_contexts.flatMap((c) => c.tokens.map((t, i) => ({ text: t, act: c.acts[i] })));
    const got = await tid('top-contexts').locator('[data-testid="token"]').evaluateAll((els) =>
      els.map((e) => ({ text: e.textContent, act: e.getAttribute('data-act'), title: e.getAttribute('title'), bg: getComputedStyle(e).backgroundColor })),
    );
    check(got.length === want.length, `page shows ${got.length} tokens in top contexts, API has ${want.length}`);
    got.forEach((g, i) => {
      const w = want[i];
      check(g.text === w.text, `token ${i}: text ${JSON.stringify(g.text)} != API ${JSON.stringify(w.text)}`);
      check(Number(g.act) === w.act, `token ${i} (${JSON.stringify(w.text)}): data-act ${g.act} != API ${w.act}`);
      check(g.title?.includes(String(w.act)), `token ${i}: title ${JSON.stringify(g.title)} lacks its activation ${w.act}`);
      const m = /rgba?\(([^)]*)\)/.exec(g.bg);
      const parts = m ? m[1].split(',').map(Number) : [];
      const alpha = parts.length === 4 ? parts[3] : parts.length === 3 ? 1 : NaN;
      const expect = feature.max_activation > 0 ? Math.min(Math.max(w.act / feature.max_activation, 0), 1) : 0;
      check(Math.abs(alpha - expect) < 0.01, `token ${i}: background alpha ${alpha} (from ${g.bg}), expected act/max = ${expect.toFixed(3)}`);
    });
    await tid('activation-histogram').waitFor();
    check((await tid('activation-histogram').locator('rect').count()) === feature.histogram.counts.length, 'activation histogram bar count differs from the API');
    check((await tid('logits-positive').locator('tr').count()) === feature.logits.positive.length, 'positive logits count differs from the API');
    check((await tid('neighbors').locator('a').count()) === feature.neighbors.length, 'neighbour link count differs from the API');
    await page.screenshot({ path: join(SHOTS, 'feature.png'), fullPage: true });
  });

  await step('feature page survives a reload (SPA fallback)', async () => {
    await page.reload();
    await tid('feature-index').filter({ hasText: String(featureIndex) }).waitFor();
  });

  await step('arrow keys move to the next/previous feature', async () => {
    const [key, target] = feature.next !== null ? ['ArrowRight', feature.next] : ['ArrowLeft', feature.prev];
    check(target !== null, `feature ${featureIndex} has neither next nor prev`);
    await page.locator('body').click({ position: { x: 5, y: 5 } });
    await page.keyboard.press(key);
    await waitUrl((u) => u.pathname === `/dictionaries/${enc(dict)}/features/${target}`, `path /dictionaries/${enc(dict)}/features/${target} after ${key}`);
    await tid('feature-index').filter({ hasText: String(target) }).waitFor();
    await page.keyboard.press(key === 'ArrowRight' ? 'k' : 'j');
    await waitUrl((u) => u.pathname === `/dictionaries/${enc(dict)}/features/${featureIndex}`, `path /dictionaries/${enc(dict)}/features/${featureIndex}`);
  });

  await step('a score column sorts the features by their explanation scores, both ways', async () => {
    await page.goto(`${base}/dictionaries/${enc(dict)}`);
    await tid('feature-link').first().waitFor();
    const { body: scored } = await getJson(`/api/dictionaries/${enc(dict)}/features?sort=detection&order=desc&skip=0&limit=50`);
    check(scored.total > 0, `no feature of ${dict} has a detection score (run lm-saes interpret on it)`);
    for (const order of ['desc', 'asc']) {
      await tid('sort-score-detection').click();
      await waitUrl((u) => u.searchParams.get('sort') === 'detection' && u.searchParams.get('order') === order, `sort=detection&order=${order}`);
      const { body: list } = await getJson(`/api/dictionaries/${enc(dict)}/features?sort=detection&order=${order}&skip=0&limit=50`);
      const want = JSON.stringify(list.items.map((f) => String(f.index)));
      await page.waitForFunction((w) => JSON.stringify([...document.querySelectorAll('[data-testid="feature-link"]')].map((e) => e.textContent)) === w, want);
      const values = (await tid('score-detection').evaluateAll((els) => els.map((e) => e.getAttribute('data-value')))).map(Number);
      check(JSON.stringify(values) === JSON.stringify(list.items.map((f) => f.explanation.scores.detection)), `detection column shows ${values.slice(0, 5)}…, API ${list.items.slice(0, 5).map((f) => f.explanation.scores.detection)}…`);
      check(values.every((v, i) => i === 0 || (order === 'desc' ? values[i - 1] >= v : values[i - 1] <= v)), `detection column is not sorted ${order}: ${values}`);
      check((await tid('page-info').textContent()).includes(list.total.toLocaleString('en-US')), `page info lacks the ${list.total} scored features`);
    }
  });

  await step('feature page shows the explanation, who wrote it, its scores and the records', async () => {
    const { body: best } = await getJson(`/api/dictionaries/${enc(dict)}/features?sort=simulation&order=desc&skip=0&limit=1`);
    const index = best.items[0].index;
    await page.goto(`${base}/dictionaries/${enc(dict)}/features/${index}`);
    const { body: f } = await getJson(`/api/dictionaries/${enc(dict)}/features/${index}`);
    await tid('explanation-text').waitFor();
    check((await tid('explanation-text').textContent()) === f.explanation.text, `explanation shows ${JSON.stringify(await tid('explanation-text').textContent())}, API ${JSON.stringify(f.explanation.text)}`);
    const label = f.explanation.kind === 'lexical' ? 'lexical baseline' : f.explanation.explainer;
    check((await tid('explanation').locator('[data-testid="explainer"]').first().textContent()) === label, `the explainer is not labelled ${JSON.stringify(label)}`);
    for (const s of ['simulation', 'detection', 'fuzzing']) {
      const cell = tid('explanation').locator(`[data-testid="score-${s}"]`);
      const [text, value] = [await cell.textContent(), await cell.getAttribute('data-value')];
      const api = f.explanation.scores[s];
      check(text === fmt(api, 2) && (api === null || api === undefined ? value === '' : Number(value) === api), `${s} score shows ${text} (${value}), API ${api}`);
    }
    const { body: records } = await getJson(`/api/dictionaries/${enc(dict)}/features/${index}/explanations`);
    await tid('explanation-records').locator('summary').first().click();
    check((await tid('explanation-record').count()) === records.length, `${await tid('explanation-record').count()} explanation records shown, API has ${records.length}`);
    check(records.some((r) => r.explanation === f.explanation.text), 'no record holds the shown explanation');
  });

  await step('token search and the random-feature button', async () => {
    const ctx = feature.top_contexts[0];
    const peak = ctx.acts.indexOf(Math.max(...ctx.acts));
    const q = [ctx.tokens[peak], ...ctx.tokens].map((t) => t.trim()).find(Boolean) ?? 'the';
    const { status, body } = await getJson(`/api/dictionaries/${enc(dict)}/search?q=${enc(q)}&limit=20`);
    check(status === 200, `GET search?q=${q} gave ${status} ${JSON.stringify(body)}`);
    await page.goto(`${base}/dictionaries/${enc(dict)}`);
    await tid('token-search-input').fill(q);
    await tid('token-search-input').press('Enter');
    await waitUrl((u) => u.searchParams.get('q') === q, `q=${q}`);
    if (body.items.length > 0) {
      await tid('token-search-results').waitFor();
      const shown = await tid('token-search-results').locator('a').allTextContents();
      const want = body.items.map((it) => `#${it.index}`);
      check(JSON.stringify(shown) === JSON.stringify(want), `token search for ${JSON.stringify(q)} shows ${shown}, API ${want}`);
    }
    await tid('random').click();
    await waitUrl((u) => /^\/dictionaries\/[^/]+\/features\/\d+$/.test(u.pathname), 'a feature page after Random feature');
    await tid('feature-index').waitFor();
  });

  await step('live inference shows tokens and their features', async () => {
    const text = 'The cat sat on the mat.';
    await page.goto(`${base}/dictionaries/${enc(dict)}/infer`);
    await tid('infer-text').fill(text);
    await tid('infer-run').click();
    await tid('infer-tokens').locator('[data-testid="token"]').first().waitFor();
    const { status, body } = await getJson(`/api/dictionaries/${enc(dict)}/infer`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ text, top: 5 }) });
    check(status === 200, `POST infer gave ${status} ${JSON.stringify(body)}`);
    const shown = await tid('infer-tokens').locator('[data-testid="token"]').allTextContents();
    check(JSON.stringify(shown) === JSON.stringify(body.tokens), `infer shows ${JSON.stringify(shown)}, API tokens ${JSON.stringify(body.tokens)}`);
    const k = Math.min(1, shown.length - 1);
    await tid('infer-tokens').locator('[data-testid="token"]').nth(k).click();
    await tid('infer-features').getByText(JSON.stringify(body.tokens[k])).waitFor();
    const links = await tid('infer-feature-link').evaluateAll((els) => els.map((e) => e.getAttribute('href')));
    const wantLinks = body.features[k].map((f) => `/dictionaries/${enc(dict)}/features/${f.index}`);
    check(JSON.stringify(links) === JSON.stringify(wantLinks), `token ${k} feature links ${JSON.stringify(links)} != API ${JSON.stringify(wantLinks)}`);
    await page.screenshot({ path: join(SHOTS, 'infer.png'), fullPage: true });
  });

  await step('unknown feature index shows the not-found page', async () => {
    const bad = 999_999_999;
    const { status } = await getJson(`/api/dictionaries/${enc(dict)}/features/${bad}`);
    check(status === 404, `GET feature ${bad} gave ${status}, expected 404`);
    await page.goto(`${base}/dictionaries/${enc(dict)}/features/${bad}`);
    await tid('not-found').waitFor();
  });

  await step('unknown dictionary and unknown route show the not-found page', async () => {
    await page.goto(`${base}/dictionaries/${enc('no-such-dictionary-e2e')}`);
    await tid('not-found').waitFor();
    await page.goto(`${base}/no/such/page`);
    await tid('not-found').waitFor();
  });

  await step('a 503 from the API shows "database unavailable"', async () => {
    await page.route('**/api/dictionaries', (r) => r.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ detail: 'database unavailable' }) }));
    await page.goto(base + '/');
    await tid('db-unavailable').waitFor();
    await page.unroute('**/api/dictionaries');
  });

  if (SWEEP) {
    let sweep;
    await step('sweep page shows every row with the API values', async () => {
      const { status, body } = await getJson(`/api/sweeps/${enc(SWEEP)}`);
      check(status === 200, `GET /api/sweeps/${SWEEP} gave ${status} ${JSON.stringify(body)}`);
      sweep = body;
      await page.goto(base + '/');
      await tid('sweep-link').filter({ hasText: exactly(SWEEP) }).first().click();
      await waitUrl((u) => u.pathname === `/sweeps/${enc(SWEEP)}`, `path /sweeps/${enc(SWEEP)}`);
      await tid('sweep-table').waitFor();
      const shown = await tid('sweep-row').evaluateAll((trs) =>
        trs.map((tr) => ({
          name: tr.querySelector('[data-testid="row-name"]')?.textContent,
          href: tr.querySelector('a[data-testid="row-name"]')?.getAttribute('href') ?? null,
          metrics: Object.fromEntries([...tr.querySelectorAll('[data-testid="metric"]')].map((e) => [e.dataset.metric, [e.textContent, e.dataset.value]])),
          status: tr.querySelector('[data-testid="row-status"]')?.textContent,
          error: tr.querySelector('[data-testid="row-error"]')?.textContent ?? null,
          hint: tr.querySelector('[data-testid="analyze-hint"]') !== null,
          star: tr.querySelector('[data-testid="frontier"]') !== null,
        })),
      );
      check(shown.length === sweep.rows.length, `the table shows ${shown.length} rows, the API record has ${sweep.rows.length}`);
      sweep.rows.forEach((r, i) => {
        const g = shown[i];
        check(g.name === r.name, `row ${i}: name ${JSON.stringify(g.name)} != API ${JSON.stringify(r.name)}`);
        for (const m of sweep.metrics) {
          const [text, value] = g.metrics[m] ?? [];
          check(text === fmt(r.metrics[m], 4), `${r.name}: ${m} shows ${JSON.stringify(text)}, API ${r.metrics[m]} formats as ${fmt(r.metrics[m], 4)}`);
          check(r.metrics[m] === undefined ? value === '' : Number(value) === r.metrics[m], `${r.name}: ${m} data-value ${value} != API ${r.metrics[m]}`);
        }
        check(g.status === r.status, `${r.name}: status ${g.status} != API ${r.status}`);
        check(g.error === (r.error ?? null), `${r.name}: shows error ${JSON.stringify(g.error)}, API ${JSON.stringify(r.error)}`);
        check(g.star === r.frontier.length > 0, `${r.name}: frontier mark ${g.star}, API frontier ${JSON.stringify(r.frontier)}`);
        const link = r.analyzed ? `/dictionaries/${enc(r.dictionary)}` : null;
        check(g.href === link, `${r.name}: links to ${g.href}, expected ${link} (analyzed=${r.analyzed})`);
        const hint = !r.analyzed && r.kind === 'member' && r.status === 'finished' && Boolean(r.dictionary_dir);
        check(g.hint === hint, `${r.name}: analyze hint shown=${g.hint}, expected ${hint}`);
      });
      const failed = sweep.rows.filter((r) => r.status === 'failed' && r.error);
      check((await tid('row-error').count()) === failed.length, `${await tid('row-error').count()} errors shown, ${failed.length} failed rows with an error`);
    });

    await step('sweep plots one point per finished row; a click on one selects its row', async () => {
      let member;
      for (const metric of Object.keys(sweep.frontiers)) {
        const want = sweep.rows.filter((r) => r.status === 'finished' && typeof r.metrics.l0 === 'number' && typeof r.metrics[metric] === 'number');
        const plot = page.locator(`[data-testid="sweep-plot"][data-metric="${metric}"]`);
        const names = await plot.locator('[data-testid="point"]').evaluateAll((els) => els.map((e) => e.getAttribute('data-name')));
        check(JSON.stringify([...names].sort()) === JSON.stringify(want.map((r) => r.name).sort()), `${metric} plot has points ${JSON.stringify(names)}, finished rows ${JSON.stringify(want.map((r) => r.name))}`);
        member ??= want.find((r) => r.kind === 'member');
      }
      const variants = new Set(sweep.rows.filter((r) => r.kind === 'baseline').map((r) => r.variant ?? r.name));
      check((await tid('plot-legend').locator('li').count()) === 2 + variants.size, `legend lacks one of members, frontier, ${[...variants]}`);
      if (member) {
        await page.locator(`[data-testid="sweep-plot"] [data-testid="point"][data-name="${member.name}"]`).first().click();
        await page.locator(`[data-testid="sweep-row"][data-name="${member.name}"].selected`).waitFor();
      }
      const analyzed = sweep.rows.find((r) => r.analyzed);
      if (analyzed) {
        await page.locator(`[data-testid="sweep-row"][data-name="${analyzed.name}"] a[data-testid="row-name"]`).click();
        await waitUrl((u) => u.pathname === `/dictionaries/${enc(analyzed.dictionary)}`, `path /dictionaries/${enc(analyzed.dictionary)}`);
        await tid('dictionary-name').filter({ hasText: exactly(analyzed.dictionary) }).waitFor();
        await page.goBack();
        await tid('sweep-table').waitFor();
      }
    });

    await step('sweep table sorts by a clicked header, via the URL', async () => {
      const metric = Object.keys(sweep.frontiers)[0] ?? sweep.metrics[0];
      for (const order of ['asc', 'desc']) {
        await tid(`sort-metrics.${metric}`).click();
        await waitUrl((u) => u.searchParams.get('sort') === `metrics.${metric}` && u.searchParams.get('order') === order, `sort=metrics.${metric}&order=${order}`);
        const want = sortedRows(sweep.rows, (r) => r.metrics[metric], order === 'desc');
        const names = await tid('row-name').allTextContents();
        check(JSON.stringify(names) === JSON.stringify(want), `sorted by ${metric} ${order}: ${JSON.stringify(names)}, expected ${JSON.stringify(want)}`);
      }
      await page.mouse.move(0, 0);
      await page.screenshot({ path: join(SHOTS, 'sweep.png'), fullPage: true });
    });
  }

  await step('pages fit a narrow (mobile) screen', async () => {
    await page.setViewportSize({ width: 375, height: 800 });
    const sweepPage = SWEEP ? [`/sweeps/${enc(SWEEP)}`] : [];
    for (const url of [`/`, `/dictionaries/${enc(dict)}`, `/dictionaries/${enc(dict)}/features/${featureIndex}`, `/dictionaries/${enc(dict)}/infer`, ...sweepPage]) {
      await page.goto(base + url);
      await page.locator('main h1').first().waitFor();
      await page.waitForLoadState('networkidle');
      const [sw, cw] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
      check(sw <= cw + 1, `${url} overflows horizontally at 375px (scrollWidth ${sw} > ${cw})`);
    }
  });
  console.log(`e2e passed against ${base}; screenshots in ${SHOTS}`);
} catch (e) {
  const shot = join(SHOTS, 'e2e-failure.png');
  await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
  console.error(`FAIL ${current}: ${e instanceof Failure ? e.message : e?.stack ?? e}`);
  console.error(`  at ${page.url()}; screenshot ${shot}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  mock?.server.close();
}
