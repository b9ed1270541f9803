// `/dictionaries/:name/infer`: run the dictionary on typed text and inspect each token's features.
import { useEffect, useState, type FormEvent } from 'react';
import { ApiError, api, type InferResult } from '../api';
import { ErrorView, Loading } from '../components/Status';
import { Token } from '../components/Tokens';
import { fmt } from '../format';
import { Link, navigate, paths } from '../router';

const TOP = 5;

export function Infer({ name, search }: { name: string; search: URLSearchParams }) {
  const initial = search.get('text') ?? '';
  const [text, setText] = useState(initial);
  const [result, setResult] = useState<InferResult | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [selected, setSelected] = useState<number | null>(null);

  const run = async (input: string) => {
    setBusy(true);
    setError(null);
    try {
      const r = await api.infer(name, input, TOP);
      setResult(r);
      setSelected(r.tokens.length > 0 ? 0 : null);
    } catch (e) {
      setResult(null);
      setError(e instanceof ApiError ? e : new ApiError(0, null, String(e)));
    } finally {
      setBusy(false);
    }
  };

  // A shared URL with ?text= runs once on load.
  useEffect(() => {
    if (initial) void run(initial);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [name]);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (!text.trim()) return;
    navigate(paths.infer(name) + `?text=${encodeURIComponent(text)}`, { replace: true });
    void run(text);
  };

  const tokenMax = result ? result.features.map((fs) => Math.max(0, ...fs.map((f) => f.act))) : [];
  const overallMax = Math.max(0, ...tokenMax);
  const chosen = result && selected !== null ? result.features[selected] ?? [] : [];

  return (
    <>
      <header className="page-head">
        <h1>
          <Link href={paths.dictionary(name)}>{name}</Link> / live inference
        </h1>
      </header>
      <form className="infer-form" onSubmit={submit}>
        <textarea
          rows={4}
          value={text}
          onChange={(e) => setText(e.target.value)}
          placeholder="Type some text…"
          data-testid="infer-text"
          onKeyDown={(e) => {
            if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) submit(e);
          }}
        />
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
            <p className="muted small">Shading: the token's strongest feature activation. Click a token to list its features.</p>
            <div className="context-tokens">
              {result.tokens.map((t, i) => (
                <Token key={i} token={t} act={tokenMax[i] ?? 0} max={overallMax} selected={i === selected} onClick={() => setSelected(i)} />
              ))}
            </div>
          </section>
          <section data-testid="infer-features">
            <h2>
              Top features{selected !== null && result.tokens[selected] !== undefined ? ` for ${JSON.stringify(result.tokens[selected])}` : ''}
            </h2>
            {chosen.length === 0 ? (
              <p className="muted">No feature is active on this token.</p>
            ) : (
              <table>
                <tbody>
                  {chosen.map((f) => (
                    <tr key={f.index}>
                      <td>
                        <Link href={paths.feature(name, f.index)} data-testid="infer-feature-link">
                          feature #{f.index}
                        </Link>
                      </td>
                      <td className="num">{fmt(f.act)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </section>
        </div>
      )}
    </>
  );
}
