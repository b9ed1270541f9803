// `/dictionaries/:name/features/:index`: the summary line on top, every token of every context drawn
// and shaded as the API says with the peak marked, a formatted popup per token (mouse, keyboard),
// newline peaks visible, bands, neighbours with summary lines, test on my text, j/k navigation.
import { join } from 'node:path';
import { MIN_INTENSITY, alphaOf, argmax, check, checkStrip, checkSummaryLines, fmt } from '../lib.mjs';

export default async function feature(t) {
  const { page, base, state, tid } = t;
  let f;

  await t.step('feature page: the summary line on top, every context token drawn and shaded as the API says, peaks marked', async () => {
    f = await openFeature(t, state.featureIndex);
    check(f.top_contexts.length > 0, `feature ${f.index} (highest max activation) has no top contexts`);
    check((await page.title()) === `feature ${f.index} · ${state.dict} — lm-saes`, `the feature page is titled ${JSON.stringify(await page.title())}`);
    await tid('color-legend').first().waitFor();
    const strips = tid('top-contexts').locator('[data-testid="context"]');
    check((await strips.count()) === f.top_contexts.length, `${await strips.count()} contexts shown, API has ${f.top_contexts.length}`);
    check(f.top_contexts.some((c) => c.tokens.length > 17) === (await tid('top-contexts').locator('[data-testid="expand"]').count()) > 0,
      'contexts longer than 17 tokens are not cut around their peak (or shorter ones are)');
    for (const [i, c] of f.top_contexts.entries()) {
      await checkStrip(strips.nth(i), { tokens: c.tokens, acts: c.acts, max: f.max_activation, peak: c.peak - c.start, where: `top context ${i}` });
    }
    await tid('activation-histogram').waitFor();
    check((await tid('activation-histogram').locator('rect').count()) === f.histogram.counts.length, 'activation histogram bar count differs from the API');
    check((await tid('logits-positive').locator('tr').count()) === f.logits.positive.length, 'positive logits count differs from the API');
    await checkNeighbors(t, f);
    const bands = [...f.quantiles].reverse();
    const open = await tid('band').evaluateAll((els) => els.map((e) => e.open));
    const first = bands.findIndex((q) => q.examples.length > 0);
    check(JSON.stringify(open) === JSON.stringify(bands.map((_, i) => i === first)), `bands open ${JSON.stringify(open)}: not the first non-empty one (${first}) alone`);
    await page.mouse.move(0, 0);
    await page.screenshot({ path: join(t.shots, 'feature.png'), fullPage: true });
  });

  await t.step('a token popup gives activation, rank and token id, by mouse and by keyboard', async () => {
    const c = f.top_contexts[0];
    const strip = tid('top-contexts').locator('[data-testid="context"]').first();
    const peakToken = strip.locator('[data-peak="true"]');
    await peakToken.hover();
    await checkPopup(t, strip, { act: c.max, rank: 1, id: c.token_ids?.[c.peak - c.start], max: f.max_activation });
    await page.mouse.move(0, 0);
    await strip.locator('[data-testid="token-popup"]').waitFor({ state: 'detached' });
    await peakToken.focus();
    await checkPopup(t, strip, { act: c.max, rank: 1, id: c.token_ids?.[c.peak - c.start], max: f.max_activation });
    const url = page.url();
    const next = c.peak - c.start + 1 < c.tokens.length ? 1 : -1; // ← and → move between tokens, not features
    await page.keyboard.press(next > 0 ? 'ArrowRight' : 'ArrowLeft');
    const p = c.peak - c.start + next;
    await checkPopup(t, strip, { act: c.acts[p], id: c.token_ids?.[p], max: f.max_activation });
    check(page.url() === url, `an arrow key on a token changed the page to ${page.url()}`);
    await page.keyboard.press('Escape');
  });

  await t.step('a newline peak is drawn as ↵, shaded, and marked', () => newlinePeak(t));

  await t.step('test on my text highlights this feature on every token', () => tryText(t, f));

  await t.step('feature page survives a reload (SPA fallback)', async () => {
    await page.goto(base + t.dictPath(`/features/${f.index}`));
    await page.reload();
    await tid('feature-index').filter({ hasText: String(f.index) }).waitFor();
  });

  await t.step('arrow keys move to the next/previous feature', async () => {
    const [key, target] = f.next !== null ? ['ArrowRight', f.next] : ['ArrowLeft', f.prev];
    check(target !== null, `feature ${f.index} has neither next nor prev`);
    await page.locator('body').click({ position: { x: 5, y: 5 } });
    await page.keyboard.press(key);
    await t.waitUrl((u) => u.pathname === t.dictPath(`/features/${target}`), `path ${t.dictPath(`/features/${target}`)} after ${key}`);
    await tid('feature-index').filter({ hasText: String(target) }).waitFor();
    await page.keyboard.press(key === 'ArrowRight' ? 'k' : 'j');
    await t.waitUrl((u) => u.pathname === t.dictPath(`/features/${f.index}`), `path ${t.dictPath(`/features/${f.index}`)}`);
  });

  await t.step('feature page shows the explanation, who wrote it, its scores and the records', async () => {
    const { body: best } = await t.getJson(t.api('/features?sort=simulation&order=desc&skip=0&limit=1'));
    const e = await openFeature(t, best.items[0].index);
    await tid('explanation-text').waitFor();
    check((await tid('explanation-text').textContent()) === e.explanation.text, `explanation shows ${JSON.stringify(await tid('explanation-text').textContent())}, API ${JSON.stringify(e.explanation.text)}`);
    const label = e.explanation.kind === 'lexical' ? 'lexical baseline' : e.explanation.explainer;
    check((await tid('explanation').locator('[data-testid="explainer"]').first().textContent()) === label, `the explainer is not labelled ${JSON.stringify(label)}`);
    for (const s of ['simulation', 'detection', 'fuzzing']) {
      const cell = tid('explanation').locator(`[data-testid="score-${s}"]`);
      const [text, value] = [await cell.textContent(), await cell.getAttribute('data-value')];
      const api = e.explanation.scores[s];
      check(text === fmt(api, 2) && (api === null || api === undefined ? value === '' : Number(value) === api), `${s} score shows ${text} (${value}), API ${api}`);
    }
    const { body: records } = await t.getJson(t.api(`/features/${e.index}/explanations`));
    await tid('explanation-records').locator('summary').first().click();
    check((await tid('explanation-record').count()) === records.length, `${await tid('explanation-record').count()} explanation records shown, API has ${records.length}`);
    check(records.some((r) => r.explanation === e.explanation.text), 'no record holds the shown explanation');
  });
}

