// A development stand-in for `lm-saes serve`: serves the built UI (SPA fallback) and canned,
// deterministic JSON that follows the API contract. Not used by the final browser test.
//   node e2e/mock-server.mjs [port]      (port 0 picks a free one; prints the URL)
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const STATIC_DIR = resolve(here, '../../lm_saes/server/static');
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json' };

// ---- canned data ---------------------------------------------------------------------------
const WORDS = ['The', ' cat', ' sat', ' on', ' the', ' mat', '.', ' A', ' dog', ' ran', ' far', ' away', '\n', ' and', ' then', ' slept'];
const D_SAE = 120;
const DICTS = [
  { name: 'gpt2-L6-topk', kind: 'topk', d_sae: D_SAE, d_in: 16, analyses: ['default'], metrics: { final_batch: { l0: 8, mse: 0.02 }, eval: { explained_variance: 0.812, l0: 7.9, mse: 0.021, ce_loss_recovered: 0.93, kl_spliced: 0.11, dead_fraction: 0.1 } }, source: { model: 'gpt2', hook: 'blocks.6.hook_resid_post' } },
  { name: 'tiny/jumprelu', kind: 'jumprelu', d_sae: 8, d_in: 4, analyses: [], metrics: {}, source: {} },
];
const rand = (seed) => { const x = Math.sin(seed * 9301 + 49297) * 233280; return x - Math.floor(x); };
const dead = (i) => i % 10 === 9;
const density = (i) => (dead(i) ? 0 : Math.round(10 ** (-4 + 3 * rand(i)) * 1e6) / 1e6);
const maxAct = (i) => (dead(i) ? 0 : Math.round((1 + 9 * rand(i + 100)) * 1000) / 1000);
const SCORES = ['simulation', 'detection', 'fuzzing'];
const explanation = (i) => (dead(i) ? null : { text: `"${WORDS[i % WORDS.length].trim() || 'nl'}" 0.500, "the" 0.200`, explainer: 'lexical', kind: 'lexical', status: 'scored', scores: { simulation: Math.round(rand(i + 7) * 1000) / 1000, detection: Math.round((0.5 + rand(i + 8) / 2) * 1000) / 1000, fuzzing: Math.round((0.5 + rand(i + 9) / 2) * 1000) / 1000 } });
const summary = (i) => (i % 3 === 0 ? { source: 'interpretation', text: `mentions of animal ${i}`, tokens: [] } : explanation(i) ? { source: 'explanation', text: explanation(i).text, tokens: [] } : null);
const row = (i) => ({ index: i, density: density(i), max_activation: maxAct(i), mean_activation: Math.round(maxAct(i) * 300) / 1000, n_fired: Math.round(density(i) * 1e5), interpretation: i % 3 === 0 ? `mentions of animal ${i}` : null, explanation: explanation(i), summary: summary(i) });
const context = (i, c, scale) => {
  const tokens = Array.from({ length: 12 }, (_, t) => WORDS[(i + c * 3 + t) % WORDS.length]);
  const acts = tokens.map((_, t) => (rand(i * 31 + c * 7 + t) > 0.6 ? Math.round(maxAct(i) * scale * rand(t + c + i) * 1e4) / 1e4 : 0));
  acts[5] = Math.round(maxAct(i) * scale * 1e4) / 1e4;
  return { context_id: i * 100 + c, peak: c * 4 + 5, max: acts[5], start: c * 4, tokens, token_ids: tokens.map((t) => 100 + WORDS.indexOf(t)), acts };
};
function featureDetail(i) {
  const d = dead(i);
  return {
    ...row(i), n_contexts: d ? 0 : 30 + i, decoder_norm: 1,
    top_contexts: d ? [] : [0, 1, 2].map((c) => context(i, c, 1 - c * 0.1)),
    quantiles: d ? [] : [{ band: '0.5-1.0', low: maxAct(i) / 2, high: maxAct(i), n_contexts: 5, examples: [context(i, 5, 0.6)] }, { band: '0-0.5', low: 0, high: maxAct(i) / 2, n_contexts: 20, examples: [context(i, 6, 0.3)] }],
    histogram: { edges: Array.from({ length: 11 }, (_, k) => (k * maxAct(i)) / 10), counts: Array.from({ length: 10 }, (_, k) => (d ? 0 : Math.round(500 / (k + 1)))) },
    logits: { positive: [0, 1, 2].map((k) => ({ token: WORDS[(i + k) % WORDS.length], token_id: 1000 + k, value: 3 - k * 0.5 })), negative: [0, 1].map((k) => ({ token: WORDS[(i + k + 5) % WORDS.length], token_id: 2000 + k, value: -2 + k * 0.5 })) },
    neighbors: [1, 2, 3].map((k) => ({ index: (i + k * 7) % D_SAE, cosine: 0.9 - k * 0.1, summary: summary((i + k * 7) % D_SAE) })),
    prev: i > 0 ? i - 1 : null, next: i < D_SAE - 1 ? i + 1 : null,
  };
}

