// What the token shading and glyphs mean, shown above every set of token strips.
import { fmt } from '../format';
import { MIN_INTENSITY, shade } from '../tokens';

export function ColorLegend({ max, what = 'activation' }: { max: number; what?: string }) {
  return (
    <div className="color-legend small" data-testid="color-legend">
      <span className="scale">
        <span className="muted">{what}</span> <span className="tick">0</span>
        <span className="swatch none" title="not firing" />
        <span className="bar" style={{ background: `linear-gradient(to right, ${shade(MIN_INTENSITY)}, ${shade(1)})` }} title={`firing: from just above 0 (lightest) to ${fmt(max)} (darkest)`} />
        <span className="tick">{fmt(max, 2)}</span>
      </span>
      <span>
        <span className="token active peak sample">peak</span> <span className="muted">the strongest token</span>
      </span>
      <span className="muted">
        <code>↵</code> newline <code>·</code> space <code>⇥</code> tab <code>&lt;0xNN&gt;</code> byte; hover, tap or Tab to a token for its details
      </span>
    </div>
  );
}
