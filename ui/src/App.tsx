// The route table: each URL pattern maps to one page in src/pages.
import type { ReactNode } from 'react';
import { NotFound } from './components/Status';
import { Dictionary } from './pages/Dictionary';
import { Feature } from './pages/Feature';
import { Home } from './pages/Home';
import { Infer } from './pages/Infer';
import { Sweep } from './pages/Sweep';
import { Link, matchPath, useLocation } from './router';

type Page = (params: Record<string, string>, search: URLSearchParams) => ReactNode;

const ROUTES: [string, Page][] = [
  ['/', () => <Home />],
  ['/dictionaries/:name', (p, s) => <Dictionary key={p.name} name={p.name} search={s} />],
  ['/dictionaries/:name/features/:index', (p, s) => <Feature name={p.name} index={p.index} search={s} />],
  ['/dictionaries/:name/infer', (p, s) => <Infer key={p.name} name={p.name} search={s} />],
  ['/sweeps/:name', (p, s) => <Sweep key={p.name} name={p.name} search={s} />],
];

export function App() {
  const { pathname, search } = useLocation();
  let page: ReactNode = <NotFound />;
  for (const [pattern, render] of ROUTES) {
    const params = matchPath(pattern, pathname);
    if (params) {
      page = render(params, search);
      break;
    }
  }
  return (
    <>
      <nav className="topbar">
        <Link href="/" className="brand">
          lm-saes
        </Link>
        <span className="muted">sparse dictionary browser</span>
      </nav>
      <main>{page}</main>
    </>
  );
}
