// `/`: every dictionary the server knows, with headline metrics.
import { api, type DictionarySummary } from '../api';
import { Await } from '../components/Status';
import { fmt, pct } from '../format';
import { Link, paths } from '../router';
import { useApi } from '../useApi';

function metric(d: DictionarySummary, key: string): number | undefined {
  const v = d.metrics?.eval?.[key] ?? d.metrics?.final_batch?.[key];
  return typeof v === 'number' ? v : undefined;
}

export function Home() {
  const list = useApi('dictionaries', (signal) => api.dictionaries(signal));
  return (
    <>
      <h1>Dictionaries</h1>
      <Await value={list}>
        {(dicts) =>
          dicts.length === 0 ? (
            <p className="muted" data-testid="empty">
              No dictionaries yet. Train one and save it to the store, then reload.
            </p>
          ) : (
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
          )
        }
      </Await>
    </>
  );
}
