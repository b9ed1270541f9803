// `/dictionaries/:name/features/:index`: one feature's statistics, contexts, logits and neighbours.
import { useEffect } from 'react';
import { api, type FeatureDetail, type LogitEntry } from '../api';
import { ExplanationPanel } from '../components/Explanation';
import { Histogram } from '../components/Histogram';
import { Await, NotFound } from '../components/Status';
import { ContextView } from '../components/Tokens';
import { fmt, pct } from '../format';
import { Link, navigate, paths } from '../router';
import { useApi } from '../useApi';

function Logits({ title, items, testId }: { title: string; items: LogitEntry[]; testId: string }) {
  return (
    <div className="logits" data-testid={testId}>
      <h3>{title}</h3>
      {items.length === 0 ? (
        <p className="muted">None.</p>
      ) : (
        <table>
          <tbody>
            {items.map((l) => (
              <tr key={l.token_id}>
                <td>
                  <code title={`token id ${l.token_id}`}>{JSON.stringify(l.token)}</code>
                </td>
                <td className="num">{fmt(l.value)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

/** ArrowLeft/k go to the previous feature, ArrowRight/j to the next. */
function useFeatureKeys(name: string, f: FeatureDetail | null, analysis?: string) {
  useEffect(() => {
    if (!f) return;
    const onKey = (e: KeyboardEvent) => {
      if (e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
      const el = e.target as HTMLElement | null;
      if (el && (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT' || el.isContentEditable)) return;
      const target = e.key === 'ArrowRight' || e.key === 'j' ? f.next : e.key === 'ArrowLeft' || e.key === 'k' ? f.prev : undefined;
      if (target === undefined || target === null) return;
      e.preventDefault();
      navigate(paths.feature(name, target, analysis));
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [name, f, analysis]);
}

function FeatureBody({ name, f, analysis }: { name: string; f: FeatureDetail; analysis?: string }) {
  useFeatureKeys(name, f, analysis);
  const max = f.max_activation;
  const stats: [string, string][] = [
    ['density', pct(f.density)],
    ['fired', `${fmt(f.n_fired)} tokens`],
    ['contexts', fmt(f.n_contexts)],
    ['max act', fmt(max)],
    ['mean act', fmt(f.mean_activation)],
    ['decoder norm', fmt(f.decoder_norm)],
  ];
  return (
    <>
      <header className="page-head">
        <h1>
          <Link href={paths.dictionary(name)}>{name}</Link> / feature <span data-testid="feature-index">{f.index}</span>
        </h1>
        <nav className="actions" data-testid="prev-next">
          {f.prev !== null ? (
            <Link href={paths.feature(name, f.prev, analysis)} data-testid="prev" className="button">
              ← #{f.prev}
            </Link>
          ) : (
            <span className="button disabled">←</span>
          )}
          {f.next !== null ? (
            <Link href={paths.feature(name, f.next, analysis)} data-testid="next" className="button">
              #{f.next} →
            </Link>
          ) : (
            <span className="button disabled">→</span>
          )}
        </nav>
      </header>
      <p className="muted small">Keys: ← / k previous, → / j next.</p>
      {f.interpretation && (
        <p className="interpretation" data-testid="interpretation">
          {f.interpretation}
        </p>
      )}
      <ExplanationPanel name={name} index={f.index} analysis={analysis} shown={f.explanation} />
      <dl className="stats" data-testid="feature-stats">
        {stats.map(([k, v]) => (
          <div key={k}>
            <dt>{k}</dt>
            <dd>{v}</dd>
          </div>
        ))}
      </dl>
      <div className="columns">
        <section>
          <h2>Activation histogram</h2>
          <Histogram testId="activation-histogram" title="non-zero activations" edges={f.histogram.edges} counts={f.histogram.counts} logY />
        </section>
        <section className="logit-pair">
          <Logits title="Top positive logits" items={f.logits.positive} testId="logits-positive" />
          <Logits title="Top negative logits" items={f.logits.negative} testId="logits-negative" />
        </section>
      </div>
      <section data-testid="top-contexts">
        <h2>Top activating contexts</h2>
        {f.top_contexts.length === 0 ? (
          <p className="muted">This feature never fired in the analysed contexts.</p>
        ) : (
          f.top_contexts.map((c, i) => <ContextView key={i} ctx={c} max={max} />)
        )}
      </section>
      {f.quantiles.length > 0 && (
        <section data-testid="quantiles">
          <h2>Samples by activation band</h2>
          {f.quantiles.map((q, i) => (
            <details key={i} open={i === 0}>
              <summary>
                Band {String(q.band)}: {fmt(q.low)} – {fmt(q.high)} <span className="muted">({fmt(q.n_contexts)} contexts)</span>
              </summary>
              {q.examples.map((c, j) => (
                <ContextView key={j} ctx={c} max={max} />
              ))}
            </details>
          ))}
        </section>
      )}
      <section data-testid="neighbors">
        <h2>Nearest features (decoder cosine)</h2>
        {f.neighbors.length === 0 ? (
          <p className="muted">None.</p>
        ) : (
          <ul className="chips">
            {f.neighbors.map((n) => (
              <li key={n.index}>
                <Link href={paths.feature(name, n.index, analysis)}>#{n.index}</Link> <span className="muted">{n.cosine.toFixed(3)}</span>
              </li>
            ))}
          </ul>
        )}
      </section>
    </>
  );
}

export function Feature({ name, index, search }: { name: string; index: string; search: URLSearchParams }) {
  const analysis = search.get('analysis') ?? undefined;
  const valid = /^\d+$/.test(index);
  const n = Number(index);
  const detail = useApi(valid ? JSON.stringify([name, n, analysis]) : null, (signal) => api.feature(name, n, analysis, signal));
  if (!valid) return <NotFound message={`“${index}” is not a feature index.`} />;
  return <Await value={detail}>{(f) => <FeatureBody name={name} f={f} analysis={analysis} />}</Await>;
}
