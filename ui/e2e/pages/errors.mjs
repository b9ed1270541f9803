// Not-found pages answer HTTP 404 and say why (a feature's says the valid range); a 503 from the
// API shows "database unavailable".
import { check, enc } from '../lib.mjs';

export default async function errors(t) {
  const { page, base, tid } = t;
  await t.step('an unknown feature is a 404 page giving the valid range', async () => {
    const { body: detail } = await t.getJson(t.api());
    const bad = detail.d_sae ?? 999_999_999;
    const { status, body } = await t.getJson(t.api(`/features/${bad}`));
    check(status === 404 && body.detail.includes(`0-${bad - 1}`), `GET feature ${bad} gave ${status} ${JSON.stringify(body)}`);
    const response = await page.goto(base + t.dictPath(`/features/${bad}`));
    check(response.status() === 404, `the page of feature ${bad} answered HTTP ${response.status()}`);
    await tid('not-found').waitFor();
    check((await tid('not-found').textContent()).includes(`0-${bad - 1}`), 'the not-found page does not give the valid range');
    check((await page.title()) === 'not found — lm-saes', `the not-found page is titled ${JSON.stringify(await page.title())}`);
  });

  await t.step('unknown dictionaries and routes are 404 pages', async () => {
    for (const path of [`/dictionaries/${enc('no-such-dictionary-e2e')}`, '/no/such/page']) {
      const response = await page.goto(base + path);
      check(response.status() === 404, `${path} answered HTTP ${response.status()}`);
      await tid('not-found').waitFor();
    }
  });

  await t.step('a 503 from the API shows "database unavailable"', async () => {
    await page.route('**/api/dictionaries', (r) => r.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ detail: 'database unavailable' }) }));
    await page.goto(base + '/');
    await tid('db-unavailable').waitFor();
    await page.unroute('**/api/dictionaries');
  });
}
