// `/decompositions/:name/components/:index`: one SPD subcomponent (feature `index`: component c of its
// matrix), read top down: its numbers and the norms of its U and V, the inputs or contexts where its
// causal importance is highest (shaded by CI, each with its inner activation x . V_c), the bands,
// the CI histogram, and the subcomponents that fire on the same tokens.
import { useCallback } from 'react';
import { api, type ComponentDetail, type ComponentExample } from '../api';
import { ColorLegend } from '../components/ColorLegend';
import { Histogram } from '../components/Histogram';
import { PrevNext, Stats, usePrevNextKeys } from '../components/PageHead';
import { Await, NotFound } from '../components/Status';
import { ContextView } from '../components/TokenStrip';
import { density, fmt, plural } from '../format';
import { Link, paths } from '../router';
import { useTitle } from '../title';
import { useApi } from '../useApi';

/** One example: the shaded strip (a toy's input is one "token": its features), and the inner activation at the peak. */
function Example({ e, max }: { e: ComponentExample; max: number }) {
  const inner = e.inner?.[e.peak - e.start];
  return (
    <div className="component-example" data-testid="component-example" data-inner={inner ?? ''}>
      <ContextView ctx={e} max={max} />
      {inner !== undefined && <span className="muted small">inner activation x·V = {fmt(inner)}</span>}
    </div>
  );
}

function ComponentBody({ name, c, analysis }: { name: string; c: ComponentDetail; analysis?: string }) {
  const href = useCallback((i: number) => paths.component(name, i, analysis), [name, analysis]);
  usePrevNextKeys(c.prev, c.next, href);
  useTitle(`${c.module} c${c.component} · ${name}`);
  const max = c.max_activation;
  const toy = c.top_contexts.some((e) => e.input);
  const stats: [string, string][] = [
    ['density', density(c.density)],
    ['fired on', plural(c.n_fired, toy ? 'input' : 'token')],
    ['max CI', fmt(max)],
    ['mean CI', fmt(c.mean_activation)],
    ['|U|', fmt(c.u_norm)],
    ['|V|', fmt(c.v_norm)],
    ['|V U| (Frobenius)', fmt(c.decoder_norm)],
  ];
  return (
    <>
      <header className="page-head">
        <h1>
          <Link href={paths.decomposition(name, analysis)}>{name}</Link> / <code data-testid="component-module">{c.module}</code> c
          <span data-testid="component-index">{c.component}</span> <span className="muted small">#{c.index}</span>
        </h1>
        <PrevNext prev={c.prev} next={c.next} href={href} />
      </header>
      <Stats items={stats} testId="component-stats" />
      <section data-testid="top-contexts">
        <h2>{toy ? 'Top inputs' : 'Top contexts'} by causal importance</h2>
        {c.top_contexts.length === 0 ? (
          <p className="muted">This subcomponent never passed the threshold on the analysed {toy ? 'inputs' : 'contexts'}.</p>
        ) : (
          <>
            <ColorLegend max={max} />
            {c.top_contexts.map((e, i) => (
              <Example key={i} e={e} max={max} />
            ))}
          </>
        )}
      </section>
      {c.quantiles.length > 0 && (
        <section data-testid="quantiles">
          <h2>Samples by importance band</h2>
          {[...c.quantiles].reverse().map((q) => (
            <details key={String(q.band)} data-testid="band">
              <summary>
                {fmt(q.low, 2)} – {fmt(q.high, 2)} <span className="muted">({plural(q.n_contexts, toy ? 'input' : 'context')})</span>
              </summary>
              {q.examples.map((e, j) => (
                <Example key={j} e={e} max={max} />
              ))}
            </details>
          ))}
        </section>
      )}
      <div className="columns">
        <section>
          <h2>Causal importance histogram</h2>
          <Histogram testId="activation-histogram" title="Causal importances above the threshold" xLabel="causal importance" yLabel={toy ? 'inputs' : 'tokens'}
            edges={c.histogram.edges} counts={c.histogram.counts} logY />
        </section>
        <section data-testid="coactivations">
          <h2>Fires together with</h2>
          {c.coactivations === null ? (
            <p className="muted">Not counted (the analysis counts co-activations up to 4096 subcomponents).</p>
          ) : c.coactivations.length === 0 ? (
            <p className="muted">No other subcomponent fired on the same {toy ? 'inputs' : 'tokens'}.</p>
          ) : (
            <div className="table-wrap">
              <table>
                <thead>
                  <tr>
                    <th>Subcomponent</th>
                    <th className="num">Together</th>
                    <th className="num" title="P(it fires | this one fires)">P(it | this)</th>
                    <th className="num">Jaccard</th>
                  </tr>
                </thead>
                <tbody>
                  {c.coactivations.map((o) => (
                    <tr key={o.index} data-testid="coactivation" data-index={o.index} data-count={o.count}>
                      <td>
                        <Link href={paths.component(name, o.index, analysis)} data-testid="coactivation-link">
                          <code>{o.module}</code> c{o.component}
                        </Link>
                      </td>
                      <td className="num">{fmt(o.count)}</td>
                      <td className="num">{fmt(o.p, 3)}</td>
                      <td className="num">{fmt(o.jaccard, 3)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </section>
      </div>
    </>
  );
}

export function Component({ name, index, search }: { name: string; index: string; search: URLSearchParams }) {
  const analysis = search.get('analysis') ?? undefined;
  const valid = /^\d+$/.test(index);
  const n = Number(index);
  const detail = useApi(valid ? JSON.stringify([name, n, analysis]) : null, (signal) => api.component(name, n, analysis, signal));
  if (!valid) return <NotFound message={`“${index}” is not a component index.`} />;
  return <Await value={detail}>{(c) => <ComponentBody name={name} c={c} analysis={analysis} />}</Await>;
}
