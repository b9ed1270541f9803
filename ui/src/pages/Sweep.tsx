// `/sweeps/:name`: a sweep's Pareto plots (L0, or an SPD sweep's CI-L0, against each frontier metric)
// and its members' table.
import { useState } from 'react';
import { api, type SweepDetail, type SweepRow } from '../api';
import { ParetoPlot, PlotLegend, baselineMarkers } from '../components/ParetoPlot';
import { Await } from '../components/Status';
import { SweepTable, rowId } from '../components/SweepTable';
import { plural, utc } from '../format';
import { useTitle } from '../title';
import { useApi } from '../useApi';

function SweepBody({ sweep, search }: { sweep: SweepDetail; search: URLSearchParams }) {
  useTitle(`sweep ${sweep.name}`);
  const [selected, setSelected] = useState<string | null>(null);
  const markers = baselineMarkers(sweep.rows);
  const members = sweep.rows.filter((r) => r.kind === 'member');
  const count = (status: SweepRow['status']) => members.filter((r) => r.status === status).length;
  const select = (r: SweepRow) => {
    setSelected(r.name);
    document.getElementById(rowId(r.name))?.scrollIntoView({ block: 'center', behavior: 'smooth' });
  };
  return (
    <>
      <header className="page-head">
        <h1 data-testid="sweep-name">{sweep.name}</h1>
        <span className={`status ${sweep.status}`} data-testid="sweep-status">
          {sweep.status}
        </span>
      </header>
      <p className="muted small">
        {plural(members.length, 'member')}: {count('finished')} finished, {count('failed')} failed
        {count('pending') > 0 && `, ${count('pending')} pending`}; updated {utc(sweep.updated_at)}
        {sweep.output_dir && (
          <>
            {' '}
            · <code className="path">{sweep.output_dir}</code>
          </>
        )}
      </p>
      <h2>Pareto frontiers</h2>
      <PlotLegend markers={markers} />
      <div className="columns">
        {Object.entries(sweep.frontiers).map(([metric, label]) => (
          <section key={metric}>
            <ParetoPlot rows={sweep.rows} metric={metric} label={label} markers={markers} selected={selected} onSelect={select} x={sweep.x} />
          </section>
        ))}
      </div>
      <h2>Members and baselines</h2>
      <p className="muted small">
        Click a column header to sort, a point above to find its row; ★ marks the rows on a Pareto frontier.
      </p>
      <SweepTable sweep={sweep} search={search} selected={selected} />
    </>
  );
}

export function Sweep({ name, search }: { name: string; search: URLSearchParams }) {
  const sweep = useApi(name, (signal) => api.sweep(name, signal));
  return <Await value={sweep}>{(s) => <SweepBody sweep={s} search={search} />}</Await>;
}
