// A sweep's members and baselines, one row each, sorted by the column in the URL (?sort=&order=).
import type { ReactNode } from 'react';
import type { SweepDetail, SweepRow } from '../api';
import { fmt } from '../format';
import { xLabel } from './ParetoPlot';
import { Link, navigate, paths } from '../router';

type Value = number | string | undefined;

interface Column {
  /** The `sort` value in the URL: a fixed name, `params.<field>` or `metrics.<metric>`. */
  key: string;
  label: string;
  num?: boolean;
  value: (r: SweepRow) => Value;
  cell: (r: SweepRow) => ReactNode;
}

/** A metric column's header: its plot label when it has one. */
function metricLabel(sweep: SweepDetail, metric: string): string {
  return metric === 'l0' || metric === sweep.x ? xLabel(metric) : (sweep.frontiers[metric] ?? metric.replace(/_/g, ' '));
}

/** Missing values sort last in either order; ties keep the record's order. */
function sortRows(rows: SweepRow[], value: (r: SweepRow) => Value, desc: boolean): SweepRow[] {
  const cmp = (a: Value, b: Value) =>
    typeof a === 'number' && typeof b === 'number' ? a - b : String(a).localeCompare(String(b), 'en');
  return rows
    .map((r, i) => ({ r, i, v: value(r) }))
    .sort((a, b) => {
      if (a.v === undefined || b.v === undefined) return (a.v === undefined ? 1 : 0) - (b.v === undefined ? 1 : 0) || a.i - b.i;
      return (desc ? -cmp(a.v, b.v) : cmp(a.v, b.v)) || a.i - b.i;
    })
    .map(({ r }) => r);
}

/** The member's directory, relative to the sweep's when inside it (the header shows that one). */
function shortDir(dir: string, root: string | null): string {
  const base = root?.replace(/\/+$/, '');
  return base && dir.startsWith(`${base}/`) ? dir.slice(base.length + 1) : dir;
}

/** The name, linked to the dictionary when analyzed; under it the error, or how to analyze it. */
function NameCell({ r, root }: { r: SweepRow; root: string | null }) {
  if (r.analyzed && r.dictionary) {
    const [href, what] = r.decomposition ? [paths.decomposition(r.dictionary), 'decomposition'] : [paths.dictionary(r.dictionary), 'dictionary'];
    return (
      <Link href={href} title={`browse the ${what} ${r.dictionary}`} data-testid="row-name">
        {r.name}
      </Link>
    );
  }
  const name = <span data-testid="row-name">{r.name}</span>;
  if (r.error) {
    return (
      <>
        {name}
        <div className="row-error small" data-testid="row-error">
          {r.error}
        </div>
      </>
    );
  }
  if (r.kind !== 'member' || r.status !== 'finished' || !r.dictionary_dir) return name;
  return (
    <>
      {name}
      <div className="hint small muted" data-testid="analyze-hint" title={`lm-saes analyze --set dictionary=${r.dictionary_dir}`}>
        <code className="path">{shortDir(r.dictionary_dir, root)}</code>
        <br />
        run <code>lm-saes analyze</code> on it to browse its features
      </div>
    </>
  );
}

function columns(sweep: SweepDetail): Column[] {
  const labels = (r: SweepRow) => r.frontier.map((m) => sweep.frontiers[m] ?? m).join(', ');
  return [
    {
      key: 'frontier', label: '★', value: (r) => r.frontier.length,
      cell: (r) => r.frontier.length > 0 && (
        <span className="star" title={`on the Pareto frontier of ${xLabel(sweep.x)} against ${labels(r)}`} data-testid="frontier">★</span>
      ),
    },
    { key: 'name', label: 'Name', value: (r) => r.name, cell: (r) => <NameCell r={r} root={sweep.output_dir} /> },
    { key: 'kind', label: 'Kind', value: (r) => r.kind, cell: (r) => r.kind },
    { key: 'variant', label: 'Variant', value: (r) => r.variant ?? undefined, cell: (r) => r.variant ?? '—' },
    ...sweep.varied.map((field): Column => ({
      key: `params.${field}`, label: field, num: true,
      value: (r) => (typeof r.params[field] === 'boolean' ? String(r.params[field]) : (r.params[field] as Value)),
      cell: (r) => (field in r.params ? String(r.params[field]) : '—'),
    })),
    ...sweep.metrics.map((metric): Column => ({
      key: `metrics.${metric}`, label: metricLabel(sweep, metric), num: true, value: (r) => r.metrics[metric],
      cell: (r) => (
        <span data-testid="metric" data-metric={metric} data-value={r.metrics[metric] ?? ''}>
          {fmt(r.metrics[metric], 4)}
        </span>
      ),
    })),
    {
      key: 'status', label: 'Status', value: (r) => r.status,
      cell: (r) => (
        <span className={`status ${r.status}`} data-testid="row-status">
          {r.status}
        </span>
      ),
    },
  ];
}

export const rowId = (name: string) => `sweep-row-${name}`;

/** A header that may wrap after each '.' or '_' of a field name, so long names stay narrow. */
function Breakable({ text }: { text: string }) {
  const parts = text.split(/(?<=[._])/);
  return parts.map((part, i) => (
    <span key={i}>
      {part}
      {i < parts.length - 1 && <wbr />}
    </span>
  ));
}

interface Props {
  sweep: SweepDetail;
  search: URLSearchParams;
  selected: string | null;
}

export function SweepTable({ sweep, search, selected }: Props) {
  const cols = columns(sweep);
  const sortBy = cols.find((c) => c.key === search.get('sort'));
  const desc = search.get('order') === 'desc';
  const rows = sortBy ? sortRows(sweep.rows, sortBy.value, desc) : sweep.rows;

  // Clicking the sorted column flips its order; another column sorts ascending.
  const sort = (key: string) => {
    const next = new URLSearchParams(search);
    next.set('sort', key);
    next.set('order', sortBy?.key === key && !desc ? 'desc' : 'asc');
    navigate(paths.sweep(sweep.name, `?${next}`));
  };

  return (
    <div className="table-wrap">
      <table className="sweep-table" data-testid="sweep-table">
        <thead>
          <tr>
            {cols.map((c) => (
              <th
                key={c.key}
                className={c.num ? 'num' : undefined}
                aria-sort={sortBy?.key === c.key ? (desc ? 'descending' : 'ascending') : undefined}
              >
                <button className="sort" onClick={() => sort(c.key)} data-testid={`sort-${c.key}`} title={`sort by ${c.label}`}>
                  <Breakable text={c.label} />
                  {sortBy?.key === c.key ? (desc ? ' ▼' : ' ▲') : ''}
                </button>
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr
              key={r.name}
              id={rowId(r.name)}
              className={`${r.kind}${r.name === selected ? ' selected' : ''}`}
              data-testid="sweep-row"
              data-name={r.name}
              data-kind={r.kind}
            >
              {cols.map((c) => (
                <td key={c.key} className={c.num ? 'num' : undefined}>
                  {c.cell(r)}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