// A sweep over TopK's k (lm_saes/sweep/record.py): five finished members, one failed, one pending,
// four baselines at three budgets each. Frontiers: lower L0 and higher metric are both better.
const FRONTIERS = { explained_variance: 'explained variance', ce_loss_recovered: 'CE loss recovered' };
function sweepRecord() {
  const r4 = (v) => Math.round(v * 1e4) / 1e4;
  const metricsAt = (l0, quality) => ({ l0: r4(l0 * (0.97 + 0.05 * rand(l0))), explained_variance: r4(1 - quality * 0.9 / Math.sqrt(l0)), ce_loss_recovered: r4(1 - quality * 0.6 / Math.sqrt(l0) - 0.02 * rand(l0 + 1)), mse: r4(quality * 0.1 / l0) });
  const members = [8, 16, 32, 64, 128].map((k, i) => ({ name: `topk-k${k}`, kind: 'member', variant: 'topk', status: 'finished', params: { k, lr: 0.0004 }, metrics: metricsAt(k, i === 2 ? 1.6 : 1), dictionary_dir: `/work/sweeps/topk-k/members/topk-k${k}`, train_seconds: 40 + k, ...(k === 32 ? { dictionary: 'gpt2-L6-topk' } : {}) }));
  members.push({ name: 'topk-k256', kind: 'member', variant: 'topk', status: 'failed', params: { k: 256, lr: 0.0004 }, metrics: {}, error: 'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.11 GiB total capacity)', dictionary_dir: '/work/sweeps/topk-k/members/topk-k256' });
  members.push({ name: 'topk-k512', kind: 'member', variant: 'topk', status: 'pending', params: { k: 512, lr: 0.0004 }, metrics: {}, dictionary_dir: '/work/sweeps/topk-k/members/topk-k512' });
  const finished = members.filter((m) => m.status === 'finished');
  for (const m of members) m.frontier = m.status !== 'finished' ? [] : Object.keys(FRONTIERS).filter((f) => !finished.some((o) => o !== m && o.metrics.l0 <= m.metrics.l0 && o.metrics[f] >= m.metrics[f] && (o.metrics.l0 < m.metrics.l0 || o.metrics[f] > m.metrics[f])));
  const baselines = ['pca', 'ica', 'neurons', 'random'].flatMap((variant, v) => [8, 32, 128].map((l0) => ({ name: `${variant}-l0-${l0}`, kind: 'baseline', variant, status: 'finished', params: { l0 }, metrics: metricsAt(l0, 2.2 + v * 0.5), frontier: [] })));
  return { name: 'topk-k', output_dir: '/work/sweeps/topk-k', status: 'complete', updated_at: '2025-11-23T15:16:00.000000+00:00', varied: ['k', 'lr'], metrics: ['l0', 'explained_variance', 'ce_loss_recovered', 'mse'], frontiers: FRONTIERS, rows: [...members, ...baselines].map((r) => ({ variant: null, error: null, dictionary_dir: null, dictionary: null, train_seconds: null, ...r, analyzed: r.dictionary === 'gpt2-L6-topk' })) };
}
const SWEEPS = [sweepRecord()];

