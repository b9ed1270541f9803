// `/dictionaries/:name/infer`: run the dictionary on typed text; the text is shaded by one feature
// (`?feature=`, by default the strongest on the text), and a picked token lists its top features.
import { useEffect, useState, type FormEvent } from 'react';
import { ApiError, api, type InferResult } from '../api';
import { ColorLegend } from '../components/ColorLegend';
import { ErrorView, Loading } from '../components/Status';
import { SummaryLine } from '../components/SummaryLine';
import { TokenStrip } from '../components/TokenStrip';
import { argmax } from '../components/TryText';
import { fmt } from '../format';
import { Link, navigate, paths } from '../router';
import { useTitle } from '../title';

const TOP = 5;

/** The feature with the largest activation anywhere in the result. */
function strongest(r: InferResult): number | null {
  let best: { index: number; act: number } | null = null;
  for (const row of r.features) for (const f of row) if (!best || f.act > best.act) best = f;
  return best?.index ?? null;
}

export function Infer({ name, search }: { name: string; search: URLSearchParams }) {
  useTitle(`live inference · ${name}`);
  const initial = search.get('text') ?? '';
  const wanted = /^\d+$/.test(search.get('feature') ?? '') ? Number(search.get('feature')) : undefined;
  const analysis = search.get('analysis') ?? undefined;
  const [text, setText] = useState(initial);
  const [result, setResult] = useState<InferResult | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [selected, setSelected] = useState<number | null>(null);

  const url = (input: string, feature?: number) => {
    const q = new URLSearchParams(search);
    q.set('text', input);
    if (feature === undefined) q.delete('feature');
    else q.set('feature', String(feature));
    return `${paths.infer(name)}?${q.toString()}`;
  };

  /** One model run; without a feature asked for, a second one shades by the strongest. */
  const run = async (input: string, feature?: number) => {
    setBusy(true);
    setError(null);
    try {
      let r = await api.infer(name, input, TOP, feature, analysis);
      const best = feature === undefined ? strongest(r) : null;
      if (best !== null) {
        r = await api.infer(name, input, TOP, best, analysis);
        navigate(url(input, best), { replace: true });
      }
      setResult(r);
      setSelected((s) => (s !== null && s < r.tokens.length ? s : argmax(r.feature_acts ?? []) ?? (r.tokens.length ? 0 : null)));
    } catch (e) {
      setResult(null);
      setError(e instanceof ApiError ? e : new ApiError(0, null, String(e)));
    } finally {
      setBusy(false);
    }
  };

  // A shared URL with ?text= (and ?feature=) runs on load.
  useEffect(() => {
    if (initial) void run(initial, wanted);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [name]);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (!text.trim()) return;
    navigate(url(text), { replace: true });
    void run(text);
  };
  const shadeBy = (feature: number) => {
    if (!result) return;
    navigate(url(text, feature), { replace: true });
    void run(text, feature);
  };

  const lines = new Map((result?.summaries ?? []).map((l) => [l.index, l]));
  const acts = result?.feature_acts ?? result?.tokens.map(() => 0) ?? [];
  const max = Math.max(0, ...acts);
  const chosen = result && selected !== null ? result.features[selected] ?? [] : [];
  const shaded = result?.feature ?? null;

  return (
    <>
      <header className="page-head">
        <h1>
          <Link href={paths.dictionary(name)}>{name}</Link> / live inference
        </h1>
      </header>
      <form className="inline-form" onSubmit={submit}>
        <textarea rows={4} value={text} onChange={(e) => setText(e.target.value)} placeholder="Type some text…" data-testid="infer-text"
          onKeyDown={(e) => e.key === 'Enter' && (e.ctrlKey || e.metaKey) && submit(e)} />
        <button type="submit" disabled={busy || !text.trim()} data-testid="infer-run">
          {busy ? 'Running…' : 'Run'}
        </button>
      </form>
      {busy && <Loading what="Running the model" />}
      {error && <ErrorView error={error} />}
      {result?.truncated && (
        <p className="muted" data-testid="infer-truncated">
          The text was cut to the model's context length.
        </p>
      )}
      {result && (
        <div className="columns">
          <section data-testid="infer-tokens">
            <h2>Tokens</h2>
            {shaded !== null ? (
              <p className="small" data-testid="infer-shaded-by" data-feature={shaded}>
                Shaded by{' '}
                <Link href={paths.feature(name, shaded, analysis)}>feature #{shaded}</Link>: <SummaryLine line={lines.get(shaded) ?? null} />
              </p>
            ) : (
              <p className="small muted">No feature fires on this text.</p>
            )}
            <ColorLegend max={max} what={`feature #${shaded ?? '—'}`} />
            <TokenStrip tokens={result.tokens} acts={acts} ids={result.token_ids} max={max} peak={argmax(acts)} selected={selected} onPick={setSelected} scope="in this text" label="your text" />
          </section>
          <section data-testid="infer-features">
            <h2>Top features{selected !== null && result.tokens[selected] !== undefined ? ` of token ${selected + 1}` : ''}</h2>
            {chosen.length === 0 ? (
              <p className="muted">No feature is active on this token.</p>
            ) : (
              <ul className="feature-lines">
                {chosen.map((f) => (
                  <li key={f.index} className={f.index === shaded ? 'selected' : undefined}>
                    <Link href={paths.feature(name, f.index, analysis)} data-testid="infer-feature-link">
                      #{f.index}
                    </Link>{' '}
                    <span className="num">{fmt(f.act)}</span>{' '}
                    <button type="button" className="small" onClick={() => shadeBy(f.index)} disabled={f.index === shaded || busy} data-testid="shade-feature">
                      shade
                    </button>{' '}
                    <SummaryLine line={lines.get(f.index) ?? null} />
                  </li>
                ))}
              </ul>
            )}
          </section>
        </div>
      )}
    </>
  );
}
