// Search features by the tokens they fire on (`/search`); the query is kept in `?q=`.
import { useState, type FormEvent } from 'react';
import { api } from '../api';
import { density, fmt, plural } from '../format';
import { Link, navigate, paths } from '../router';
import { useApi } from '../useApi';
import { Await } from './Status';
import { SummaryLine } from './SummaryLine';

export function TokenSearch({ name, search }: { name: string; search: URLSearchParams }) {
  const q = search.get('q') ?? '';
  const analysis = search.get('analysis') ?? undefined;
  const [text, setText] = useState(q);
  const result = useApi(q ? JSON.stringify([name, q, analysis]) : null, (signal) =>
    api.search(name, q, 20, analysis, signal),
  );

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const next = new URLSearchParams(search);
    if (text.trim()) next.set('q', text.trim());
    else next.delete('q');
    const s = next.toString();
    navigate(paths.dictionary(name, s ? `?${s}` : ''), { replace: true });
  };

  return (
    <section data-testid="token-search">
      <h2>Find features by token</h2>
      <form className="controls" onSubmit={submit}>
        <label className="grow">
          Token text
          <input type="search" value={text} onChange={(e) => setText(e.target.value)} placeholder="e.g. the" data-testid="token-search-input" />
        </label>
        <button type="submit">Search</button>
      </form>
      {q && (
        <Await value={result}>
          {(data) =>
            data.items.length === 0 ? (
              <p className="muted">No feature fires on “{q}” in its top contexts.</p>
            ) : (
              <ul className="feature-lines" data-testid="token-search-results">
                {data.items.map((it) => (
                  <li key={it.index}>
                    <Link href={paths.feature(name, it.index, analysis)} data-testid="search-link">
                      #{it.index}
                    </Link>{' '}
                    <SummaryLine line={it.summary} />{' '}
                    <span className="muted small nowrap">
                      {plural(it.matches, 'top context')} peak on it · density {density(it.density)} · max {fmt(it.max_activation)}
                    </span>
                  </li>
                ))}
              </ul>
            )
          }
        </Await>
      )}
    </section>
  );
}
