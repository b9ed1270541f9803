// `/`: every dictionary the server knows, with headline metrics, then the SPD decompositions and the
// sweeps (when there are any).
import { api, type DictionarySummary } from '../api';
import { Decompositions } from '../components/Decompositions';
import { Await } from '../components/Status';
import { fmt, pct, utc } from '../format';
import { Link, paths } from '../router';
import { useTitle } from '../title';
import { useApi } from '../useApi';

function metric(d: DictionarySummary, key: string): number | undefined {
  const v = d.metrics?.eval?.[key] ?? d.metrics?.final_batch?.[key];
  return typeof v === 'number' ? v : undefined;
}

/** The stored sweeps; nothing at all while loading or when there are none. */
function Sweeps() {
  const list = useApi('sweeps', (signal) => api.sweeps(signal));
  if (list.state === 'loading' || (list.state === 'ready' && list.data.length === 0)) return null;
  if (list.state === 'error') {
    return list.error.status === 404 ? null : (
      <p className="inline-error" role="alert" data-testid="sweeps-error">
        Sweeps could not be loaded: {list.error.status === 503 ? 'database unavailable' : list.error.message}
      </p>
    );
  }
  return (
    <section data-testid="sweeps-section">
      <h2>Sweeps</h2>
      <div className="table-wrap">
        <table data-testid="sweeps">
          <thead>
            <tr>
              <th>Name</th>
              <th>Status</th>
              <th className="num">Members</th>
              <th className="num">Finished</th>
              <th className="num">Failed</th>
              <th>Updated</th>
            </tr>
          </thead>
          <tbody>
            {list.data.map((s) => (
              <tr key={s.name}>
                <td>
                  <Link href={paths.sweep(s.name)} data-testid="sweep-link">
                    {s.name}
                  </Link>
                </td>
                <td>
                  <span className={`status ${s.status}`}>{s.status}</span>
                </td>
                <td className="num">{fmt(s.n_members)}</td>
                <td className="num">{fmt(s.n_finished)}</td>
                <td className="num">{fmt(s.n_failed)}</td>
                <td>{utc(s.updated_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function Dictionaries({ dicts }: { dicts: DictionarySummary[] }) {
  if (dicts.length === 0) {
    return (
      <p className="muted" data-testid="empty">
        No dictionaries yet. Train one and save it to the store, then reload.
      </p>
    );
  }
  return (
    <div className="table-wrap">
      <table data-testid="dictionaries">
        <thead>
          <tr>
            <th>Name</th>
            <th>Kind</th>
            <th className="num">d_sae</th>
            <th className="num">EV</th>
            <th className="num">L0</th>
            <th className="num">CE recovered</th>
          </tr>
        </thead>
        <tbody>
          {dicts.map((d) => (
            <tr key={d.name}>
              <td>
                <Link href={paths.dictionary(d.name)} data-testid="dictionary-link">
                  {d.name}
                </Link>
              </td>
              <td>{d.kind}</td>
              <td className="num">{fmt(d.d_sae)}</td>
              <td className="num">{pct(metric(d, 'explained_variance'))}</td>
              <td className="num">{fmt(metric(d, 'l0'), 1)}</td>
              <td className="num">{pct(metric(d, 'ce_loss_recovered'))}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function Home() {
  useTitle('dictionaries');
  const list = useApi('dictionaries', (signal) => api.dictionaries(signal));
  return (
    <>
      <h1>Dictionaries</h1>
      <Await value={list}>
        {(all) => {
          const spds = all.filter((d) => d.kind === 'decomposition');
          return (
            <>
              <Dictionaries dicts={all.filter((d) => d.kind !== 'decomposition')} />
              {spds.length > 0 && <Decompositions list={spds} />}
            </>
          );
        }}
      </Await>
      <Sweeps />
    </>
  );
}
