// Types and the single fetch wrapper for the lm-saes server API (`lm-saes serve`).
// Hand-written to match the server's JSON contract; every request goes through `request`.

export type MetricValues = Record<string, number | null | undefined>;

export interface DictionaryMetrics {
  final_batch?: MetricValues;
  eval?: MetricValues & {
    explained_variance?: number;
    l0?: number;
    mse?: number;
    ce_loss_recovered?: number;
    kl_spliced?: number;
    dead_fraction?: number;
  };
}

export interface DictionarySummary {
  name: string;
  kind: string | null;
  d_sae: number | null;
  d_in: number | null;
  analyses: string[];
  metrics: DictionaryMetrics;
  source: Record<string, unknown>;
  /** A decomposition's matrices (kind 'decomposition'); [] for a dictionary. */
  modules: ModuleSummary[];
}

/** One decomposed matrix of an SPD decomposition; component c is feature `first + c`. */
export interface ModuleSummary {
  name: string;
  kind: string | null;
  d_in: number | null;
  d_out: number | null;
  C: number;
  first: number;
  /** Subcomponents whose causal importance passed the threshold in the analysis. */
  live: number;
  tied_to: string | null;
  /** ci_l0, alive, mmcs, ml2r, final_ci_l0... */
  metrics: Record<string, unknown>;
}

/** A matrix with a side of width 2: the target's feature directions and each subcomponent's. */
export interface Plane {
  target: number[][];
  components: number[][];
  feature: number[];
}

export interface ComponentSummary {
  index: number;
  component: number;
  density: number;
  max_activation: number;
  mean_activation: number | null;
  n_fired: number | null;
  decoder_norm: number | null;
  v_norm: number | null;
  u_norm: number | null;
}

export interface ModuleDetail extends ModuleSummary {
  plane: Plane | null;
  /** Densest first. */
  components: ComponentSummary[];
}

export interface DecompositionDetail {
  name: string;
  path: string | null;
  d_sae: number | null;
  config: Record<string, unknown>;
  source: Record<string, unknown>;
  metrics: { eval?: Record<string, unknown>; final_batch?: Record<string, unknown>; [key: string]: unknown };
  ci_threshold: number | null;
  analysis: AnalysisSummary | null;
  modules: ModuleDetail[];
}

export interface ComponentExample extends ContextSample {
  /** The inner activation x . V_c at every shown token. */
  inner: number[] | null;
  /** A toy's input: its nonzero features, largest first, and their values. */
  input: { features: number[]; values: number[] } | null;
}

export interface Coactivation {
  index: number;
  module: string;
  component: number;
  count: number;
  /** P(it fires | this one fires). */
  p: number;
  jaccard: number;
}

/** `POST /api/decompositions/NAME/infer`: a matrix's important subcomponents at each token. */
export interface ImportanceResult {
  tokens: string[];
  token_ids: number[];
  module: string;
  first: number;
  C: number;
  ci_threshold: number;
  /** Per token: the subcomponents above the threshold, most important first. */
  components: { index: number; component: number; ci: number }[][];
  /** Per token: how many of the matrix's subcomponents are above the threshold. */
  l0: number[];
  truncated: boolean;
}

export interface ComponentDetail extends ComponentSummary {
  module: string;
  C: number;
  first: number;
  n_contexts: number | null;
  top_contexts: ComponentExample[];
  quantiles: (Omit<QuantileBand, 'examples'> & { examples: ComponentExample[] })[];
  histogram: { edges: number[]; counts: number[] };
  coactivations: Coactivation[] | null;
  prev: number | null;
  next: number | null;
}

export interface DensityHistogram {
  log10_edges: number[];
  counts: number[];
  dead: number;
}

export interface AnalysisSummary {
  name: string;
  n_tokens: number | null;
  n_contexts: number | null;
  alive_fraction: number | null;
  dead_fraction: number | null;
  density_histogram: DensityHistogram | null;
}

