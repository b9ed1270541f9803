// `/dictionaries/:name/features/:index`: one feature, read top down: its summary line and numbers,
// its top contexts (above the fold on a phone), test on your text, steering, activation bands,
// histogram, logits, nearest features, and its explanation's scores and records.
import { useCallback } from 'react';
import { api, type FeatureDetail, type LogitEntry } from '../api';
import { ColorLegend } from '../components/ColorLegend';
import { ExplanationPanel } from '../components/Explanation';
import { Histogram } from '../components/Histogram';
import { PrevNext, Stats, usePrevNextKeys } from '../components/PageHead';
import { Await, NotFound } from '../components/Status';
import { SteerPanel } from '../components/Steer';
import { SummaryLine } from '../components/SummaryLine';
import { ContextView } from '../components/TokenStrip';
import { TryText } from '../components/TryText';
import { density, fmt, plural } from '../format';
import { Link, paths } from '../router';
import { useTitle } from '../title';
import { shownToken } from '../tokens';
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
            {items.map((l) => {
              const shown = shownToken(l.token);
              return (
                <tr key={l.token_id}>
                  <td>
                    <code className={shown.glyph ? 'glyph' : undefined} data-testid="logit-token">
                      {shown.text}
                    </code>{' '}
                    <span className="muted small">#{l.token_id}</span>
                  </td>
                  <td className="num">{fmt(l.value)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </div>
  );
}

/** Bands from the strongest down; the first that holds examples is open. */
function Bands({ f }: { f: FeatureDetail }) {
  const bands = [...f.quantiles].reverse();
  const open = bands.findIndex((q) => q.examples.length > 0);
  return (
    <section data-testid="quantiles">
      <h2>Samples by activation band</h2>
      {bands.map((q, i) => (
        <details key={String(q.band)} open={i === open} data-testid="band" data-examples={q.examples.length}>
          <summary>
            {fmt(q.low, 2)} – {fmt(q.high, 2)} <span className="muted">({plural(q.n_contexts, 'context')})</span>
          </summary>
          {q.examples.length === 0 ? <p className="muted small">No context peaks in this band.</p> : q.examples.map((c, j) => <ContextView key={j} ctx={c} max={f.max_activation} />)}
        </details>
      ))}
    </section>
  );
}

function FeatureBody({ name, f, analysis }: { name: string; f: FeatureDetail; analysis?: string }) {
  const href = useCallback((i: number) => paths.feature(name, i, analysis), [name, analysis]);
  usePrevNextKeys(f.prev, f.next, href);
  useTitle(`feature ${f.index} · ${name}`);
  const max = f.max_activation;
  const stats: [string, string][] = [
    ['density', density(f.density)],
    ['fired on', plural(f.n_fired, 'token')],
    ['in', plural(f.n_contexts, 'context')],
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
        <PrevNext prev={f.prev} next={f.next} href={href} />
      </header>
      <p className="feature-summary">
        <SummaryLine line={f.summary} />
      </p>
      <Stats items={stats} testId="feature-stats" />
      <section data-testid="top-contexts">
        <h2>Top activating contexts</h2>
        {f.top_contexts.length === 0 ? (
          <p className="muted">This feature never fired in the analysed contexts.</p>
        ) : (
          <>
            <ColorLegend max={max} />
            {f.top_contexts.map((c, i) => (
              <ContextView key={i} ctx={c} max={max} />
            ))}
          </>
        )}
      </section>
      <TryText name={name} index={f.index} max={max} analysis={analysis} />
      <SteerPanel key={f.index} name={name} index={f.index} max={max} />
      {f.quantiles.length > 0 && <Bands f={f} />}
      <div className="columns">
        <section>
          <h2>Activation histogram</h2>
          <Histogram testId="activation-histogram" title="Non-zero activations" xLabel="activation" yLabel="tokens" edges={f.histogram.edges} counts={f.histogram.counts} logY />
        </section>
        <section className="logit-pair">
          <Logits title="Top positive logits" items={f.logits.positive} testId="logits-positive" />
          <Logits title="Top negative logits" items={f.logits.negative} testId="logits-negative" />
        </section>
      </div>
      <section data-testid="neighbors">
        <h2>Nearest features (decoder cosine)</h2>
        {f.neighbors.length === 0 ? (
          <p className="muted">None.</p>
        ) : (
          <ul className="feature-lines">
            {f.neighbors.map((n) => (
              <li key={n.index}>
                <Link href={paths.feature(name, n.index, analysis)} data-testid="neighbor-link">
                  #{n.index}
                </Link>{' '}
                <span className="muted num">{fmt(n.cosine)}</span> <SummaryLine line={n.summary} />
              </li>
            ))}
          </ul>
        )}
      </section>
      <section>
        <h2>Explanation and scores</h2>
        <ExplanationPanel name={name} index={f.index} analysis={analysis} shown={f.explanation} />
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
