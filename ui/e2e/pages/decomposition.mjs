// `/decompositions/:name` and `/decompositions/:name/components/:index` (LM_SAES_DECOMPOSITION, a
// TMS 5-2 decomposition): the matrices with the API's live counts and CI-L0, each matrix's live
// subcomponents densest first, the plane plot (the target's five directions, each live
// subcomponent's arrow on one of them), a component's top inputs shaded by causal importance with
// their inner activation, its co-activations, a 404 with the valid range, and all of it at 390 px;
// live inference on LM_SAES_LM_DECOMPOSITION (a language model's decomposition), if given.
import { join } from 'node:path';
import { check, checkStrip, enc, fmt, harness } from '../lib.mjs';
import { fits } from './mobile.mjs';

const cosine = (a, b) => (a[0] * b[0] + a[1] * b[1]) / (Math.hypot(a[0], a[1]) * Math.hypot(b[0], b[1]));

async function decompositionPage(t, spd) {
  const { page, tid } = t;
  await page.goto(t.base + '/');
  await tid('decomposition-link').filter({ hasText: t.exactly(spd.name) }).click();
  await t.waitUrl((u) => u.pathname === `/decompositions/${enc(spd.name)}`, `path /decompositions/${enc(spd.name)}`);
  await tid('modules').waitFor();
}

