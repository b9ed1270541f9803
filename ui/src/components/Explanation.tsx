// A feature's explanation (`lm-saes interpret`): the text, who wrote it, its three scores, and
// every explainer's record with the prompts sent and the raw replies.
import { api, SCORE_NAMES, type ExplanationRecord, type ExplanationScores, type ExplanationSummary, type ScoreName } from '../api';
import { fmt } from '../format';
import { useApi } from '../useApi';

export const SCORE_HELP: Record<ScoreName, string> = {
  simulation: 'correlation of the activations simulated from the explanation with the true ones, on held-out contexts',
  detection: 'balanced accuracy of telling held-out contexts where the feature fires from ones where it does not',
  fuzzing: 'balanced accuracy of telling the tokens where the feature fires from decoy tokens',
};

/** 'lexical baseline' for the offline explainer, else the explainer's id (e.g. openai:<model>). */
export function explainerLabel(e: { kind: string; explainer: string }): string {
  return e.kind === 'lexical' ? 'lexical baseline' : e.explainer;
}

export function ExplainerBadge({ e }: { e: { kind: string; explainer: string } }) {
  return (
    <span
      className={`badge ${e.kind}`}
      data-testid="explainer"
      title={e.kind === 'lexical' ? 'the offline baseline: the feature\'s characteristic tokens, no language model' : `explained by ${e.explainer}`}
    >
      {explainerLabel(e)}
    </span>
  );
}

export function Scores({ scores }: { scores: ExplanationScores }) {
  return (
    <dl className="stats scores" data-testid="scores">
      {SCORE_NAMES.map((s) => (
        <div key={s} title={SCORE_HELP[s]}>
          <dt>{s}</dt>
          <dd data-testid={`score-${s}`} data-value={scores[s] ?? ''}>
            {fmt(scores[s], 2)}
          </dd>
        </div>
      ))}
    </dl>
  );
}

function Record({ r }: { r: ExplanationRecord }) {
  return (
    <details className="record" data-testid="explanation-record">
      <summary>
        <ExplainerBadge e={r} /> {r.status === 'failed' && <span className="status failed">failed</span>}{' '}
        <span className="muted small">
          {r.requests.length} request{r.requests.length === 1 ? '' : 's'}; contexts: {Object.entries(r.n_contexts).map(([k, v]) => `${v} ${k}`).join(', ')}
        </span>
      </summary>
      {r.failures.map((f, i) => (
        <div key={i} className="row-error small" data-testid="explanation-failure">
          {f.stage}: {f.error}
          {f.reply && <pre className="reply">{f.reply}</pre>}
        </div>
      ))}
      {r.requests.map((q, i) => (
        <div key={i} className="call">
          <h4>{q.stage}</h4>
          {q.messages.map((m, j) => (
            <pre key={j} className="prompt" title={m.role}>
              {m.content}
            </pre>
          ))}
          <pre className="reply">{q.reply ?? '(no reply)'}</pre>
        </div>
      ))}
      {r.requests.length === 0 && r.tokens.length > 0 && (
        <p className="small muted">Characteristic tokens (share of the activation): {r.tokens.map((t) => `${JSON.stringify(t.token)} ${t.weight.toFixed(3)}`).join(', ')}</p>
      )}
    </details>
  );
}

export function ExplanationPanel({ name, index, analysis, shown }: { name: string; index: number; analysis?: string; shown: ExplanationSummary | null }) {
  const records = useApi(JSON.stringify([name, index, analysis]), (signal) => api.explanations(name, index, analysis, signal));
  return (
    <section className="explanation" data-testid="explanation">
      {shown ? (
        <>
          <p className="interpretation" data-testid="explanation-text">
            {shown.text}
          </p>
          <p className="small">
            <ExplainerBadge e={shown} />
            {shown.status === 'failed' && <span className="muted"> (a scoring reply could not be used)</span>}
          </p>
          <Scores scores={shown.scores} />
        </>
      ) : (
        <p className="muted small" data-testid="no-explanation">
          Not explained yet: <code>lm-saes interpret --set dictionary={name}</code>
        </p>
      )}
      {records.state === 'ready' && records.data.length > 0 && (
        <details data-testid="explanation-records">
          <summary className="small">Every explainer's record ({records.data.length}): prompts and raw replies</summary>
          {records.data.map((r) => (
            <Record key={r.explainer} r={r} />
          ))}
        </details>
      )}
    </section>
  );
}
