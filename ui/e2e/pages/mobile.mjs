// 390x844 with touch: no text sticks out of the page and no value breaks inside itself (checked by
// the geometry of every text node), the top contexts start above the fold, a tap opens a token's
// popup, and the checks of the newline peak, test on my text, steering and the five summary lines
// hold on a phone too.
import { check, harness } from '../lib.mjs';
import { featureListLines, searchResults } from './dictionary.mjs';
import { checkNeighbors, newlinePeak, openFeature, tryText } from './feature.mjs';
import { inference } from './infer.mjs';
import { steering } from './steer.mjs';

const VALUES = '.num, dd, .summary-chip, .nowrap, .ticks span, [data-testid="page-info"], [data-testid="popup-act"], .status';

/** Every visible text node's boxes lie inside the viewport, or inside a horizontal scroller that
 * does; text of a value (VALUES) sits on one line. Returns the problems found. */
function geometry(values) {
  const vw = document.documentElement.clientWidth;
  const problems = [];
  if (document.documentElement.scrollWidth > vw + 1) problems.push(`the page scrolls sideways (${document.documentElement.scrollWidth} > ${vw})`);
  const scroller = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      if (['auto', 'scroll'].includes(getComputedStyle(p).overflowX)) return p;
    }
    return null;
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || !el || el.closest('svg, details:not([open]) > :not(summary)')) continue;
    const range = document.createRange();
    range.selectNodeContents(n);
    const rects = [...range.getClientRects()].filter((r) => r.width > 0 && r.height > 0);
    if (rects.length === 0) continue;
    const what = JSON.stringify(n.textContent.trim().slice(0, 40));
    const box = scroller(el);
    const edge = box ? box.getBoundingClientRect() : null;
    if (edge && (edge.right > vw + 1 || edge.left < -1)) problems.push(`the scroller of ${what} sticks out (${edge.left}-${edge.right})`);
    if (!box) for (const r of rects) if (r.right > vw + 1 || r.left < -1) problems.push(`${what} sticks out (${Math.round(r.left)}-${Math.round(r.right)} of ${vw})`);
    if (el.closest(values) && new Set(rects.map((r) => Math.round(r.top / 4))).size > 1) problems.push(`${what} breaks over ${rects.length} lines`);
  }
  return [...new Set(problems)];
}

export async function fits(m, where) {
  await m.page.waitForLoadState('networkidle');
  const problems = await m.page.evaluate(geometry, VALUES);
  check(problems.length === 0, `at 390 px, ${where}: ${problems.slice(0, 5).join('; ')}`);
}

export default async function mobile(t) {
  const context = await t.state.browser.newContext({ viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true });
  const m = harness(await context.newPage(), t.base, t.shots, t.state);
  const { page, tid } = m;

  await m.step('390 px: the summary line in all five places; nothing overflows, no value breaks', async () => {
    await page.goto(m.base + '/');
    await tid('dictionary-link').first().waitFor();
    await fits(m, 'home');
    await featureListLines(m);
    await tid('metrics-details').locator('summary').click();
    await fits(m, 'the dictionary page, metrics open');
    await searchResults(m);
    await fits(m, 'the dictionary page with token search results');
    const f = await openFeature(m, t.state.featureIndex);
    await checkNeighbors(m, f);
    await fits(m, `feature ${f.index}`);
    await inference(m);
    await fits(m, 'live inference');
    if (t.state.sweep) {
      await page.goto(`${m.base}/sweeps/${encodeURIComponent(t.state.sweep)}`);
      await tid('sweep-table').waitFor();
      await fits(m, 'the sweep page');
    }
  });

  await m.step('390 px: the top contexts start above the fold; a tap opens a token popup, a tap elsewhere closes it', async () => {
    await openFeature(m, t.state.featureIndex);
    const first = tid('top-contexts').locator('[data-testid="context"]').first();
    const top = await first.evaluate((e) => e.getBoundingClientRect().top);
    check(top < 844 - 40, `the first top context starts at ${top} px, below the fold of an 844 px screen`);
    await page.screenshot({ path: `${m.shots}/feature-mobile.png` });
    await first.locator('[data-peak="true"]').tap();
    await first.locator('[data-testid="token-popup"]').waitFor();
    await fits(m, 'a feature page with a token popup open');
    await page.locator('h1').tap();
    await first.locator('[data-testid="token-popup"]').waitFor({ state: 'detached' });
  });

  await m.step('390 px: a newline peak is visible and marked', async () => {
    await newlinePeak(m);
    await fits(m, 'the newline feature');
  });

  await m.step('390 px: test on my text, steering', async () => {
    const { body: f } = await m.getJson(m.api(`/features/${t.state.featureIndex}`));
    await tryText(m, f);
    await fits(m, 'test on my text');
    await steering(m, f.index);
    await fits(m, 'steering');
  });
  await context.close();
}
