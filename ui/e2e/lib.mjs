// Helpers of the end-to-end test (run.mjs): one harness per browser page, the API fetch, and the
// UI's documented display rules restated independently, to check what the pages draw.

export const TIMEOUT = 15_000;
/** `lm-saes serve` loads the model on the first request that needs it: importing torch and
 * transformers and reading the weights takes seconds alone and well over TIMEOUT on a loaded machine. */
export const FIRST_LOAD_TIMEOUT = 180_000;
export const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
export const enc = encodeURIComponent;

export class Failure extends Error {}
export function check(cond, message) {
  if (!cond) throw new Failure(message);
}

/** The UI's number format (fmt in src/format.ts), to compare a shown value with the API's. */
export function fmt(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (Number.isInteger(v) && Math.abs(v) < 1e9) return v.toLocaleString('en-US');
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return v.toFixed(digits);
}

/** The documented shading (src/tokens.ts): 0 where not firing, else 0.25 + 0.75 * act / max, capped at 1. */
export const MIN_INTENSITY = 0.25;
export function intensity(act, max) {
  if (!(max > 0) || !(act > 0)) return 0;
  return MIN_INTENSITY + (1 - MIN_INTENSITY) * Math.min(act / max, 1);
}

/** Groups of token positions drawn as one: a run of "" (the leading bytes of a split character) and the token completing it. */
export function tokenGroups(tokens) {
  const groups = [];
  let pending = [];
  tokens.forEach((t, i) => {
    pending.push(i);
    if (t !== '') {
      groups.push(pending);
      pending = [];
    }
  });
  for (const i of pending) groups.push([i]);
  return groups;
}

/** Whether ``shown`` draws ``token`` visibly: a newline as ↵, a whitespace-only token with no
 * whitespace left (· for a space), a token of plain text as it is. */
export function drawsVisibly(token, shown) {
  if (token.includes('\n') && (!shown.includes('↵') || shown.includes('\n'))) return false;
  if (token.trim() === '') return shown.length > 0 && !/\s/.test(shown);
  if (!/[\t\n\r\u0000-\u001f\u007f-\u009f]/.test(token)) return shown === token;
  return shown.length > 0;
}

/** The alpha of a computed CSS colour (rgba(...) or rgb(...)). */
export function alphaOf(css) {
  const m = /rgba?\(([^)]*)\)/.exec(css);
  const parts = m ? m[1].split(',').map(Number) : [];
  return parts.length === 4 ? parts[3] : parts.length === 3 ? (css.startsWith('rgba') ? NaN : 1) : NaN;
}

/** The rows in the order the sweep table sorts them: missing values last, ties in record order. */
export function sortedRows(rows, value, desc) {
  return rows
    .map((r, i) => ({ r, i, v: value(r) }))
    .sort((a, b) => {
      if (a.v === undefined || b.v === undefined) return (a.v === undefined) - (b.v === undefined) || a.i - b.i;
      return (desc ? b.v - a.v : a.v - b.v) || a.i - b.i;
    })
    .map(({ r }) => r.name);
}