// ---- API -----------------------------------------------------------------------------------
function api(method, url, body) {
  const p = url.pathname.split('/').filter(Boolean).map(decodeURIComponent); // ['api', ...]
  const q = url.searchParams;
  if (p[1] === 'health') return [200, { status: 'ok', store: 'ok' }];
  if (p[1] === 'sweeps') {
    if (p.length === 2) return [200, SWEEPS.map(({ name, status, updated_at, rows }) => { const m = rows.filter((r) => r.kind === 'member'); return { name, status, updated_at, n_members: m.length, n_finished: m.filter((r) => r.status === 'finished').length, n_failed: m.filter((r) => r.status === 'failed').length }; })];
    const sweep = SWEEPS.find((s) => s.name === p[2]);
    return sweep && p.length === 3 ? [200, sweep] : [404, { detail: `no sweep '${p[2]}' in the store` }];
  }
  if (p[1] !== 'dictionaries') return [404, { detail: 'Not Found' }];
  if (p.length === 2) return [200, DICTS];
  const d = DICTS.find((x) => x.name === p[2]);
  if (!d) return [404, { detail: `dictionary '${p[2]}' not found` }];
  const hasAnalysis = d.analyses.includes(q.get('analysis') ?? 'default');
  if (p.length === 3) {
    const counts = [2, 5, 9, 8, 6, 3, 1];
    return [200, { ...d, d_out: d.d_in, transcoder: false, config: { kind: d.kind, d_sae: d.d_sae, k: 8 }, analysis: hasAnalysis ? { name: 'default', n_tokens: 100000, n_contexts: 800, alive_fraction: 0.9, dead_fraction: 0.1, density_histogram: { log10_edges: [-4, -3.5, -3, -2.5, -2, -1.5, -1, -0.5], counts, dead: 4 } } : null, interpretations: hasAnalysis ? [{ explainer: 'lexical', kind: 'lexical', scorer: 'lexical', model: null, n_scored: 108, n_failed: 0, means: { simulation: { n: 108, mean: 0.41, low: 0.38, high: 0.44 }, detection: { n: 108, mean: 0.72, low: 0.7, high: 0.74 }, fuzzing: { n: 108, mean: 0.7, low: 0.67, high: 0.73 } }, updated_at: null }] : [] }];
  }
  if (!hasAnalysis && p[3] !== 'infer') return [404, { detail: `no analysis for '${d.name}'` }];
  if (p[3] === 'features' && p.length === 4) {
    const sort = q.get('sort') ?? 'index', order = q.get('order') ?? 'asc';
    const skip = Number(q.get('skip') ?? 0), limit = Number(q.get('limit') ?? 50);
    if (!['index', 'density', 'max_activation', ...SCORES].includes(sort) || !['asc', 'desc'].includes(order) || !(skip >= 0) || !(limit >= 1 && limit <= 500)) return [422, { detail: [{ loc: ['query', 'sort'], msg: 'invalid parameter' }] }];
    let rows = Array.from({ length: D_SAE }, (_, i) => row(i));
    const key = (r) => (SCORES.includes(sort) ? r.explanation?.scores[sort] : r[sort]);
    if (SCORES.includes(sort)) rows = rows.filter((r) => typeof key(r) === 'number');
    if (q.get('min_density')) rows = rows.filter((r) => r.density >= Number(q.get('min_density')));
    if (q.get('max_density')) rows = rows.filter((r) => r.density <= Number(q.get('max_density')));
    if (q.get('search')) rows = rows.filter((r) => `${r.interpretation ?? ''} ${r.explanation?.text ?? ''}`.toLowerCase().includes(q.get('search').toLowerCase()));
    rows.sort((a, b) => (key(a) - key(b)) * (order === 'asc' ? 1 : -1) || a.index - b.index);
    return [200, { total: rows.length, items: rows.slice(skip, skip + limit) }];
  }
  if (p[3] === 'features' && p.length === 6 && p[5] === 'explanations') {
    const e = explanation(Number(p[4]));
    return [200, e ? [{ explainer: e.explainer, kind: e.kind, model: null, scorer: 'lexical', status: e.status, explanation: e.text, scores: e.scores, tokens: [{ token: 'the', weight: 0.2 }], failures: [], requests: [], n_contexts: { explain: 10, positive: 10, negative: 20 }, created_at: null }] : []];
  }
  if (p[3] === 'features' && p.length === 5) {
    const i = Number(p[4]);
    if (!Number.isInteger(i) || i < 0 || i >= D_SAE) return [404, { detail: `dictionary '${d.name}' has no feature ${p[4]}; its features are 0-${D_SAE - 1}` }];
    return [200, featureDetail(i)];
  }
  if (p[3] === 'random') return [200, { index: Math.floor(Math.random() * D_SAE) }];
  if (p[3] === 'search') {
    const text = (q.get('q') ?? '').trim().toLowerCase();
    const items = Array.from({ length: D_SAE }, (_, i) => featureDetail(i))
      .map((f) => ({ index: f.index, density: f.density, max_activation: f.max_activation, summary: f.summary, matches: f.top_contexts.flatMap((c) => c.tokens.filter((t, k) => c.acts[k] > 0 && t.trim().toLowerCase() === text)).length }))
      .filter((r) => r.matches > 0).sort((a, b) => b.matches - a.matches).slice(0, Number(q.get('limit') ?? 20));
    return [200, { items }];
  }
  if (p[3] === 'infer' && method === 'POST') {
    if (typeof body?.text !== 'string') return [422, { detail: 'text: field required' }];
    const tokens = body.text.match(/\s*\S+|\s+/g) ?? [];
    const top = body.top ?? 5;
    const features = tokens.map((t, k) => Array.from({ length: top }, (_, j) => ({ index: (t.length * 7 + k + j * 5) % D_SAE, act: Math.round((top - j) * rand(k + j) * 1000) / 1000 })).sort((a, b) => b.act - a.act));
    const f = body.feature ?? null;
    const listed = [...new Set([...features.flat().map((x) => x.index), ...(f === null ? [] : [f])])].sort((a, b) => a - b);
    return [200, { tokens, token_ids: tokens.map((_, k) => 100 + k), features, feature: f,
      feature_acts: f === null ? null : tokens.map((_, k) => (rand(f + k) > 0.5 ? Math.round(maxAct(f) * rand(k) * 1000) / 1000 : 0)),
      summaries: listed.filter((i) => summary(i)).map((i) => ({ index: i, ...summary(i) })), truncated: false }];
  }
  if (p[3] === 'features' && p[5] === 'steer' && method === 'POST') {
    if (typeof body?.prompt !== 'string' || !Number.isFinite(body?.strength)) return [422, { detail: 'prompt, strength: field required' }];
    const n = body.max_new_tokens ?? 24;
    const cont = (steered, sampled) => { const tokens = Array.from({ length: n }, (_, k) => WORDS[(k * (sampled ? 3 : 1) + (steered && body.strength ? Number(p[4]) : 0)) % WORDS.length]); return { text: tokens.join(''), tokens, token_ids: tokens.map((t) => 100 + WORDS.indexOf(t)) }; };
    return [200, { feature: Number(p[4]), hook: 'blocks.6.hook_resid_post', mode: body.mode ?? 'add', strength: body.strength, prompt_tokens: [body.prompt], prompt_truncated: false, stopped: 'length',
      unsteered: { greedy: cont(false, false), sampled: cont(false, true) }, steered: { greedy: cont(true, false), sampled: cont(true, true) } }];
  }
  return [404, { detail: 'Not Found' }];
}