export type ScoreName = 'simulation' | 'detection' | 'fuzzing';
export const SCORE_NAMES: ScoreName[] = ['simulation', 'detection', 'fuzzing'];

/** The three scores of an explanation on held-out contexts (lm_saes/interpret/scores.py). */
export type ExplanationScores = Partial<Record<ScoreName, number | null>>;

export interface MeanScore {
  n: number;
  mean: number;
  /** The 95% confidence interval of the mean. */
  low: number;
  high: number;
}

/** One explainer's mean scores over a dictionary's features (`lm-saes interpret`). */
export interface InterpretationSummary {
  explainer: string;
  /** 'lexical': the offline lexical baseline, no model. */
  kind: 'lexical' | 'openai';
  scorer: string | null;
  model: string | null;
  n_scored: number;
  n_failed: number;
  means: Partial<Record<ScoreName, MeanScore>>;
  updated_at: string | null;
}

/** The explanation a feature shows: the last one `lm-saes interpret` wrote for it. */
export interface ExplanationSummary {
  text: string;
  explainer: string;
  kind: 'lexical' | 'openai';
  status: 'scored' | 'failed';
  scores: ExplanationScores;
}

/** One explainer's whole record of a feature: its prompts and raw replies too. */
export interface ExplanationRecord {
  explainer: string;
  kind: 'lexical' | 'openai';
  model: string | null;
  scorer: string | null;
  status: 'scored' | 'failed';
  explanation: string | null;
  scores: ExplanationScores;
  tokens: { token: string; weight: number }[];
  failures: { stage: string; error: string; reply: string }[];
  requests: { stage: string; messages: { role: string; content: string }[]; reply: string | null }[];
  n_contexts: Record<string, number>;
  created_at: string | null;
}

export interface DictionaryDetail {
  name: string;
  kind: string | null;
  d_sae: number | null;
  d_in: number | null;
  d_out: number | null;
  transcoder: boolean | null;
  config: Record<string, unknown>;
  source: Record<string, unknown>;
  metrics: DictionaryMetrics;
  analysis: AnalysisSummary | null;
  interpretations: InterpretationSummary[];
}

/** A score sorts the features whose shown explanation has it (the others are left out). */
export type FeatureSort = 'index' | 'density' | 'max_activation' | ScoreName;
export type SortOrder = 'asc' | 'desc';

export interface FeatureListQuery {
  analysis?: string;
  sort?: FeatureSort;
  order?: SortOrder;
  min_density?: number;
  max_density?: number;
  search?: string;
  skip?: number;
  limit?: number;
}

/** The one line a feature is known by: a person's interpretation, its explanation, or its most
 * characteristic tokens (the peak tokens of its top contexts, most frequent first). */
export interface SummaryLine {
  source: 'interpretation' | 'explanation' | 'tokens';
  text: string;
  tokens: string[];
}

export interface FeatureRow {
  index: number;
  density: number;
  max_activation: number;
  mean_activation: number | null;
  n_fired: number | null;
  interpretation: string | null;
  explanation: ExplanationSummary | null;
  summary: SummaryLine | null;
}

export interface FeatureList {
  total: number;
  items: FeatureRow[];
}

export interface ContextSample {
  context_id: number | string;
  peak: number;
  max: number;
  start: number;
  tokens: string[];
  /** Absent in analyses written before token ids were stored. */
  token_ids?: number[] | null;
  acts: number[];
}

export interface QuantileBand {
  band: string | number;
  low: number;
  high: number;
  n_contexts: number;
  examples: ContextSample[];
}

export interface LogitEntry {
  token: string;
  token_id: number;
  value: number;
}

