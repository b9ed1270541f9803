// `/dictionaries/:name`: density histogram with labelled axes, explanation scores, token search and
// the feature list with summary lines, metrics collapsed below them; sorting and paging in the URL.
import { join } from 'node:path';
import { check, checkSummaryLines, enc } from '../lib.mjs';

export default async function dictionary(t) {
  const { page, base, state, tid } = t;

  await t.step('dictionary page: density histogram with axis labels, summary lines in the list, metrics collapsed', async () => {
    await page.goto(base + '/');
    await tid('dictionary-link').filter({ hasText: t.exactly(state.dict) }).first().click();
    await t.waitUrl((u) => u.pathname === t.dictPath(), `path ${t.dictPath()}`);
    const { body: detail } = await t.getJson(t.api());
    check(detail?.analysis, `dictionary ${state.dict} has no analysis; the feature pages cannot be tested (pick one with LM_SAES_DICTIONARY)`);
    await tid('feature-link').first().waitFor();
    check((await page.title()) === `${state.dict} — lm-saes`, `the dictionary page is titled ${JSON.stringify(await page.title())}`);
    if (detail.analysis.density_histogram) {
      const hist = tid('density-histogram');
      check((await hist.locator('rect').count()) === detail.analysis.density_histogram.counts.length, 'density histogram bar count differs from the API');
      const ticks = await hist.locator('.ticks span').allTextContents();
      check(ticks.length > 0 && ticks.every((x) => /^[0-9.e+-]+%$/.test(x)), `density ticks ${JSON.stringify(ticks)} are not percentages`);
      check((await hist.locator('.x-label').textContent()).includes('density') && (await hist.locator('.y-label').textContent()) === 'features', 'density histogram lacks its axis labels');
    }
    if (detail.interpretations?.length && page.viewportSize().width >= 1280) {
      const [scroll, client] = await tid('interpretations').evaluate((e) => [e.parentElement.scrollWidth, e.parentElement.clientWidth]);
      check(scroll <= client + 1, `the explanation scores table scrolls sideways at 1280 px (${scroll} > ${client})`);
    }
    const details = tid('metrics-details');
    check(!(await details.evaluate((d) => d.open)), 'the metrics are open by default');
    const listTop = await tid('feature-list').evaluate((e) => e.getBoundingClientRect().top);
    const metricsTop = await details.evaluate((e) => e.getBoundingClientRect().top);
    check(metricsTop > listTop, 'the metrics come before the feature list');
    await details.locator('summary').click();
    await tid('metrics').waitFor();
    const rows = await tid('metrics').locator('tr').allTextContents();
    check(rows.length >= 4 && !rows.some((r) => r.includes('[object Object]')), `metrics rows: ${JSON.stringify(rows.filter((r) => r.includes('object')))}`);

    const { body: list } = await t.getJson(t.api('/features?skip=0&limit=50'));
    const shown = (await tid('feature-link').allTextContents()).map(Number);
    check(JSON.stringify(shown) === JSON.stringify(list.items.map((f) => f.index)), `feature list shows ${shown.slice(0, 5)}…, API gives ${list.items.slice(0, 5).map((f) => f.index)}…`);
    check((await tid('page-info').textContent()).includes(list.total.toLocaleString('en-US')), `page info lacks total ${list.total}`);
    await checkSummaryLines(tid('features'), list.items.map((f) => f.summary), 'feature list');
  });

  await t.step('feature list sorts by max activation via the URL', async () => {
    await tid('sort').selectOption('max_activation');
    await t.waitUrl((u) => u.searchParams.get('sort') === 'max_activation', 'sort=max_activation');
    await tid('order').selectOption('desc');
    await t.waitUrl((u) => u.searchParams.get('order') === 'desc', 'order=desc');
    const { body: list } = await t.getJson(t.api('/features?sort=max_activation&order=desc&skip=0&limit=50'));
    await page.waitForFunction((w) => document.querySelector('[data-testid="feature-link"]')?.textContent === w, String(list.items[0].index));
    state.featureIndex = list.items[0].index;
    if (list.total > 50) {
      await tid('next-page').click();
      await t.waitUrl((u) => u.searchParams.get('skip') === '50', 'skip=50');
      const { body: p2 } = await t.getJson(t.api('/features?sort=max_activation&order=desc&skip=50&limit=50'));
      await page.waitForFunction((w) => document.querySelector('[data-testid="feature-link"]')?.textContent === w, String(p2.items[0].index));
      await page.goBack();
      await t.waitUrl((u) => !u.searchParams.has('skip'), 'no skip= after going back');
    }
    await tid('feature-link').first().waitFor();
    await page.screenshot({ path: join(t.shots, 'dictionary.png'), fullPage: true });
  });

  await t.step('a score column sorts the features by their explanation scores, both ways', async () => {
    await page.goto(base + t.dictPath());
    await tid('feature-link').first().waitFor();
    const { body: scored } = await t.getJson(t.api('/features?sort=detection&order=desc&skip=0&limit=50'));
    check(scored.total > 0, `no feature of ${state.dict} has a detection score (run lm-saes interpret on it)`);
    for (const order of ['desc', 'asc']) {
      await tid('sort-score-detection').click();
      await t.waitUrl((u) => u.searchParams.get('sort') === 'detection' && u.searchParams.get('order') === order, `sort=detection&order=${order}`);
      const { body: list } = await t.getJson(t.api(`/features?sort=detection&order=${order}&skip=0&limit=50`));
      const want = JSON.stringify(list.items.map((f) => String(f.index)));
      await page.waitForFunction((w) => JSON.stringify([...document.querySelectorAll('[data-testid="feature-link"]')].map((e) => e.textContent)) === w, want);
      const values = (await tid('score-detection').evaluateAll((els) => els.map((e) => e.getAttribute('data-value')))).map(Number);
      check(JSON.stringify(values) === JSON.stringify(list.items.map((f) => f.explanation.scores.detection)), `detection column shows ${values.slice(0, 5)}…, API ${list.items.slice(0, 5).map((f) => f.explanation.scores.detection)}…`);
      check(values.every((v, i) => i === 0 || (order === 'desc' ? values[i - 1] >= v : values[i - 1] <= v)), `detection column is not sorted ${order}: ${values}`);
      check((await tid('page-info').textContent()).includes(list.total.toLocaleString('en-US')), `page info lacks the ${list.total} scored features`);
    }
  });

  await t.step('token search lists features with their summary lines; the random-feature button', async () => {
    await searchResults(t);
    await tid('random').click();
    await t.waitUrl((u) => /^\/dictionaries\/[^/]+\/features\/\d+$/.test(u.pathname), 'a feature page after Random feature');
    await tid('feature-index').waitFor();
  });
}