/** Open a feature's page; returns the API's document once the page shows it with its summary line. */
export async function openFeature(t, index) {
  const { status, body } = await t.getJson(t.api(`/features/${index}`));
  check(status === 200, `GET feature ${index} gave ${status}`);
  await t.page.goto(t.base + t.dictPath(`/features/${index}`));
  await t.tid('feature-index').filter({ hasText: String(index) }).waitFor();
  await checkSummaryLines(t.page.locator('.feature-summary'), [body.summary], `feature ${index}'s summary`);
  const [line, contexts] = await Promise.all(['.feature-summary', '[data-testid="top-contexts"]'].map((s) => t.page.locator(s).first().evaluate((e) => e.getBoundingClientRect().top)));
  check(line < contexts, `feature ${index}'s summary line (at ${line} px) is not above its top contexts (at ${contexts} px)`);
  return body;
}

export async function checkNeighbors(t, f) {
  const links = await t.tid('neighbor-link').allTextContents();
  check(JSON.stringify(links) === JSON.stringify(f.neighbors.map((n) => `#${n.index}`)), `neighbours ${links}, API ${f.neighbors.map((n) => n.index)}`);
  await checkSummaryLines(t.tid('neighbors'), f.neighbors.map((n) => n.summary), 'nearest features');
}

