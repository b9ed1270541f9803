// Steering: continue a prompt with this feature's decoder direction added at its hook (or the
// feature clamped to a value), beside the unsteered continuation, greedy and sampled.
import { useState, type FormEvent } from 'react';
import { ApiError, api, type Continuation, type SteerRequest, type SteerResult } from '../api';
import { fmt } from '../format';
import { shownToken } from '../tokens';
import { ErrorView } from './Status';

function ContinuationText({ c, prompt }: { c: Continuation; prompt: string }) {
  return (
    <p className="continuation-text">
      <span className="muted">{prompt}</span>
      {c.tokens.map((t, i) => (
        <span key={i} className={shownToken(t).glyph ? 'glyph' : undefined} title={`token id ${c.token_ids[i]}`}>
          {t.includes('\n') ? (
            <>
              {shownToken(t).text}
              <br />
            </>
          ) : (
            t
          )}
        </span>
      ))}
    </p>
  );
}

/** A suggested strength: a few times the feature's largest activation, two significant digits. */
export function defaultStrength(max: number): number {
  return max > 0 ? Number((4 * max).toPrecision(2)) : 10;
}

export function SteerPanel({ name, index, max }: { name: string; index: number; max: number }) {
  const [req, setReq] = useState<SteerRequest>({ prompt: 'The', mode: 'add', strength: defaultStrength(max), max_new_tokens: 24, seed: 0 });
  const [strength, setStrength] = useState(String(req.strength));
  const [result, setResult] = useState<SteerResult | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const set = (patch: Partial<SteerRequest>) => setReq((r) => ({ ...r, ...patch }));

  const run = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      setResult(await api.steer(name, index, { ...req, strength: Number(strength) }));
    } catch (err) {
      setResult(null);
      setError(err instanceof ApiError ? err : new ApiError(0, null, String(err)));
    } finally {
      setBusy(false);
    }
  };

  const prompt = result ? result.prompt_tokens.join('') : '';
  return (
    <section data-testid="steer">
      <h2>Steer with this feature</h2>
      <form className="controls" onSubmit={run}>
        <label className="grow">
          Prompt
          <input value={req.prompt} onChange={(e) => set({ prompt: e.target.value })} data-testid="steer-prompt" />
        </label>
        <label>
          Mode
          <select value={req.mode} onChange={(e) => set({ mode: e.target.value as SteerRequest['mode'] })} data-testid="steer-mode">
            <option value="add">add direction × strength</option>
            <option value="clamp">clamp activation to</option>
          </select>
        </label>
        <label>
          Strength
          <input inputMode="decimal" value={strength} onChange={(e) => setStrength(e.target.value)} data-testid="steer-strength" />
        </label>
        <label>
          New tokens
          <input type="number" min={1} max={64} value={req.max_new_tokens} onChange={(e) => set({ max_new_tokens: Number(e.target.value) })} data-testid="steer-length" />
        </label>
        <label>
          Seed
          <input type="number" min={0} value={req.seed} onChange={(e) => set({ seed: Number(e.target.value) })} />
        </label>
        <button type="submit" disabled={busy || !req.prompt.trim() || !Number.isFinite(Number(strength))} data-testid="steer-run">
          {busy ? 'Generating…' : 'Generate'}
        </button>
      </form>
      <p className="small muted">
        Its largest activation in the analysis is {fmt(max)}. Sampled continuations share their random draws, so at strength 0 both columns agree.
      </p>
      {error && <ErrorView error={error} />}
      {result && (
        <div className="steer-result" data-testid="steer-result">
          <p className="small muted">
            {result.mode === 'add' ? `Added ${fmt(result.strength)} × the decoder direction` : `Clamped the feature to ${fmt(result.strength)}`} at{' '}
            <code>{result.hook}</code>
            {result.prompt_truncated && ', prompt cut to its end'}
            {result.stopped === 'time' && '; stopped early: the server’s time limit ran out'}.
          </p>
          <div className="steer-grid">
            {(['greedy', 'sampled'] as const).map((s) =>
              (['unsteered', 'steered'] as const).map((side) => (
                <div key={`${s}-${side}`} className={`continuation ${side}`} data-testid="continuation" data-steered={side === 'steered'} data-sampling={s} data-text={result[side][s].text}>
                  <h3>
                    {side}, {s}
                  </h3>
                  <ContinuationText c={result[side][s]} prompt={prompt} />
                </div>
              )),
            )}
          </div>
        </div>
      )}
    </section>
  );
}
