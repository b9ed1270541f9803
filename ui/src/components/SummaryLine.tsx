// A feature's summary line (the API's `summary`): its interpretation or explanation as text, or
// its most characteristic tokens drawn as tokens are drawn everywhere (↵ for a newline...).
import type { SummaryLine as Line } from '../api';
import { shownToken } from '../tokens';

const LABEL: Record<Line['source'], string> = {
  interpretation: 'a person’s interpretation',
  explanation: 'its explanation (lm-saes interpret)',
  tokens: 'not explained yet: the tokens its top contexts peak on, most frequent first',
};

const WEIGHTED = /"((?:[^"\\]|\\.)*)" ([0-9]*\.?[0-9]+)/g;

/** The tokens and weights of an explanation written as the lexical baseline writes them
 * (`"king" 0.310, "queen" 0.120`, lm_saes/interpret/lexical.py), or null for any other text. */
export function weightedTokens(text: string): [string, number][] | null {
  const found = [...text.matchAll(WEIGHTED)];
  if (found.length === 0 || found.map((m) => m[0]).join(', ') !== text) return null;
  try {
    return found.map((m) => [JSON.parse(`"${m[1]}"`) as string, Number(m[2])]);
  } catch {
    return null;
  }
}

function Chips({ tokens }: { tokens: [string, number | null][] }) {
  return (
    <>
      {tokens.map(([t, w], i) => (
        <span key={i} className="summary-chip">
          <code className="summary-token">{shownToken(t).text}</code>
          {w !== null && <span className="muted small">{w.toFixed(2)}</span>}
        </span>
      ))}
    </>
  );
}

export function SummaryLine({ line, className = '' }: { line: Line | null; className?: string }) {
  if (!line) {
    return (
      <span className={`summary-line muted ${className}`} data-testid="summary-line" data-source="none" data-text="">
        never fires
      </span>
    );
  }
  const weighted = line.source === 'explanation' ? weightedTokens(line.text) : null;
  return (
    <span className={`summary-line ${line.source}${weighted ? ' weighted' : ''} ${className}`} data-testid="summary-line" data-source={line.source} data-text={line.text} title={LABEL[line.source]}>
      {line.source === 'tokens' ? (
        <>
          <span className="muted">peaks on </span>
          <Chips tokens={line.tokens.map((t) => [t, null])} />
        </>
      ) : (
        (weighted && <Chips tokens={weighted} />) || line.text
      )}
    </span>
  );
}
