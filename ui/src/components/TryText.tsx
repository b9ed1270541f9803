// Test a feature on your own text: one model run, the feature's activation at every token, drawn
// like its top contexts (lm-saes serve loads the model on first use).
import { useEffect, useState, type FormEvent } from 'react';
import { ApiError, api, type InferResult } from '../api';
import { fmt, plural } from '../format';
import { ColorLegend } from './ColorLegend';
import { ErrorView } from './Status';
import { TokenStrip } from './TokenStrip';

export function argmax(values: number[]): number | null {
  let best: number | null = null;
  values.forEach((v, i) => {
    if (v > 0 && (best === null || v > values[best])) best = i;
  });
  return best;
}

export function TryText({ name, index, max, analysis }: { name: string; index: number; max: number; analysis?: string }) {
  const [text, setText] = useState('');
  const [result, setResult] = useState<InferResult | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const [ran, setRan] = useState<string | null>(null); // the text of the last run

  const go = async (input: string, feature: number) => {
    setBusy(true);
    setError(null);
    try {
      setResult(await api.infer(name, input, 1, feature, analysis));
      setRan(input);
    } catch (err) {
      setResult(null);
      setError(err instanceof ApiError ? err : new ApiError(0, null, String(err)));
    } finally {
      setBusy(false);
    }
  };
  const run = (e: FormEvent) => {
    e.preventDefault();
    if (text.trim()) void go(text, index);
  };
  // Moving to another feature (j/k) runs the same text again for it.
  useEffect(() => {
    if (ran !== null) void go(ran, index);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [index]);

  const acts = result?.feature_acts ?? [];
  const peak = argmax(acts);
  const firing = acts.filter((a) => a > 0).length;
  return (
    <section data-testid="try">
      <h2>Test on your text</h2>
      <form className="inline-form" onSubmit={run}>
        <textarea rows={3} value={text} onChange={(e) => setText(e.target.value)} placeholder="Type or paste text…" data-testid="try-text"
          onKeyDown={(e) => e.key === 'Enter' && (e.ctrlKey || e.metaKey) && run(e)} />
        <button type="submit" disabled={busy || !text.trim()} data-testid="try-run">
          {busy ? 'Running…' : 'Run'}
        </button>
      </form>
      {error && <ErrorView error={error} />}
      {result && (
        <div data-testid="try-result">
          <p className="small">
            Fires on {plural(firing, 'token')} of {fmt(result.tokens.length)}
            {peak !== null && (
              <>
                , most on token {peak + 1} ({fmt(acts[peak])}, {Math.round((100 * acts[peak]) / max)}% of its max in the analysis)
              </>
            )}
            {result.truncated && ' (the text was cut to the model’s context)'}.
          </p>
          <ColorLegend max={max} />
          <TokenStrip tokens={result.tokens} acts={acts} ids={result.token_ids} max={max} peak={peak} scope="in this text" label="your text" />
        </div>
      )}
    </section>
  );
}
