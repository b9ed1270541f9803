// `/decompositions/:name`: an SPD decomposition: its target and settings, each decomposed matrix with
// its CI-L0 and metrics, the plane of a 2-d matrix (TMS 5-2: the pentagon and the subcomponents on
// it), live inference for a language model's (SpdInfer), each matrix's subcomponents densest first,
// and the training metrics.
import { api, type DecompositionDetail, type ModuleDetail } from '../api';
import { PlanePlot } from '../components/PlanePlot';
import { Stats } from '../components/PageHead';
import { SpdInfer } from '../components/SpdInfer';
import { Await } from '../components/Status';
import { density, fmt, num, plural } from '../format';
import { Link, paths } from '../router';
import { useTitle } from '../title';
import { useApi } from '../useApi';

const MODULE_METRICS = ['ci_l0', 'alive', 'mmcs', 'ml2r', 'identity_ci_error'] as const;

/** Scalar metrics of one record as name/value rows (nested dicts are left out). */
function MetricTable({ values, testId }: { values: Record<string, unknown> | undefined; testId: string }) {
  const rows = Object.entries(values ?? {}).filter(([, v]) => typeof v === 'number' || typeof v === 'string');
  if (rows.length === 0) return <p className="muted">None recorded.</p>;
  return (
    <div className="table-wrap">
      <table data-testid={testId}>
        <tbody>
          {rows.map(([k, v]) => (
            <tr key={k}>
              <td>
                <code>{k}</code>
              </td>
              <td className="num">{typeof v === 'number' ? fmt(v, 4) : String(v)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Modules({ d }: { d: DecompositionDetail }) {
  return (
    <div className="table-wrap">
      <table data-testid="modules">
        <thead>
          <tr>
            <th>Matrix</th>
            <th>Kind</th>
            <th className="num">Shape</th>
            <th className="num">C</th>
            <th className="num">Live</th>
            <th className="num">CI-L0</th>
            <th className="num">Alive (eval)</th>
            <th className="num">MMCS</th>
            <th className="num">ML2R</th>
          </tr>
        </thead>
        <tbody>
          {d.modules.map((m) => (
            <tr key={m.name} data-testid="module-row" data-module={m.name}>
              <td>
                <a href={`#module-${m.name}`}>
                  <code>{m.name}</code>
                </a>
                {m.tied_to && <span className="muted small"> (tied to {m.tied_to})</span>}
              </td>
              <td>{m.kind}</td>
              <td className="num">
                {m.d_in} × {m.d_out}
              </td>
              <td className="num">{fmt(m.C)}</td>
              <td className="num" data-testid="module-live">
                {fmt(m.live)}
              </td>
              <td className="num" data-testid="module-ci-l0">
                {fmt(num(m.metrics.ci_l0), 3)}
              </td>
              {MODULE_METRICS.slice(1, 4).map((k) => (
                <td key={k} className="num">
                  {fmt(num(m.metrics[k]), 4)}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Components({ name, m, analysis }: { name: string; m: ModuleDetail; analysis?: string }) {
  const fired = m.components.filter((c) => (c.n_fired ?? 0) > 0);
  const quiet = m.components.length - fired.length;
  return (
    <section id={`module-${m.name}`} data-testid="module-components" data-module={m.name}>
      <h2>
        <code>{m.name}</code> <span className="muted small">{plural(fired.length, 'live subcomponent')} of {m.C}, densest first</span>
      </h2>
      {m.components.length === 0 ? (
        <p className="muted">Not analysed (run lm-saes analyze).</p>
      ) : fired.length === 0 ? null : (
        <div className="table-wrap">
          <table data-testid="components">
            <thead>
              <tr>
                <th>Component</th>
                <th className="num">Density</th>
                <th className="num">Max CI</th>
                <th className="num">Mean CI</th>
                <th className="num">|U|</th>
                <th className="num">|V|</th>
                <th className="num">|V U|</th>
              </tr>
            </thead>
            <tbody>
              {fired.map((c) => (
                <tr key={c.index} data-testid="component-row" data-index={c.index} data-density={c.density}>
                  <td>
                    <Link href={paths.component(name, c.index, analysis)} data-testid="component-link">
                      c{c.component}
                    </Link>{' '}
                    <span className="muted small">#{c.index}</span>
                  </td>
                  <td className="num">{density(c.density)}</td>
                  <td className="num">{fmt(c.max_activation)}</td>
                  <td className="num">{fmt(c.mean_activation)}</td>
                  <td className="num">{fmt(c.u_norm)}</td>
                  <td className="num">{fmt(c.v_norm)}</td>
                  <td className="num">{fmt(c.decoder_norm)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {quiet > 0 && <p className="muted small" data-testid="quiet">{plural(quiet, 'other subcomponent')} never passed the threshold.</p>}
    </section>
  );
}

function DecompositionBody({ name, d, analysis }: { name: string; d: DecompositionDetail; analysis?: string }) {
  useTitle(`${name} · decomposition`);
  const target = d.source as { kind?: string; path?: string; model?: { name?: string } };
  const targetName = target.path ?? target.model?.name ?? '?';
  const planes = d.modules.filter((m) => m.plane);
  const evalMetrics = d.metrics.eval as Record<string, unknown> | undefined;
  const stats: [string, string][] = [
    ['target', `${target.kind ?? ''} ${targetName.split('/').pop()}`],
    ['matrices', fmt(d.modules.length)],
    ['subcomponents', fmt(d.d_sae)],
    ['live', fmt(d.modules.reduce((n, m) => n + m.live, 0))],
    ['CI-L0 (total)', fmt(num(evalMetrics?.ci_l0_total), 3)],
    ['CI threshold', fmt(d.ci_threshold)],
    ['analysed on', d.analysis ? plural(d.analysis.n_contexts, d.analysis.n_contexts === d.analysis.n_tokens ? 'input' : 'context') : 'not analysed'],
  ];
  return (
    <>
      <header className="page-head">
        <h1>
          <span data-testid="decomposition-name">{name}</span> <span className="muted small">SPD decomposition</span>
        </h1>
      </header>
      <Stats items={stats} testId="decomposition-stats" />
      <section>
        <h2>Decomposed matrices</h2>
        <Modules d={d} />
      </section>
      {planes.length > 0 && (
        <section data-testid="planes-section">
          <h2>Directions in the 2-d plane</h2>
          <div className="planes">
            {planes.map((m) => (
              <PlanePlot key={m.name} module={m.name} plane={m.plane!} components={m.components} />
            ))}
          </div>
        </section>
      )}
      {target.kind === 'language_model' && <SpdInfer name={name} modules={d.modules} analysis={analysis} />}
      {d.modules.map((m) => (
        <Components key={m.name} name={name} m={m} analysis={analysis} />
      ))}
      <div className="columns">
        <section>
          <h2>Evaluation</h2>
          <MetricTable values={evalMetrics} testId="eval-metrics" />
        </section>
        <section>
          <h2>Last training batch</h2>
          <MetricTable values={d.metrics.final_batch as Record<string, unknown> | undefined} testId="train-metrics" />
        </section>
      </div>
      <details>
        <summary>SPD settings</summary>
        <MetricTable values={d.config} testId="spd-config" />
      </details>
    </>
  );
}

export function Decomposition({ name, search }: { name: string; search: URLSearchParams }) {
  const analysis = search.get('analysis') ?? undefined;
  const detail = useApi(JSON.stringify([name, analysis]), (signal) => api.decomposition(name, analysis, signal));
  return <Await value={detail}>{(d) => <DecompositionBody name={name} d={d} analysis={analysis} />}</Await>;
}