/** The open popup of ``strip`` says the activation (formatted, with its share of max), the rank and the token id. */
async function checkPopup(t, strip, { act, rank, id, max }) {
  const popup = strip.locator('[data-testid="token-popup"]');
  await popup.waitFor();
  const text = await popup.locator('[data-testid="popup-act"]').textContent();
  const want = act > 0 ? `${fmt(act)} · ${Math.round((100 * act) / max)}% of max` : '0 (not firing)';
  check(text === want, `popup activation ${JSON.stringify(text)}, expected ${JSON.stringify(want)}`);
  if (rank !== undefined) check((await popup.locator('[data-testid="popup-rank"]').textContent()).startsWith(`${rank} of `), 'the peak is not ranked first');
  if (id !== undefined) check((await popup.locator('[data-testid="popup-id"]').textContent()).startsWith(String(id)), `popup lacks token id ${id}`);
  const [box, inside] = await popup.evaluate((e) => [e.getBoundingClientRect().right, document.documentElement.clientWidth]);
  check(box <= inside + 1, `the popup sticks out of the page (${box} > ${inside})`);
}

/** A feature whose best context peaks on a newline: its peak is ↵, visible, shaded at least MIN_INTENSITY, outlined. */
export async function newlinePeak(t) {
  const { page, tid } = t;
  const { body: list } = await t.getJson(t.api('/features?sort=max_activation&order=desc&limit=500&min_density=1e-300'));
  let found = null;
  for (const item of list.items) {
    const { body } = await t.getJson(t.api(`/features/${item.index}`));
    const c = body.top_contexts[0];
    if (c && c.tokens[c.peak - c.start].includes('\n')) {
      found = body;
      break;
    }
  }
  check(found, `no feature of ${t.state.dict} peaks on a newline in its best context`);
  t.state.newlineFeature = found.index;
  await openFeature(t, found.index);
  const c = found.top_contexts[0];
  const strip = tid('top-contexts').locator('[data-testid="context"]').first();
  await checkStrip(strip, { tokens: c.tokens, acts: c.acts, max: found.max_activation, peak: c.peak - c.start, where: `feature ${found.index}'s best context` });
  const peak = await strip.locator('[data-peak="true"]').evaluate((e) => {
    const r = e.getBoundingClientRect();
    const s = getComputedStyle(e);
    return { text: e.textContent, w: r.width, h: r.height, bg: s.backgroundColor, outline: s.outlineStyle, outlineWidth: parseFloat(s.outlineWidth), inView: r.bottom > 0 };
  });
  check(peak.text.includes('↵') && peak.w >= 4 && peak.h >= 8, `the newline peak is drawn as ${JSON.stringify(peak.text)}, ${peak.w}x${peak.h} px`);
  check(alphaOf(peak.bg) >= MIN_INTENSITY && peak.outline === 'solid' && peak.outlineWidth >= 2, `the newline peak is not marked: ${JSON.stringify(peak)}`);
  await page.mouse.move(0, 0);
}

/** Test on my text: one run, this feature's activation on every token, shaded like the contexts. */
export async function tryText(t, f) {
  const { page, tid } = t;
  await openFeature(t, f.index);
  const c = f.top_contexts[0];
  const text = c.tokens.slice(1).join('') || 'To be, or not to be';
  await tid('try-text').fill(text);
  await tid('try-run').click();
  await t.modelResult(tid('try-result'));
  const { status, body } = await t.postJson(t.api('/infer'), { text, top: 1, feature: f.index });
  check(status === 200 && body.feature_acts.length === body.tokens.length, `POST infer with feature gave ${status}`);
  await checkStrip(tid('try-result'), { tokens: body.tokens, acts: body.feature_acts, max: f.max_activation, peak: argmax(body.feature_acts), where: 'test on my text' });
  check(body.feature_acts.some((a) => a > 0), `feature ${f.index} does not fire on its own best context's text ${JSON.stringify(text)}`);
  await tid('try').screenshot({ path: join(t.shots, t.page.viewportSize().width < 600 ? 'test-text-mobile.png' : 'test-text.png') });
}
