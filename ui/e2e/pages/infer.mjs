// `/dictionaries/:name/infer`: the text shaded by one feature (the strongest, then a picked one),
// a token's top features with their summary lines.
import { join } from 'node:path';
import { argmax, check, checkStrip, checkSummaryLines } from '../lib.mjs';

export async function inference(t) {
  const { page, base, tid } = t;
  const text = 'The cat sat on the mat.\nTo be, or not to be';
  await page.goto(base + t.dictPath('/infer'));
  await tid('infer-text').fill(text);
  await tid('infer-run').click();
  await t.modelResult(tid('infer-shaded-by'));
  check((await page.title()) === `live inference · ${t.state.dict} — lm-saes`, `the inference page is titled ${JSON.stringify(await page.title())}`);
  const { body: top } = await t.postJson(t.api('/infer'), { text, top: 5 });
  const strongest = top.features.flat().reduce((a, b) => (b.act > a.act ? b : a));
  await t.waitUrl((u) => u.searchParams.get('feature') === String(strongest.index), `feature=${strongest.index} (the strongest on the text)`);
  const { body } = await t.postJson(t.api('/infer'), { text, top: 5, feature: strongest.index });
  const max = Math.max(0, ...body.feature_acts);
  await checkStrip(tid('infer-tokens'), { tokens: body.tokens, acts: body.feature_acts, max, peak: argmax(body.feature_acts), where: 'inference' });
  const lines = new Map(body.summaries.map((l) => [l.index, l]));
  await checkSummaryLines(tid('infer-shaded-by'), [lines.get(strongest.index) ?? null], 'the feature shading the text');

  const k = body.tokens.length - 1; // pick the last token: its top features, each with its summary line
  await tid('infer-tokens').locator(`[data-last="${k}"]`).click();
  await tid('infer-features').getByText(`of token ${k + 1}`).waitFor();
  await page.keyboard.press('Escape'); // the picked token's popup, pinned by the click, closes
  await page.mouse.move(0, 0);
  await tid('infer-tokens').locator('[data-testid="token-popup"]').waitFor({ state: 'detached' });
  const links = await tid('infer-feature-link').evaluateAll((els) => els.map((e) => e.getAttribute('href')));
  const wantLinks = body.features[k].map((f) => t.dictPath(`/features/${f.index}`));
  check(JSON.stringify(links) === JSON.stringify(wantLinks), `token ${k} feature links ${JSON.stringify(links)} != API ${JSON.stringify(wantLinks)}`);
  await checkSummaryLines(tid('infer-features'), body.features[k].map((f) => lines.get(f.index) ?? null), 'inference results');
  await page.screenshot({ path: join(t.shots, t.page.viewportSize().width < 600 ? 'infer-mobile.png' : 'infer.png'), fullPage: true });

  const other = body.features[k].find((f) => f.index !== strongest.index);
  if (other) { // shade by another feature: the strip follows
    await tid('shade-feature').nth(body.features[k].indexOf(other)).click();
    await t.waitUrl((u) => u.searchParams.get('feature') === String(other.index), `feature=${other.index}`);
    await tid('infer-shaded-by').and(t.page.locator(`[data-feature="${other.index}"]`)).waitFor();
    const { body: again } = await t.postJson(t.api('/infer'), { text, top: 5, feature: other.index });
    const m = Math.max(0, ...again.feature_acts);
    await checkStrip(tid('infer-tokens'), { tokens: again.tokens, acts: again.feature_acts, max: m, peak: argmax(again.feature_acts), where: `inference shaded by #${other.index}` });
  }
}

export default async function infer(t) {
  await t.step('live inference shades the text by the selected feature and lists features with summary lines', () => inference(t));
}
