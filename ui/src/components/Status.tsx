// Loading, error and not-found views shared by every page.
import type { ReactNode } from 'react';
import type { ApiError } from '../api';
import type { Loadable } from '../useApi';
import { Link } from '../router';
import { useTitle } from '../title';

export function Loading({ what = 'Loading' }: { what?: string }) {
  return (
    <p className="muted" data-testid="loading" role="status">
      {what}…
    </p>
  );
}

export function NotFound({ message }: { message?: string }) {
  useTitle('not found');
  return (
    <section data-testid="not-found" className="notice">
      <h1>404 — not found</h1>
      <p>{message ?? 'There is no page at this address.'}</p>
      <p>
        <Link href="/">Back to all dictionaries</Link>
      </p>
    </section>
  );
}

export function ErrorView({ error }: { error: ApiError }) {
  if (error.status === 404) return <NotFound message={error.message.replace(/^404 /, '')} />;
  if (error.status === 503) {
    return (
      <section data-testid="db-unavailable" className="notice error">
        <h1>Database unavailable</h1>
        <p>The server cannot reach its database right now ({error.message}). Try again shortly.</p>
      </section>
    );
  }
  return (
    <section data-testid="error" className="notice error" role="alert">
      <h1>Something went wrong</h1>
      <p>{error.status === 0 ? error.message : `The server answered ${error.message}`}</p>
    </section>
  );
}

/** Render `children(data)` once loaded, or the loading / error view. */
export function Await<T>({ value, children }: { value: Loadable<T>; children: (data: T) => ReactNode }) {
  if (value.state === 'loading') return <Loading />;
  if (value.state === 'error') return <ErrorView error={value.error} />;
  return <>{children(value.data)}</>;
}
