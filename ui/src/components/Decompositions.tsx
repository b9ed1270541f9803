// The home page's table of SPD decompositions (stored beside the dictionaries, kind 'decomposition').
import type { DictionarySummary } from '../api';
import { fmt, num } from '../format';
import { Link, paths } from '../router';

export function Decompositions({ list }: { list: DictionarySummary[] }) {
  return (
    <section data-testid="decompositions-section">
      <h2>SPD decompositions</h2>
      <div className="table-wrap">
        <table data-testid="decompositions">
          <thead>
            <tr>
              <th>Name</th>
              <th>Matrices</th>
              <th className="num">Subcomponents</th>
              <th className="num">Live</th>
              <th className="num">CI-L0</th>
            </tr>
          </thead>
          <tbody>
            {list.map((d) => (
              <tr key={d.name}>
                <td>
                  <Link href={paths.decomposition(d.name)} data-testid="decomposition-link">
                    {d.name}
                  </Link>
                </td>
                <td className="small">{d.modules.map((m) => m.name).join(', ')}</td>
                <td className="num">{fmt(d.d_sae)}</td>
                <td className="num">{fmt(d.modules.reduce((n, m) => n + m.live, 0))}</td>
                <td className="num">{fmt(num(d.metrics.eval?.ci_l0_total), 3)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
