// Live inference on a language model's decomposition (on its page): type text, pick a decomposed
// matrix, and see each token shaded by how many of that matrix's subcomponents are important on it
// (CI above the threshold); a picked token lists them with their causal importances.
import { useState, type FormEvent } from 'react';
import { ApiError, api, type ImportanceResult, type ModuleDetail } from '../api';
import { ColorLegend } from './ColorLegend';
import { ErrorView, Loading } from './Status';
import { TokenStrip } from './TokenStrip';
import { argmax } from './TryText';
import { fmt } from '../format';
import { Link, paths } from '../router';

export function SpdInfer({ name, modules, analysis }: { name: string; modules: ModuleDetail[]; analysis?: string }) {
  const [text, setText] = useState('');
  const [module, setModule] = useState(modules[0]?.name ?? '');
  const [result, setResult] = useState<ImportanceResult | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [selected, setSelected] = useState<number | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!text.trim()) return;
    setBusy(true);
    setError(null);
    try {
      const r = await api.importances(name, text, module);
      setResult(r);
      setSelected(argmax(r.l0) ?? (r.tokens.length ? 0 : null));
    } catch (err) {
      setResult(null);
      setError(err instanceof ApiError ? err : new ApiError(0, null, String(err)));
    } finally {
      setBusy(false);
    }
  };

  const max = Math.max(0, ...(result?.l0 ?? []));
  const chosen = result && selected !== null ? result.components[selected] ?? [] : [];
  return (
    <section data-testid="spd-infer">
      <h2>Live inference</h2>
      <form className="inline-form" onSubmit={submit}>
        <textarea rows={3} value={text} onChange={(e) => setText(e.target.value)} placeholder="Type some text…" data-testid="spd-infer-text" />
        <label className="small">
          matrix{' '}
          <select value={module} onChange={(e) => setModule(e.target.value)} data-testid="spd-infer-module">
            {modules.map((m) => (
              <option key={m.name} value={m.name}>
                {m.name}
              </option>
            ))}
          </select>
        </label>{' '}
        <button type="submit" disabled={busy || !text.trim()} data-testid="spd-infer-run">
          {busy ? 'Running…' : 'Run'}
        </button>
      </form>
      {busy && <Loading what="Running the model" />}
      {error && <ErrorView error={error} />}
      {result && (
        <div className="columns">
          <section data-testid="spd-infer-tokens">
            <p className="small muted">
              Each token shaded by how many of <code>{result.module}</code>'s {result.C} subcomponents have causal importance above{' '}
              {fmt(result.ci_threshold)} on it{result.truncated ? ' (the text was cut to the context length)' : ''}.
            </p>
            <ColorLegend max={max} what="important subcomponents" />
            <TokenStrip tokens={result.tokens} acts={result.l0} ids={result.token_ids} max={max} peak={argmax(result.l0)} selected={selected}
              onPick={setSelected} scope="in this text" label="your text" />
          </section>
          <section>
            <h3>Important subcomponents{selected !== null && result.tokens[selected] !== undefined ? ` of token ${selected + 1}` : ''}</h3>
            {chosen.length === 0 ? (
              <p className="muted">None above the threshold on this token.</p>
            ) : (
              <ul className="feature-lines" data-testid="spd-infer-components">
                {chosen.map((c) => (
                  <li key={c.index} data-testid="spd-infer-component" data-index={c.index} data-ci={c.ci}>
                    <Link href={paths.component(name, c.index, analysis)}>c{c.component}</Link> <span className="num">{fmt(c.ci)}</span>
                  </li>
                ))}
              </ul>
            )}
          </section>
        </div>
      )}
    </section>
  );
}