export default async function decomposition(t) {
  const { page, tid, state } = t;
  if (!state.spd) return;
  let spd, component;
  await t.step('decomposition page: matrices with live counts and CI-L0, live subcomponents densest first', async () => {
    const { status, body } = await t.getJson(`/api/decompositions/${enc(state.spd)}`);
    check(status === 200, `GET /api/decompositions/${state.spd} gave ${status} ${JSON.stringify(body)}`);
    spd = body;
    await decompositionPage(t, spd);
    check((await page.title()) === `${spd.name} · decomposition — lm-saes`, `the page is titled ${JSON.stringify(await page.title())}`);
    const rows = await tid('module-row').evaluateAll((trs) => trs.map((tr) => ({
      module: tr.dataset.module, live: tr.querySelector('[data-testid="module-live"]').textContent,
      ci: tr.querySelector('[data-testid="module-ci-l0"]').textContent })));
    check(rows.length === spd.modules.length, `${rows.length} matrices shown, the API has ${spd.modules.length}`);
    spd.modules.forEach((m, i) => {
      check(rows[i].module === m.name && rows[i].live === fmt(m.live), `row ${i}: ${JSON.stringify(rows[i])}, API ${m.name} live ${m.live}`);
      check(typeof m.metrics.ci_l0 === 'number' && rows[i].ci === fmt(m.metrics.ci_l0, 3), `${m.name}: CI-L0 shows ${rows[i].ci}, API ${m.metrics.ci_l0}`);
    });
    for (const m of spd.modules) {
      const shown = await page.locator(`[data-testid="module-components"][data-module="${m.name}"] [data-testid="component-row"]`)
        .evaluateAll((trs) => trs.map((tr) => Number(tr.dataset.index)));
      const live = m.components.filter((c) => c.n_fired > 0).map((c) => c.index);
      check(JSON.stringify(shown) === JSON.stringify(live), `${m.name}: rows ${JSON.stringify(shown)}, the API's live components densest first ${JSON.stringify(live)}`);
      check(live.length === m.live, `${m.name}: ${live.length} components fired, the record says ${m.live} live`);
    }
  });

  await t.step('TMS plot: the target\'s feature directions, each live subcomponent on one of them', async () => {
    const planes = spd.modules.filter((m) => m.plane);
    check(planes.length === spd.modules.length, `TMS 5-2: every matrix has a 2-d side, the API gives ${planes.length} planes`);
    for (const m of planes) {
      const plot = page.locator(`[data-testid="plane-plot"][data-module="${m.name}"]`);
      check((await plot.locator('[data-testid="plane-target"]').count()) === m.plane.target.length, `${m.name}: not every target direction is drawn`);
      const arrows = await plot.locator('[data-testid="plane-component"]').evaluateAll((gs) =>
        gs.map((g) => ({ c: Number(g.dataset.component), f: Number(g.dataset.feature), v: [Number(g.dataset.x), Number(g.dataset.y)],
          box: g.getBoundingClientRect().width + g.getBoundingClientRect().height })));
      const live = m.components.filter((c) => c.n_fired > 0).map((c) => c.component).sort((a, b) => a - b);
      check(JSON.stringify(arrows.map((a) => a.c).sort((a, b) => a - b)) === JSON.stringify(live), `${m.name}: arrows for ${JSON.stringify(arrows.map((a) => a.c))}, live ${JSON.stringify(live)}`);
      for (const a of arrows) {
        check(a.box > 0 && a.f === m.plane.feature[a.c] && a.v[0] === m.plane.components[a.c][0], `${m.name} c${a.c}: the arrow differs from the API's plane`);
        // the recovered decomposition: each live subcomponent lies on its feature's direction
        const cos = cosine(a.v, m.plane.target[a.f]);
        check(cos > 0.99, `${m.name} c${a.c}: cosine ${cos.toFixed(4)} with f${a.f}'s direction`);
      }
      check(new Set(arrows.map((a) => a.f)).size === m.plane.target.length, `${m.name}: the live subcomponents read features ${JSON.stringify(arrows.map((a) => a.f))}, not one each`);
    }
    await page.mouse.move(0, 0);
    await page.screenshot({ path: join(t.shots, 'decomposition.png'), fullPage: true });
  });

  await t.step('component page: top inputs shaded by causal importance with their inner activation; co-activations', async () => {
    const first = spd.modules[0].components[0];
    await page.locator(`[data-testid="component-row"][data-index="${first.index}"] [data-testid="component-link"]`).click();
    await t.waitUrl((u) => u.pathname === `/decompositions/${enc(spd.name)}/components/${first.index}`, `component ${first.index}`);
    const { body } = await t.getJson(`/api/decompositions/${enc(spd.name)}/components/${first.index}`);
    component = body;
    await tid('component-stats').waitFor();
    check((await tid('component-module').textContent()) === body.module && (await tid('component-index').textContent()) === String(body.component),
      'the header does not name the matrix and the component');
    const examples = tid('top-contexts').locator('[data-testid="component-example"]');
    check((await examples.count()) === body.top_contexts.length && body.top_contexts.length > 0, `${await examples.count()} top inputs shown, API ${body.top_contexts.length}`);
    for (const [i, e] of body.top_contexts.entries()) {
      const ex = examples.nth(i);
      await checkStrip(ex.locator('[data-testid="context"]'), { tokens: e.tokens, acts: e.acts, max: body.max_activation, peak: e.peak - e.start, where: `top input ${i}` });
      check(Number(await ex.getAttribute('data-inner')) === e.inner[e.peak - e.start], `top input ${i}: inner ${await ex.getAttribute('data-inner')}, API ${e.inner[e.peak - e.start]}`);
      check(e.tokens[0].startsWith(`f${e.input.features[0]}=`), `top input ${i}: ${JSON.stringify(e.tokens)} does not show its input ${JSON.stringify(e.input)}`);
    }
    const co = await tid('coactivation').evaluateAll((trs) => trs.map((tr) => [Number(tr.dataset.index), Number(tr.dataset.count)]));
    check(body.coactivations.length > 0 && JSON.stringify(co) === JSON.stringify(body.coactivations.map((c) => [c.index, c.count])),
      `co-activations ${JSON.stringify(co)}, API ${JSON.stringify(body.coactivations)}`);
    check((await tid('activation-histogram').count()) === 1, 'no causal importance histogram');
    await page.mouse.move(0, 0);
    await page.screenshot({ path: join(t.shots, 'component.png'), fullPage: true });
    const other = body.coactivations[0];
    await tid('coactivation-link').first().click();
    await t.waitUrl((u) => u.pathname.endsWith(`/components/${other.index}`), `component ${other.index}`);
    await tid('component-index').filter({ hasText: t.exactly(String(other.component)) }).waitFor();
  });

  await t.step('an unknown component is a 404 page giving the valid range', async () => {
    const response = await page.goto(`${t.base}/decompositions/${enc(spd.name)}/components/${spd.d_sae}`);
    check(response.status() === 404, `component ${spd.d_sae} answered HTTP ${response.status()}`);
    await tid('error').or(tid('not-found')).first().waitFor();
    const text = await tid('error').or(tid('not-found')).first().textContent();
    check(text.includes(`0-${spd.d_sae - 1}`), `the error view does not give the valid range: ${JSON.stringify(text)}`);
  });

  if (state.lmSpd) {
    await t.step('live inference: each token shaded by its important subcomponents, a picked token lists them', async () => {
      const text = 'the king and the queen';
      await page.goto(`${t.base}/decompositions/${enc(state.lmSpd)}`);
      await tid('spd-infer-text').fill(text);
      const module = await tid('spd-infer-module').inputValue();
      await tid('spd-infer-run').click();
      await t.modelResult(tid('spd-infer-tokens'));
      const { body } = await t.postJson(`/api/decompositions/${enc(state.lmSpd)}/infer`, { text, module, top: 20 });
      check(body.l0.some((n) => n > 0), `no subcomponent of ${module} is important on ${JSON.stringify(text)}: nothing to check`);
      const max = Math.max(...body.l0);
      const peak = body.l0.indexOf(max);
      await checkStrip(tid('spd-infer-tokens'), { tokens: body.tokens, acts: body.l0, max, peak, where: 'live inference' });
      const listed = await tid('spd-infer-component').evaluateAll((lis) => lis.map((li) => [Number(li.dataset.index), Number(li.dataset.ci)]));
      check(JSON.stringify(listed) === JSON.stringify(body.components[peak].map((c) => [c.index, c.ci])),
        `token ${peak} lists ${JSON.stringify(listed)}, API ${JSON.stringify(body.components[peak])}`);
      await page.mouse.move(0, 0);
      await page.screenshot({ path: join(t.shots, 'decomposition-infer.png'), fullPage: true });
    });
  }

  const context = await state.browser.newContext({ viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true });
  const m = harness(await context.newPage(), t.base, t.shots, state);
  await m.step('390 px: the decomposition page, its plot and a component page fit the screen', async () => {
    await decompositionPage(m, spd);
    await m.tid('plane-plot').first().waitFor();
    const width = await m.tid('plane-plot').first().evaluate((e) => e.getBoundingClientRect().width);
    check(width > 200 && width <= 390, `the plot is ${width} px wide on a 390 px screen`);
    await fits(m, 'the decomposition page');
    await m.page.screenshot({ path: join(m.shots, 'decomposition-mobile.png') });
    await m.page.goto(`${m.base}/decompositions/${enc(spd.name)}/components/${component.index}`);
    await m.tid('component-example').first().waitFor();
    await fits(m, `component ${component.index}`);
    await m.page.screenshot({ path: join(m.shots, 'component-mobile.png') });
  });
  await context.close();
}
