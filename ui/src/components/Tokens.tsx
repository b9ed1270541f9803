// Token strips: each token's background shows its activation relative to a maximum.
import type { ContextSample } from '../api';

function intensity(act: number, max: number): number {
  if (!(max > 0) || !(act > 0)) return 0;
  return Math.min(act / max, 1);
}

interface TokenProps {
  token: string;
  act: number;
  max: number;
  selected?: boolean;
  onClick?: () => void;
}

export function Token({ token, act, max, selected, onClick }: TokenProps) {
  const a = intensity(act, max);
  const cls = 'token' + (a > 0 ? ' active' : '') + (selected ? ' selected' : '') + (onClick ? ' clickable' : '');
  return (
    <span
      data-testid="token"
      data-act={String(act)}
      title={`${JSON.stringify(token)}: ${act}`}
      className={cls}
      style={{ backgroundColor: `rgba(255, 111, 0, ${a.toFixed(3)})` }}
      onClick={onClick}
      role={onClick ? 'button' : undefined}
      tabIndex={onClick ? 0 : undefined}
      onKeyDown={onClick ? (e) => (e.key === 'Enter' || e.key === ' ') && onClick() : undefined}
    >
      {token}
    </span>
  );
}

export function ContextView({ ctx, max }: { ctx: ContextSample; max: number }) {
  return (
    <div className="context" data-testid="context">
      <span className="context-meta muted" title={`context ${ctx.context_id}, starting at token ${ctx.start}`}>
        {ctx.max.toFixed(2)}
      </span>
      <span className="context-tokens">
        {ctx.tokens.map((t, i) => (
          <Token key={i} token={t} act={ctx.acts[i] ?? 0} max={max} />
        ))}
      </span>
    </div>
  );
}
