// The route table: each named URL pattern of routes.json maps to one page in src/pages. The server
// reads the same routes.json (from the build) to answer 404 for any other path.
import type { ReactNode } from 'react';
import { NotFound } from './components/Status';
import { Component } from './pages/Component';
import { Decomposition } from './pages/Decomposition';
import { Dictionary } from './pages/Dictionary';
import { Feature } from './pages/Feature';
import { Home } from './pages/Home';
import { Infer } from './pages/Infer';
import { Sweep } from './pages/Sweep';
import { Link, matchPath, useLocation } from './router';
import ROUTES from './routes.json';

type Page = (params: Record<string, string>, search: URLSearchParams) => ReactNode;

const PAGES: Record<keyof typeof ROUTES, Page> = {
  home: () => <Home />,
  dictionary: (p, s) => <Dictionary key={p.name} name={p.name} search={s} />,
  feature: (p, s) => <Feature name={p.name} index={p.index} search={s} />,
  infer: (p, s) => <Infer key={p.name} name={p.name} search={s} />,
  sweep: (p, s) => <Sweep key={p.name} name={p.name} search={s} />,
  decomposition: (p, s) => <Decomposition key={p.name} name={p.name} search={s} />,
  component: (p, s) => <Component name={p.name} index={p.index} search={s} />,
};

export function App() {
  const { pathname, search } = useLocation();
  let page: ReactNode = <NotFound />;
  for (const [name, pattern] of Object.entries(ROUTES) as [keyof typeof ROUTES, string][]) {
    const params = matchPath(pattern, pathname);
    if (params) {
      page = PAGES[name](params, search);
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
