// Load one API resource for a page, re-fetching when `key` changes.
import { useEffect, useState } from 'react';
import { ApiError } from './api';

export type Loadable<T> =
  | { state: 'loading' }
  | { state: 'error'; error: ApiError }
  | { state: 'ready'; data: T };

export function useApi<T>(key: string | null, load: (signal: AbortSignal) => Promise<T>): Loadable<T> {
  const [result, setResult] = useState<{ key: string | null; value: Loadable<T> }>({
    key: null,
    value: { state: 'loading' },
  });
  useEffect(() => {
    if (key === null) return;
    const ctrl = new AbortController();
    setResult({ key, value: { state: 'loading' } });
    load(ctrl.signal).then(
      (data) => {
        if (!ctrl.signal.aborted) setResult({ key, value: { state: 'ready', data } });
      },
      (e: unknown) => {
        if (ctrl.signal.aborted) return;
        const error = e instanceof ApiError ? e : new ApiError(0, null, String(e));
        setResult({ key, value: { state: 'error', error } });
      },
    );
    return () => ctrl.abort();
    // `load` is re-created each render; `key` captures everything it depends on.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);
  return result.key === key ? result.value : { state: 'loading' };
}
