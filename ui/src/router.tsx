// A tiny history-API router: path patterns like `/dictionaries/:name`, <Link>, navigate().
import { useEffect, useState, type AnchorHTMLAttributes, type MouseEvent } from 'react';

const NAV_EVENT = 'lm-saes:navigate';

export interface Location {
  pathname: string;
  search: URLSearchParams;
}

function current(): Location {
  return { pathname: window.location.pathname, search: new URLSearchParams(window.location.search) };
}

export function navigate(to: string, opts: { replace?: boolean } = {}): void {
  if (to === window.location.pathname + window.location.search) return;
  if (opts.replace) window.history.replaceState(null, '', to);
  else window.history.pushState(null, '', to);
  window.dispatchEvent(new Event(NAV_EVENT));
}

export function useLocation(): Location {
  const [loc, setLoc] = useState(current);
  useEffect(() => {
    const update = () => setLoc(current());
    window.addEventListener('popstate', update);
    window.addEventListener(NAV_EVENT, update);
    return () => {
      window.removeEventListener('popstate', update);
      window.removeEventListener(NAV_EVENT, update);
    };
  }, []);
  return loc;
}

/** Match `/a/:x/b` against a pathname; returns decoded params or null. */
export function matchPath(pattern: string, pathname: string): Record<string, string> | null {
  const p = pattern.split('/').filter(Boolean);
  const s = pathname.replace(/\/+$/, '').split('/').filter(Boolean);
  if (p.length !== s.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < p.length; i++) {
    if (p[i].startsWith(':')) {
      try {
        params[p[i].slice(1)] = decodeURIComponent(s[i]);
      } catch {
        return null;
      }
    } else if (p[i] !== s[i]) {
      return null;
    }
  }
  return params;
}

export function Link({ href, onClick, ...rest }: AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }) {
  const handle = (e: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(e);
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
    window.scrollTo(0, 0);
  };
  return <a href={href} onClick={handle} {...rest} />;
}

/** URL builders, so every page links the same way. */
export const paths = {
  home: () => '/',
  dictionary: (name: string, query = '') => `/dictionaries/${encodeURIComponent(name)}${query}`,
  feature: (name: string, index: number, analysis?: string) =>
    `/dictionaries/${encodeURIComponent(name)}/features/${index}` +
    (analysis && analysis !== 'default' ? `?analysis=${encodeURIComponent(analysis)}` : ''),
  infer: (name: string) => `/dictionaries/${encodeURIComponent(name)}/infer`,
  decomposition: (name: string, analysis?: string) =>
    `/decompositions/${encodeURIComponent(name)}` + (analysis && analysis !== 'default' ? `?analysis=${encodeURIComponent(analysis)}` : ''),
  component: (name: string, index: number, analysis?: string) =>
    `/decompositions/${encodeURIComponent(name)}/components/${index}` +
    (analysis && analysis !== 'default' ? `?analysis=${encodeURIComponent(analysis)}` : ''),
  sweep: (name: string, query = '') => `/sweeps/${encodeURIComponent(name)}${query}`,
};