async function serveStatic(res, pathname) {
  const file = normalize(join(STATIC_DIR, pathname));
  const inside = file.startsWith(STATIC_DIR);
  let target = join(STATIC_DIR, 'index.html');
  let status = 200;
  if (inside && (await stat(file).then((s) => s.isFile(), () => false))) target = file;
  else if (pathname.startsWith('/assets/')) { res.writeHead(404).end(); return; }
  else status = isPage(pathname) ? 200 : 404;
  res.writeHead(status, { 'Content-Type': TYPES[extname(target)] ?? 'application/octet-stream' });
  res.end(await readFile(target));
}

/** Whether a path is a page of the UI's route table that the canned data has (as `lm-saes serve` answers). */
function isPage(pathname) {
  const s = pathname.replace(/\/+$/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (s.length === 0) return true;
  if (s[0] === 'sweeps') return s.length === 2 && SWEEPS.some((w) => w.name === s[1]);
  const d = s[0] === 'dictionaries' && DICTS.find((x) => x.name === s[1]);
  if (!d) return false;
  if (s.length === 2) return true;
  if (s.length === 3) return s[2] === 'infer';
  return s.length === 4 && s[2] === 'features' && /^\d+$/.test(s[3]) && Number(s[3]) < d.d_sae;
}

export function startMockServer(port = 0, { down = false } = {}) {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    try {
      if (url.pathname.startsWith('/api/')) {
        let body = null;
        if (req.method === 'POST') {
          let raw = '';
          for await (const chunk of req) raw += chunk;
          try { body = JSON.parse(raw); } catch { body = null; }
        }
        const [status, json] = down ? [503, { detail: 'database unavailable' }] : api(req.method, url, body);
        res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(json));
      } else {
        await serveStatic(res, url.pathname);
      }
    } catch (e) {
      res.writeHead(500, { 'Content-Type': 'application/json' }).end(JSON.stringify({ detail: String(e) }));
    }
  });
  return new Promise((ok) => server.listen(port, '127.0.0.1', () => ok({ server, url: `http://127.0.0.1:${server.address().port}` })));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { url } = await startMockServer(Number(process.argv[2] ?? 5178), { down: process.env.MOCK_DOWN === '1' });
  console.log(`mock lm-saes server on ${url} (static from ${STATIC_DIR})`);
}