export interface FeatureDetail {
  index: number;
  n_fired: number | null;
  n_contexts: number | null;
  density: number;
  max_activation: number;
  mean_activation: number | null;
  decoder_norm: number | null;
  top_contexts: ContextSample[];
  quantiles: QuantileBand[];
  histogram: { edges: number[]; counts: number[] };
  logits: { positive: LogitEntry[]; negative: LogitEntry[] };
  neighbors: { index: number; cosine: number; summary: SummaryLine | null }[];
  interpretation: string | null;
  explanation: ExplanationSummary | null;
  summary: SummaryLine | null;
  prev: number | null;
  next: number | null;
}

export interface TokenSearchResult {
  items: { index: number; density: number; max_activation: number; matches: number; summary: SummaryLine | null }[];
}

export interface InferResult {
  tokens: string[];
  token_ids: number[];
  features: { index: number; act: number }[][];
  /** The feature asked for, and its activation at every token. */
  feature: number | null;
  feature_acts: number[] | null;
  summaries: (SummaryLine & { index: number })[];
  /** Set by the server when the text was cut to the model's context length. */
  truncated?: boolean;
}

export interface SteerRequest {
  prompt: string;
  /** 'add': strength x the decoder direction at every position; 'clamp': the feature set to strength. */
  mode: 'add' | 'clamp';
  strength: number;
  max_new_tokens?: number;
  temperature?: number;
  seed?: number;
  timeout_s?: number;
  hook?: string;
}

export interface Continuation {
  text: string;
  tokens: string[];
  token_ids: number[];
}

export interface SteerResult {
  feature: number;
  hook: string;
  mode: 'add' | 'clamp';
  strength: number;
  prompt_tokens: string[];
  prompt_truncated: boolean;
  /** 'time': the server's time limit ran out before max_new_tokens. */
  stopped: 'length' | 'time';
  unsteered: { greedy: Continuation; sampled: Continuation };
  steered: { greedy: Continuation; sampled: Continuation };
}

export interface SweepSummary {
  name: string;
  status: string;
  updated_at: string | null;
  n_members: number;
  n_finished: number;
  n_failed: number;
}

export type SweepParam = number | string | boolean;

/** One trained member or one baseline of a sweep (lm_saes/sweep/record.py). */
export interface SweepRow {
  name: string;
  kind: 'member' | 'baseline';
  variant: string | null;
  status: 'finished' | 'failed' | 'pending';
  /** The row's values of the sweep's `varied` fields. */
  params: Record<string, SweepParam>;
  /** Present once finished: one value per column of the sweep's `metrics`. */
  metrics: Record<string, number>;
  /** The metrics (keys of `frontiers`) whose Pareto front against L0 this row lies on. */
  frontier: string[];
  error: string | null;
  dictionary_dir: string | null;
  /** The member's dictionary name in the store, once analyzed. */
  dictionary: string | null;
  /** Whether `dictionary` has a complete analysis, i.e. can be browsed. */
  analyzed: boolean;
  /** Whether that analyzed dictionary is an SPD decomposition (browsed at /decompositions/NAME). */
  decomposition?: boolean;
}

export interface SweepDetail {
  name: string;
  status: string;
  updated_at: string | null;
  output_dir: string | null;
  varied: string[];
  metrics: string[];
  /** Metric key -> plot label, each plotted against `x`. */
  frontiers: Record<string, string>;
  /** The fronts' other axis: 'l0', or an SPD sweep's 'ci_l0'. */
  x: string;
  /** Whose mean simulation score the `interpretability` metric is, once rows are interpreted. */
  interpretability_explainer: string | null;
  rows: SweepRow[];
}

/** An HTTP error from the API; `status` 0 means the server could not be reached. */
export class ApiError extends Error {
  readonly status: number;
  readonly detail: unknown;
  constructor(status: number, detail: unknown, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.detail = detail;
  }
}

/** Render FastAPI's `detail` (a string, or a list of validation errors) as one line. */
function describeDetail(detail: unknown): string {
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((d) => {
        if (d && typeof d === 'object' && 'msg' in d) {
          const loc = Array.isArray((d as { loc?: unknown }).loc) ? (d as { loc: unknown[] }).loc.join('.') : '';
          return loc ? `${loc}: ${String((d as { msg: unknown }).msg)}` : String((d as { msg: unknown }).msg);
        }
        return JSON.stringify(d);
      })
      .join('; ');
  }
  return detail === undefined ? '' : JSON.stringify(detail);
}

