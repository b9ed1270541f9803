// The head of a numbered page (a feature, a subcomponent): previous/next buttons and their keys
// (ArrowLeft/k, ArrowRight/j; not while typing or with a modifier), and the stats row under a title.
import { useEffect } from 'react';
import { Link, navigate } from '../router';

/** ←/k and →/j go to `href(prev)` and `href(next)` (null: none that way). */
export function usePrevNextKeys(prev: number | null, next: number | null, href: (index: number) => string) {
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
      const el = e.target as HTMLElement | null;
      if (el && (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT' || el.isContentEditable)) return;
      const target = e.key === 'ArrowRight' || e.key === 'j' ? next : e.key === 'ArrowLeft' || e.key === 'k' ? prev : undefined;
      if (target === undefined || target === null) return;
      e.preventDefault();
      navigate(href(target));
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [prev, next, href]);
}

export function PrevNext({ prev, next, href }: { prev: number | null; next: number | null; href: (index: number) => string }) {
  return (
    <nav className="actions" data-testid="prev-next" title="Keys: ← / k previous, → / j next">
      {prev !== null ? (
        <Link href={href(prev)} data-testid="prev" className="button">
          ← #{prev}
        </Link>
      ) : (
        <span className="button disabled">←</span>
      )}
      {next !== null ? (
        <Link href={href(next)} data-testid="next" className="button">
          #{next} →
        </Link>
      ) : (
        <span className="button disabled">→</span>
      )}
    </nav>
  );
}

/** A row of named numbers under a page's title. */
export function Stats({ items, testId }: { items: [string, string][]; testId: string }) {
  return (
    <dl className="stats" data-testid={testId}>
      {items.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}