/** The harness of one browser page: steps, locators, URL waits, API calls, shared state. */
export function harness(page, base, shots, state = {}) {
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.setDefaultTimeout(TIMEOUT);
  const t = {
    page, base, shots, state, current: 'start',
    async step(name, fn) {
      t.current = state.step = name;
      state.failing = page;
      const t0 = Date.now();
      await fn();
      check(errors.length === 0, `uncaught error in the page: ${errors.join(' | ')}`);
      console.log(`ok   ${name} (${Date.now() - t0} ms)`);
    },
    tid: (id) => page.locator(`[data-testid="${id}"]`),
    exactly: (text) => new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`),
    /** Poll the page URL (client-side routing changes it without a page load). */
    async waitUrl(pred, what) {
      const t0 = Date.now();
      while (!pred(new URL(page.url()))) {
        if (Date.now() - t0 > TIMEOUT) throw new Failure(`URL stayed ${page.url()}; expected ${what}`);
        await page.waitForTimeout(25);
      }
    },
    async getJson(path, init) {
      const res = await fetch(base + path, init);
      const body = await res.json().catch(() => null);
      return { status: res.status, body };
    },
    /** Wait for ``result``, the answer of a model run (test on my text, steering, inference): the
     * first run of the session loads the model, so it alone gets FIRST_LOAD_TIMEOUT; an error
     * view fails at once instead of waiting out the time. */
    async modelResult(result) {
      const error = page.locator('[data-testid="error"], [data-testid="not-found"], [data-testid="db-unavailable"]');
      const t0 = Date.now();
      await result.or(error).first().waitFor({ timeout: state.modelLoaded ? TIMEOUT : FIRST_LOAD_TIMEOUT });
      check(!(await error.count()), `the model run failed: ${(await error.allTextContents()).join(' | ')}`);
      if (!state.modelLoaded) console.log(`     the first model run (loading the model) took ${Date.now() - t0} ms`);
      state.modelLoaded = true;
    },
    postJson: (path, body) => t.getJson(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) }),
    dictPath: (rest = '') => `/dictionaries/${enc(state.dict)}${rest}`,
    api: (rest = '') => `/api/dictionaries/${enc(state.dict)}${rest}`,
  };
  return t;
}

/** The summary lines inside ``scope`` (a locator) against the API's lines, in order: each is shown,
 * with the API's text and source (src/components/SummaryLine.tsx). */
export async function checkSummaryLines(scope, lines, where) {
  const shown = await scope.locator('[data-testid="summary-line"]').evaluateAll((els) =>
    els.map((e) => {
      const r = e.getBoundingClientRect();
      return { text: e.getAttribute('data-text'), source: e.getAttribute('data-source'), w: r.width, h: r.height, inner: e.textContent };
    }),
  );
  check(shown.length === lines.length, `${where}: ${shown.length} summary lines shown, the API has ${lines.length}`);
  check(lines.some((l) => l && l.text), `${where}: the API gives no summary line here, so none can be checked`);
  shown.forEach((s, i) => {
    const want = lines[i];
    check(s.source === (want?.source ?? 'none') && s.text === (want?.text ?? ''), `${where}, line ${i}: ${JSON.stringify([s.source, s.text])} != API ${JSON.stringify(want)}`);
    check(s.w > 0 && s.h > 0 && s.inner.trim().length > 0, `${where}, line ${i}: the summary line is not visible`);
  });
}

/** One token strip (src/components/TokenStrip.tsx) against the API's tokens and activations: after
 * expanding it, one element per token group, each with the group's positions, its largest
 * activation, the documented shading, its text drawn visibly, and the peak (if any) marked. */
export async function checkStrip(strip, { tokens, acts, max, peak = null, where }) {
  while ((await strip.locator('[data-testid="expand"]').count()) > 0) await strip.locator('[data-testid="expand"]').first().click();
  const got = await strip.locator('[data-testid="token"]').evaluateAll((els) =>
    els.map((e) => {
      const r = e.getBoundingClientRect();
      const style = getComputedStyle(e);
      return { first: Number(e.dataset.first), last: Number(e.dataset.last), act: Number(e.dataset.act), peak: e.dataset.peak === 'true',
        text: e.textContent, bg: style.backgroundColor, outline: style.outlineStyle, w: r.width, h: r.height };
    }),
  );
  const groups = tokenGroups(tokens);
  check(got.length === groups.length, `${where}: ${got.length} tokens drawn, the API's ${tokens.length} tokens make ${groups.length}`);
  got.forEach((g, i) => {
    const positions = groups[i];
    const last = positions[positions.length - 1];
    const act = Math.max(0, ...positions.map((p) => acts[p]));
    check(g.first === positions[0] && g.last === last, `${where}, token ${i}: covers ${g.first}-${g.last}, expected ${positions[0]}-${last}`);
    check(g.act === act, `${where}, token ${i} (${JSON.stringify(tokens[last])}): data-act ${g.act} != API ${act}`);
    check(drawsVisibly(tokens[last], g.text), `${where}, token ${i}: ${JSON.stringify(tokens[last])} is drawn as ${JSON.stringify(g.text)}`);
    check(g.w > 0 && g.h > 0, `${where}, token ${i} (${JSON.stringify(tokens[last])}) has no visible box`);
    const alpha = act > 0 ? alphaOf(g.bg) : 0;
    check(Math.abs(alpha - intensity(act, max)) < 0.01, `${where}, token ${i}: alpha ${alpha} (${g.bg}), expected ${intensity(act, max).toFixed(3)}`);
    const isPeak = peak !== null && positions.includes(peak);
    check(g.peak === isPeak && (!isPeak || g.outline === 'solid'), `${where}, token ${i}: peak mark ${g.peak}/${g.outline}, expected ${isPeak}`);
  });
  return got;
}

/** The position of the largest positive value (the first of ties), or null: the token a strip marks as its peak. */
export function argmax(values) {
  let best = null;
  values.forEach((v, i) => {
    if (v > 0 && (best === null || v > values[best])) best = i;
  });
  return best;
}
