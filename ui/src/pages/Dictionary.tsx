// `/dictionaries/:name`: metrics, density histogram, token search and the feature list.
import { useState } from 'react';
import { ApiError, api, SCORE_NAMES, type DictionaryDetail } from '../api';
import { ExplainerBadge } from '../components/Explanation';
import { FeatureTable } from '../components/FeatureTable';
import { Histogram } from '../components/Histogram';
import { Await } from '../components/Status';
import { TokenSearch } from '../components/TokenSearch';
import { fmt, pct, plural } from '../format';
import { Link, navigate, paths } from '../router';
import { useTitle } from '../title';
import { useApi } from '../useApi';

function MetricsTable({ d }: { d: DictionaryDetail }) {
  const rows: [string, string][] = [
    ['kind', d.kind ?? '—'],
    ['d_in', fmt(d.d_in)],
    ['d_sae', fmt(d.d_sae)],
    ['d_out', fmt(d.d_out)],
    ['transcoder', d.transcoder === null ? '—' : d.transcoder ? 'yes' : 'no'],
  ];
  // Scalars only: a nested record (eval.density_histogram) is drawn, not printed.
  for (const [group, values] of Object.entries(d.metrics ?? {})) {
    for (const [k, v] of Object.entries(values ?? {})) {
      if (typeof v === 'number') rows.push([`${group}.${k}`, fmt(v, 4)]);
      else if (typeof v === 'string' || typeof v === 'boolean') rows.push([`${group}.${k}`, String(v)]);
    }
  }
  if (d.analysis) {
    const a = d.analysis;
    rows.push(
      ['analysis', a.name],
      ['analysed tokens', fmt(a.n_tokens)],
      ['analysed contexts', fmt(a.n_contexts)],
      ['alive features', pct(a.alive_fraction)],
      ['dead features', pct(a.dead_fraction)],
    );
  }
  return (
    <div className="table-wrap">
      <table className="kv" data-testid="metrics">
        <tbody>
          {rows.map(([k, v]) => (
            <tr key={k}>
              <th>{k}</th>
              <td className="num">{v}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** Each explainer's mean scores (95% confidence intervals) over the analysis's features. */
function InterpretationTable({ d }: { d: DictionaryDetail }) {
  if (d.interpretations.length === 0) return null;
  return (
    <div className="table-wrap">
      <table data-testid="interpretations">
        <thead>
          <tr>
            <th>Explainer</th>
            <th className="num">Scored</th>
            {SCORE_NAMES.map((s) => (
              <th key={s} className="num">
                {s} (95% CI)
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {d.interpretations.map((i) => (
            <tr key={i.explainer}>
              <td>
                <ExplainerBadge e={i} />
              </td>
              <td className="num">{fmt(i.n_scored)}</td>
              {SCORE_NAMES.map((s) => {
                const m = i.means[s];
                return (
                  <td key={s} className="num" data-testid={`mean-${s}`} data-value={m?.mean ?? ''}>
                    {m ? `${fmt(m.mean, 3)} [${fmt(m.low, 3)}, ${fmt(m.high, 3)}]` : '—'}
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function RandomButton({ name, analysis }: { name: string; analysis?: string }) {
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const go = async () => {
    setBusy(true);
    setError(null);
    try {
      const { index } = await api.random(name, analysis);
      navigate(paths.feature(name, index, analysis));
    } catch (e) {
      setError(e instanceof ApiError ? e : new ApiError(0, null, String(e)));
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <button onClick={go} disabled={busy} data-testid="random">
        Random feature
      </button>
      {error && (
        <span className="inline-error" role="alert" data-testid="random-error">
          {error.status === 503 ? 'Database unavailable' : error.message}
        </span>
      )}
    </>
  );
}

/** Ticks of a log10-density axis at whole powers of ten, in the pages' density convention (%). */
function densityTicks(edges: number[]): number[] {
  const lo = Math.ceil(edges[0]);
  const hi = Math.floor(edges[edges.length - 1]);
  const all = Array.from({ length: Math.max(0, hi - lo + 1) }, (_, i) => lo + i);
  const step = Math.ceil(all.length / 5) || 1; // at most about five labels
  return all.filter((_, i) => i % step === 0);
}

function Titled({ name }: { name: string }) {
  useTitle(name);
  return null;
}

export function Dictionary({ name, search }: { name: string; search: URLSearchParams }) {
  const analysis = search.get('analysis') ?? undefined;
  const detail = useApi(JSON.stringify([name, analysis]), (signal) => api.dictionary(name, analysis, signal));
  return (
    <Await value={detail}>
      {(d) => (
        <>
          <Titled name={d.name} />
          <header className="page-head">
            <h1 data-testid="dictionary-name">{d.name}</h1>
            <div className="actions">
              <RandomButton name={name} analysis={analysis} />
              <Link href={paths.infer(name)} className="button" data-testid="infer-link">
                Live inference
              </Link>
            </div>
          </header>
          <div className="columns">
            <section>
              <h2>Feature density</h2>
              {d.analysis?.density_histogram ? (
                <Histogram
                  testId="density-histogram"
                  title={`Firing density of the alive features; ${plural(d.analysis.density_histogram.dead, 'dead feature')} not shown`}
                  xLabel="firing density (share of tokens, log scale)"
                  yLabel="features"
                  edges={d.analysis.density_histogram.log10_edges}
                  counts={d.analysis.density_histogram.counts}
                  ticks={densityTicks(d.analysis.density_histogram.log10_edges)}
                  label={(e) => `${Number((100 * 10 ** e).toPrecision(2))}%`}
                />
              ) : d.analysis ? (
                <p className="muted">The analysis stores no density histogram.</p>
              ) : (
                <p className="muted" data-testid="no-analysis">
                  No feature analysis is stored for this dictionary{analysis ? ` under “${analysis}”` : ''}.
                </p>
              )}
            </section>
            {d.interpretations.length > 0 && (
              <section className="wide">
                <h2>Explanation scores</h2>
                <InterpretationTable d={d} />
              </section>
            )}
          </div>
          {d.analysis && (
            <>
              {/* Keyed by their URL inputs, so back/forward resets the typed text. */}
              <TokenSearch key={search.get('q') ?? ''} name={name} search={search} />
              <FeatureTable
                key={['min_density', 'max_density', 'search'].map((k) => search.get(k) ?? '').join('|')}
                name={name}
                search={search}
              />
            </>
          )}
          <details className="metrics" data-testid="metrics-details">
            <summary>
              <h2>Metrics and configuration</h2>
            </summary>
            <MetricsTable d={d} />
          </details>
        </>
      )}
    </Await>
  );
}
