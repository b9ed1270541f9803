// The filterable, sortable, paginated feature list; all its state lives in the URL query.
import { useState, type FormEvent } from 'react';
import { api, SCORE_NAMES, type FeatureListQuery, type FeatureSort, type ScoreName, type SortOrder } from '../api';
import { density, fmt } from '../format';
import { Link, navigate, paths } from '../router';
import { useApi } from '../useApi';
import { SCORE_HELP } from './Explanation';
import { Await } from './Status';
import { SummaryLine } from './SummaryLine';

const SORTS: FeatureSort[] = ['index', 'density', 'max_activation', ...SCORE_NAMES];
const SHORT: Record<ScoreName, string> = { simulation: 'Sim', detection: 'Det', fuzzing: 'Fuzz' };
const LIMITS = [20, 50, 100, 200];

function num(v: string | null): number | undefined {
  if (v === null || v.trim() === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

export function readQuery(search: URLSearchParams): FeatureListQuery {
  const sort = search.get('sort');
  const order = search.get('order');
  return {
    analysis: search.get('analysis') ?? undefined,
    sort: SORTS.includes(sort as FeatureSort) ? (sort as FeatureSort) : 'index',
    order: order === 'desc' ? 'desc' : 'asc',
    min_density: num(search.get('min_density')),
    max_density: num(search.get('max_density')),
    search: search.get('search') ?? undefined,
    skip: Math.max(0, Math.floor(num(search.get('skip')) ?? 0)),
    limit: LIMITS.includes(num(search.get('limit')) ?? -1) ? num(search.get('limit')) : 50,
  };
}

interface Props {
  name: string;
  search: URLSearchParams;
}

/** A density in the URL (a fraction, as the API takes it) as the percentage typed in the filter, and back. */
const toPercent = (fraction: string | null) => (num(fraction) === undefined ? '' : String(Number((num(fraction)! * 100).toPrecision(6))));
const toFraction = (percent: string) => (num(percent) === undefined ? '' : String(num(percent)! / 100));

export function FeatureTable({ name, search }: Props) {
  const q = readQuery(search);
  const key = JSON.stringify([name, q]);
  const page = useApi(key, (signal) => api.features(name, q, signal));
  const [minDensity, setMinDensity] = useState(toPercent(search.get('min_density')));
  const [maxDensity, setMaxDensity] = useState(toPercent(search.get('max_density')));
  const [text, setText] = useState(search.get('search') ?? '');

  // Write changed keys into the URL; any filter change returns to the first page.
  const update = (changes: Record<string, string | number | undefined>, resetSkip = true) => {
    const next = new URLSearchParams(search);
    for (const [k, v] of Object.entries(changes)) {
      if (v === undefined || v === '') next.delete(k);
      else next.set(k, String(v));
    }
    if (resetSkip) next.delete('skip');
    const s = next.toString();
    navigate(paths.dictionary(name, s ? `?${s}` : ''));
  };

  const applyFilters = (e: FormEvent) => {
    e.preventDefault();
    update({ min_density: toFraction(minDensity), max_density: toFraction(maxDensity), search: text.trim() });
  };

  const skip = q.skip ?? 0;
  const limit = q.limit ?? 50;
  // A score header sorts by it, best first; clicking it again flips the order.
  const sortBy = (s: ScoreName) => update({ sort: s, order: q.sort === s && q.order === 'desc' ? 'asc' : 'desc' });

  return (
    <section data-testid="feature-list">
      <h2>Features</h2>
      <form className="controls" onSubmit={applyFilters}>
        <label>
          Sort
          <select value={q.sort} onChange={(e) => update({ sort: e.target.value })} data-testid="sort">
            <option value="index">index</option>
            <option value="density">density</option>
            <option value="max_activation">max activation</option>
            {SCORE_NAMES.map((s) => (
              <option key={s} value={s}>
                {s} score
              </option>
            ))}
          </select>
        </label>
        <label>
          Order
          <select value={q.order} onChange={(e) => update({ order: e.target.value as SortOrder })} data-testid="order">
            <option value="asc">ascending</option>
            <option value="desc">descending</option>
          </select>
        </label>
        <label>
          Min density (%)
          <input
            inputMode="decimal"
            placeholder="e.g. 0.01"
            value={minDensity}
            onChange={(e) => setMinDensity(e.target.value)}
            data-testid="min-density"
          />
        </label>
        <label>
          Max density (%)
          <input inputMode="decimal" placeholder="e.g. 10" value={maxDensity} onChange={(e) => setMaxDensity(e.target.value)} />
        </label>
        <label className="grow">
          Interpretation or explanation contains
          <input type="search" value={text} onChange={(e) => setText(e.target.value)} data-testid="interp-search" />
        </label>
        <button type="submit">Apply</button>
      </form>
      <Await value={page}>
        {(data) => (
          <>
            <div className="table-wrap">
              <table data-testid="features">
                <thead>
                  <tr>
                    <th className="num">#</th>
                    <th>Summary</th>
                    <th className="num">Density</th>
                    <th className="num">Max act</th>
                    {SCORE_NAMES.map((s) => (
                      <th key={s} className="num" aria-sort={q.sort === s ? (q.order === 'desc' ? 'descending' : 'ascending') : undefined}>
                        <button type="button" className="sort" onClick={() => sortBy(s)} data-testid={`sort-score-${s}`} title={`sort by ${s} score: ${SCORE_HELP[s]}`}>
                          {SHORT[s]}
                          {q.sort === s ? (q.order === 'desc' ? ' ▼' : ' ▲') : ''}
                        </button>
                      </th>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {data.items.map((f) => (
                    <tr key={f.index}>
                      <td className="num">
                        <Link href={paths.feature(name, f.index, q.analysis)} data-testid="feature-link">
                          {f.index}
                        </Link>
                      </td>
                      <td className="summary-cell">
                        <SummaryLine line={f.summary} />
                      </td>
                      <td className="num">{density(f.density)}</td>
                      <td className="num">{fmt(f.max_activation)}</td>
                      {SCORE_NAMES.map((s) => (
                        <td key={s} className="num" data-testid={`score-${s}`} data-value={f.explanation?.scores[s] ?? ''}>
                          {fmt(f.explanation?.scores[s], 2)}
                        </td>
                      ))}
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            {data.items.length === 0 && <p className="muted">No features match.</p>}
            <nav className="pager" data-testid="pager">
              <button disabled={skip === 0} onClick={() => update({ skip: Math.max(0, skip - limit) || undefined }, false)}>
                ← Previous
              </button>
              <span data-testid="page-info">
                {data.total === 0 ? 0 : skip + 1}–{skip + data.items.length} of {data.total.toLocaleString('en-US')}
              </span>
              <button
                disabled={skip + limit >= data.total}
                onClick={() => update({ skip: skip + limit }, false)}
                data-testid="next-page"
              >
                Next →
              </button>
              <label>
                Per page
                <select value={limit} onChange={(e) => update({ limit: e.target.value })}>
                  {LIMITS.map((l) => (
                    <option key={l} value={l}>
                      {l}
                    </option>
                  ))}
                </select>
              </label>
            </nav>
          </>
        )}
      </Await>
    </section>
  );
}
