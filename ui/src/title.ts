// One title per page: `feature 7 · topk — lm-saes`, set while the page is shown.
import { useEffect } from 'react';

export const SITE = 'lm-saes';

export function useTitle(title: string | null): void {
  useEffect(() => {
    document.title = title ? `${title} — ${SITE}` : SITE;
  }, [title]);
}
