// `/sweeps/:name`: every row with the API's values, one plot point per finished row, sorting by a
// clicked header in the URL; an analyzed member links to its dictionary.
import { join } from 'node:path';
import { check, enc, fmt, sortedRows } from '../lib.mjs';

export default async function sweepPage(t) {
  const { page, base, state, tid } = t;
  if (!state.sweep) return;
  let sweep;
  await t.step('sweep page shows every row with the API values', async () => {
    const { status, body } = await t.getJson(`/api/sweeps/${enc(state.sweep)}`);
    check(status === 200, `GET /api/sweeps/${state.sweep} gave ${status} ${JSON.stringify(body)}`);
    sweep = body;
    await page.goto(base + '/');
    await tid('sweep-link').filter({ hasText: t.exactly(state.sweep) }).first().click();
    await t.waitUrl((u) => u.pathname === `/sweeps/${enc(state.sweep)}`, `path /sweeps/${enc(state.sweep)}`);
    await tid('sweep-table').waitFor();
    check((await page.title()) === `sweep ${state.sweep} — lm-saes`, `the sweep page is titled ${JSON.stringify(await page.title())}`);
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
      const link = r.analyzed ? `/${r.decomposition ? 'decompositions' : 'dictionaries'}/${enc(r.dictionary)}` : null;
      check(g.href === link, `${r.name}: links to ${g.href}, expected ${link} (analyzed=${r.analyzed})`);
      const hint = !r.analyzed && r.kind === 'member' && r.status === 'finished' && Boolean(r.dictionary_dir);
      check(g.hint === hint, `${r.name}: analyze hint shown=${g.hint}, expected ${hint}`);
    });
    const failed = sweep.rows.filter((r) => r.status === 'failed' && r.error);
    check((await tid('row-error').count()) === failed.length, `${await tid('row-error').count()} errors shown, ${failed.length} failed rows with an error`);
  });

  await t.step('sweep plots one point per finished row; a click on one selects its row', async () => {
    let member;
    for (const metric of Object.keys(sweep.frontiers)) {
      const want = sweep.rows.filter((r) => r.status === 'finished' && typeof r.metrics.l0 === 'number' && typeof r.metrics[metric] === 'number');
      const plot = page.locator(`[data-testid="sweep-plot"][data-metric="${metric}"]`);
      const axis = sweep.x === 'ci_l0' ? 'CI-L0' : 'L0'; // an SPD sweep's record plots against CI-L0
      check((await plot.locator('figcaption').textContent()).startsWith(`${axis} against`), `the ${metric} plot's axis is not ${axis} (record x ${sweep.x})`);
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
      await t.waitUrl((u) => u.pathname === `/dictionaries/${enc(analyzed.dictionary)}`, `path /dictionaries/${enc(analyzed.dictionary)}`);
      await tid('dictionary-name').filter({ hasText: t.exactly(analyzed.dictionary) }).waitFor();
      await page.goBack();
      await tid('sweep-table').waitFor();
    }
  });

  await t.step('sweep table sorts by a clicked header, via the URL', async () => {
    const metric = Object.keys(sweep.frontiers)[0] ?? sweep.metrics[0];
    for (const order of ['asc', 'desc']) {
      await tid(`sort-metrics.${metric}`).click();
      await t.waitUrl((u) => u.searchParams.get('sort') === `metrics.${metric}` && u.searchParams.get('order') === order, `sort=metrics.${metric}&order=${order}`);
      const want = sortedRows(sweep.rows, (r) => r.metrics[metric], order === 'desc');
      const names = await tid('row-name').allTextContents();
      check(JSON.stringify(names) === JSON.stringify(want), `sorted by ${metric} ${order}: ${JSON.stringify(names)}, expected ${JSON.stringify(want)}`);
    }
    await page.mouse.move(0, 0);
    await page.screenshot({ path: join(t.shots, 'sweep.png'), fullPage: true });
  });
}
