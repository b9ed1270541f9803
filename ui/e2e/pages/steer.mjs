// Steering on a feature page: a strong strength changes the greedy continuation, zero changes
// neither continuation; both are what the API gives.
import { join } from 'node:path';
import { check } from '../lib.mjs';
import { openFeature } from './feature.mjs';

/** Generate from the steering form and compare the four continuations with the API's. */
async function generate(t, index, { prompt, strength }) {
  const { tid } = t;
  await tid('steer-prompt').fill(prompt);
  await tid('steer-strength').fill(String(strength));
  await tid('steer-length').fill('8');
  await tid('steer-run').click();
  await t.modelResult(tid('steer-result'));
  await t.page.waitForFunction((s) => document.querySelector('[data-testid="steer-result"] p')?.textContent?.includes(s), String(strength));
  const { status, body } = await t.postJson(t.api(`/features/${index}/steer`), { prompt, strength, mode: 'add', max_new_tokens: 8, seed: 0 });
  check(status === 200, `POST steer gave ${status} ${JSON.stringify(body)}`);
  const shown = await tid('continuation').evaluateAll((els) => els.map((e) => [e.dataset.steered, e.dataset.sampling, e.dataset.text, e.textContent]));
  check(shown.length === 4, `${shown.length} continuations shown, expected 4`);
  for (const [steered, sampling, text, visible] of shown) {
    const want = body[steered === 'true' ? 'steered' : 'unsteered'][sampling].text;
    check(text === want, `${steered === 'true' ? 'steered' : 'unsteered'} ${sampling}: shows ${JSON.stringify(text)}, API ${JSON.stringify(want)}`);
    check(visible.trim().length > 0, 'an empty continuation box');
  }
  return body;
}

export async function steering(t, index) {
  await openFeature(t, index);
  const strong = await generate(t, index, { prompt: 'To be, or not to be', strength: 60 });
  check(strong.steered.greedy.text !== strong.unsteered.greedy.text, `strength 60 left the greedy continuation unchanged: ${JSON.stringify(strong.steered.greedy.text)}`);
  await t.tid('steer').screenshot({ path: join(t.shots, t.page.viewportSize().width < 600 ? 'steer-mobile.png' : 'steer.png') });
  const zero = await generate(t, index, { prompt: 'To be, or not to be', strength: 0 });
  for (const s of ['greedy', 'sampled']) {
    check(zero.steered[s].text === zero.unsteered[s].text, `strength 0 changed the ${s} continuation`);
  }
}

export default async function steer(t) {
  await t.step('steering: a strong strength changes the continuation, zero changes nothing', () => steering(t, t.state.featureIndex));
}