/** Token search for the peak token of the strongest feature's best context: the results, each with its summary line. */
export async function searchResults(t) {
  const { page, base, tid } = t;
  const { body: f } = await t.getJson(t.api(`/features/${t.state.featureIndex}`));
  const ctx = f.top_contexts[0];
  const q = [ctx.tokens[ctx.peak - ctx.start], ...ctx.tokens].map((x) => x.trim()).find(Boolean) ?? 'the';
  const { status, body } = await t.getJson(t.api(`/search?q=${enc(q)}&limit=20`));
  check(status === 200 && body.items.length > 0, `GET search?q=${q} gave ${status} ${JSON.stringify(body)}`);
  await page.goto(base + t.dictPath());
  await tid('token-search-input').fill(q);
  await tid('token-search-input').press('Enter');
  await t.waitUrl((u) => u.searchParams.get('q') === q, `q=${q}`);
  await tid('token-search-results').waitFor();
  const shown = await tid('search-link').allTextContents();
  const want = body.items.map((it) => `#${it.index}`);
  check(JSON.stringify(shown) === JSON.stringify(want), `token search for ${JSON.stringify(q)} shows ${shown}, API ${want}`);
  await checkSummaryLines(tid('token-search-results'), body.items.map((it) => it.summary), 'token search results');
}

/** The first page of the feature list, each row with its summary line. */
export async function featureListLines(t) {
  await t.page.goto(t.base + t.dictPath());
  await t.tid('feature-link').first().waitFor();
  const { body: list } = await t.getJson(t.api('/features?skip=0&limit=50'));
  await checkSummaryLines(t.tid('features'), list.items.map((f) => f.summary), 'feature list');
}
