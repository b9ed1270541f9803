// `/`: the dictionaries, SPD decompositions and sweeps the API lists; picks the dictionary the other specs test.
import { check } from '../lib.mjs';

export default async function home(t) {
  const { page, base, state, tid } = t;
  await t.step('health endpoint answers ok', async () => {
    const { status, body } = await t.getJson('/api/health');
    check(status === 200 && body?.status === 'ok', `GET /api/health gave ${status} ${JSON.stringify(body)}`);
  });

  await t.step('home lists every dictionary and decomposition, titled', async () => {
    const { body: all } = await t.getJson('/api/dictionaries');
    const dicts = all.filter((d) => d.kind !== 'decomposition');
    const spds = all.filter((d) => d.kind === 'decomposition').map((d) => d.name);
    check(Array.isArray(dicts) && dicts.length > 0, `GET /api/dictionaries returned no dictionaries: ${JSON.stringify(dicts)}`);
    await page.goto(base + '/');
    await tid('dictionary-link').first().waitFor();
    const names = await tid('dictionary-link').allTextContents();
    check(JSON.stringify(names) === JSON.stringify(dicts.map((d) => d.name)), `home shows ${JSON.stringify(names)}, API has ${JSON.stringify(dicts.map((d) => d.name))}`);
    state.dict ??= dicts.find((d) => (d.analyses ?? []).includes('default'))?.name;
    check(state.dict, `no dictionary has a 'default' analysis: ${JSON.stringify(dicts.map((d) => [d.name, d.analyses]))}`);
    check(names.includes(state.dict), `LM_SAES_DICTIONARY=${state.dict} is not among ${JSON.stringify(names)}`);
    const shownSpds = spds.length ? await tid('decomposition-link').allTextContents() : [];
    check(JSON.stringify(shownSpds) === JSON.stringify(spds), `home shows decompositions ${JSON.stringify(shownSpds)}, API has ${JSON.stringify(spds)}`);
    check(spds.length > 0 || (await tid('decompositions-section').count()) === 0, 'home shows a decompositions section with none stored');
    check((await page.title()) === 'dictionaries — lm-saes', `home is titled ${JSON.stringify(await page.title())}`);
  });

  await t.step('home lists every sweep (or no sweep section without any)', async () => {
    const { status, body: sweeps } = await t.getJson('/api/sweeps');
    check(status === 200 && Array.isArray(sweeps), `GET /api/sweeps gave ${status} ${JSON.stringify(sweeps)}`);
    if (sweeps.length === 0) {
      check((await tid('sweeps-section').count()) === 0, 'home shows a sweeps section with no sweep stored');
      return;
    }
    await tid('sweep-link').first().waitFor();
    const names = await tid('sweep-link').allTextContents();
    check(JSON.stringify(names) === JSON.stringify(sweeps.map((s) => s.name)), `home shows sweeps ${JSON.stringify(names)}, API has ${JSON.stringify(sweeps.map((s) => s.name))}`);
    check(!state.sweep || names.includes(state.sweep), `LM_SAES_SWEEP=${state.sweep} is not among ${JSON.stringify(names)}`);
  });
}