type QueryValue = string | number | undefined | null;

export function queryString(params: Record<string, QueryValue>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** The one fetch wrapper: JSON in, JSON out, `ApiError` on any failure. */
export async function request<T>(path: string, init?: RequestInit): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      ...init,
      headers: { Accept: 'application/json', ...(init?.body ? { 'Content-Type': 'application/json' } : {}) },
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e;
    throw new ApiError(0, null, `cannot reach the server: ${String(e)}`);
  }
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  if (!res.ok) {
    const detail = body && typeof body === 'object' && 'detail' in body ? (body as { detail: unknown }).detail : body;
    const msg = describeDetail(detail) || res.statusText;
    throw new ApiError(res.status, detail, `${res.status} ${msg}`);
  }
  return body as T;
}

const dict = (name: string) => `/api/dictionaries/${encodeURIComponent(name)}`;

export const api = {
  health: (signal?: AbortSignal) => request<{ status: string; store: string }>('/api/health', { signal }),
  dictionaries: (signal?: AbortSignal) => request<DictionarySummary[]>('/api/dictionaries', { signal }),
  dictionary: (name: string, analysis?: string, signal?: AbortSignal) =>
    request<DictionaryDetail>(dict(name) + queryString({ analysis }), { signal }),
  features: (name: string, query: FeatureListQuery, signal?: AbortSignal) =>
    request<FeatureList>(`${dict(name)}/features` + queryString({ ...query }), { signal }),
  feature: (name: string, index: number, analysis?: string, signal?: AbortSignal) =>
    request<FeatureDetail>(`${dict(name)}/features/${index}` + queryString({ analysis }), { signal }),
  explanations: (name: string, index: number, analysis?: string, signal?: AbortSignal) =>
    request<ExplanationRecord[]>(`${dict(name)}/features/${index}/explanations` + queryString({ analysis }), { signal }),
  random: (name: string, analysis?: string) =>
    request<{ index: number }>(`${dict(name)}/random` + queryString({ analysis })),
  search: (name: string, q: string, limit = 20, analysis?: string, signal?: AbortSignal) =>
    request<TokenSearchResult>(`${dict(name)}/search` + queryString({ q, limit, analysis }), { signal }),
  infer: (name: string, text: string, top = 5, feature?: number, analysis?: string) =>
    request<InferResult>(`${dict(name)}/infer` + queryString({ analysis }), {
      method: 'POST',
      body: JSON.stringify({ text, top, ...(feature === undefined ? {} : { feature }) }),
    }),
  steer: (name: string, index: number, body: SteerRequest) =>
    request<SteerResult>(`${dict(name)}/features/${index}/steer`, { method: 'POST', body: JSON.stringify(body) }),
  decomposition: (name: string, analysis?: string, signal?: AbortSignal) =>
    request<DecompositionDetail>(`/api/decompositions/${encodeURIComponent(name)}` + queryString({ analysis }), { signal }),
  component: (name: string, index: number, analysis?: string, signal?: AbortSignal) =>
    request<ComponentDetail>(`/api/decompositions/${encodeURIComponent(name)}/components/${index}` + queryString({ analysis }), { signal }),
  importances: (name: string, text: string, module: string) =>
    request<ImportanceResult>(`/api/decompositions/${encodeURIComponent(name)}/infer`, {
      method: 'POST',
      body: JSON.stringify({ text, module, top: 20 }),
    }),
  sweeps: (signal?: AbortSignal) => request<SweepSummary[]>('/api/sweeps', { signal }),
  sweep: (name: string, signal?: AbortSignal) =>
    request<SweepDetail>(`/api/sweeps/${encodeURIComponent(name)}`, { signal }),
};
