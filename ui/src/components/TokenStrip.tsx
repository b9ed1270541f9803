// A strip of tokens shaded by activation (src/tokens.ts), with a formatted popup per token that
// opens on hover, on keyboard focus (one tab stop per strip; ←/→ move, Enter pins, Esc closes) and
// on tap or click (pinned until the next tap elsewhere). Long windows show the tokens around the
// peak until expanded.
import { useEffect, useLayoutEffect, useRef, useState, type KeyboardEvent, type ReactNode } from 'react';
import type { ContextSample } from '../api';
import { fmt } from '../format';
import { intensity, rankOf, shade, shownToken, tokenGroups } from '../tokens';

export interface StripProps {
  tokens: string[];
  acts: number[];
  ids?: (number | null)[] | null;
  /** The activation of full shading (the feature's max activation). */
  max: number;
  /** Position of the max-activating token, marked. */
  peak?: number | null;
  /** Tokens shown each side of the peak until the strip is expanded (all when undefined). */
  radius?: number;
  /** A picked token position, outlined (the inference page's selection). */
  selected?: number | null;
  onPick?: (position: number) => void;
  /** What the popup calls the activation's scope: "in this context", "in this text". */
  scope?: string;
  label?: string;
}

interface Group {
  positions: number[];
  act: number;
}

function describe(g: Group, props: StripProps): ReactNode {
  const { tokens, acts, ids, max, scope = 'in this context' } = props;
  const last = g.positions[g.positions.length - 1];
  const rank = rankOf(acts, g.positions.reduce((best, p) => (acts[p] > acts[best] ? p : best), g.positions[0]));
  const firing = acts.filter((a) => a > 0).length;
  const tokenIds = g.positions.map((p) => ids?.[p]).filter((i): i is number => typeof i === 'number');
  return (
    <>
      <div className="popup-token">
        <code>{shownToken(tokens[last]).text}</code> <span className="muted">{JSON.stringify(g.positions.map((p) => tokens[p]).join(''))}</span>
      </div>
      <dl>
        <dt>activation</dt>
        <dd data-testid="popup-act">
          {g.act > 0 ? fmt(g.act) : '0 (not firing)'}
          {g.act > 0 && max > 0 ? <span className="muted"> · {Math.round((100 * g.act) / max)}% of max</span> : null}
        </dd>
        <dt>rank</dt>
        <dd data-testid="popup-rank">{rank === null ? '—' : `${rank} of ${fmt(firing)} firing ${scope}`}</dd>
        <dt>{g.positions.length > 1 ? 'token ids' : 'token id'}</dt>
        <dd data-testid="popup-id">
          {tokenIds.length ? tokenIds.join(', ') : '—'}
          {g.positions.length > 1 ? <span className="muted"> (one character over {g.positions.length} byte tokens)</span> : null}
        </dd>
      </dl>
    </>
  );
}

export function TokenStrip(props: StripProps) {
  const { tokens, acts, max, peak = null, radius, selected = null, onPick, label } = props;
  const groups: Group[] = tokenGroups(tokens).map((positions) => ({ positions, act: Math.max(0, ...positions.map((p) => acts[p] ?? 0)) }));
  const peakGroup = peak === null ? -1 : groups.findIndex((g) => g.positions.includes(peak));
  const [expanded, setExpanded] = useState(false);
  const cut = radius !== undefined && peakGroup >= 0 && !expanded && groups.length > 2 * radius + 1;
  const from = cut ? Math.max(0, peakGroup - radius) : 0;
  const to = cut ? Math.min(groups.length, peakGroup + radius + 1) : groups.length;

  const [hover, setHover] = useState<number | null>(null);
  const [pinned, setPinned] = useState<number | null>(null);
  const [focus, setFocus] = useState<number>(peakGroup >= 0 ? peakGroup : 0);
  const active = pinned ?? hover;
  const box = useRef<HTMLDivElement>(null);
  const popup = useRef<HTMLDivElement>(null);
  const [place, setPlace] = useState<{ left: number; top: number } | null>(null);

  // A tap or click elsewhere closes a pinned popup.
  useEffect(() => {
    if (pinned === null) return;
    const away = (e: PointerEvent) => {
      if (!box.current?.contains(e.target as Node)) setPinned(null);
    };
    document.addEventListener('pointerdown', away);
    return () => document.removeEventListener('pointerdown', away);
  }, [pinned]);

  // The popup sits under its token, kept inside the strip's width.
  useLayoutEffect(() => {
    if (active === null || !box.current) return setPlace(null);
    const el = box.current.querySelector<HTMLElement>(`[data-g="${active}"]`);
    if (!el) return setPlace(null);
    const width = popup.current?.offsetWidth ?? 0;
    const left = Math.max(0, Math.min(el.offsetLeft, box.current.clientWidth - width));
    setPlace({ left, top: el.offsetTop + el.offsetHeight + 4 });
  }, [active, expanded]);

  const groupOf = (target: EventTarget | null): number | null => {
    const g = (target as HTMLElement | null)?.closest?.('[data-g]')?.getAttribute('data-g');
    return g === null || g === undefined ? null : Number(g);
  };
  const moveTo = (g: number) => {
    const clamped = Math.max(from, Math.min(to - 1, g));
    setFocus(clamped);
    box.current?.querySelector<HTMLElement>(`[data-g="${clamped}"]`)?.focus();
  };
  const pick = (g: number) => {
    setPinned((p) => (p === g ? null : g));
    onPick?.(groups[g].positions[groups[g].positions.length - 1]);
  };
  const onKey = (e: KeyboardEvent<HTMLDivElement>) => {
    const g = groupOf(e.target);
    if (g === null) return;
    const moves: Record<string, number> = { ArrowRight: g + 1, ArrowLeft: g - 1, Home: from, End: to - 1 };
    if (e.key in moves) moveTo(moves[e.key]);
    else if (e.key === 'Enter' || e.key === ' ') pick(g);
    else if (e.key === 'Escape') setPinned(null);
    else return;
    e.preventDefault(); // not a feature-page shortcut, not a scroll
  };

  const cells = [];
  for (let g = from; g < to; g++) {
    const { positions, act } = groups[g];
    const last = positions[positions.length - 1];
    const shown = shownToken(tokens[last]);
    const a = intensity(act, max);
    const isPeak = g === peakGroup;
    const picked = selected !== null && positions.includes(selected);
    const cls = ['token', a > 0 && 'active', isPeak && 'peak', picked && 'selected', shown.glyph && 'glyph', shown.bytes && 'bytes', g === active && 'open']
      .filter(Boolean)
      .join(' ');
    cells.push(
      <span
        key={g}
        data-g={g}
        data-testid="token"
        data-first={positions[0]}
        data-last={last}
        data-act={String(act)}
        data-peak={isPeak ? 'true' : undefined}
        className={cls}
        style={a > 0 ? { backgroundColor: shade(a) } : undefined}
        tabIndex={g === (focus >= from && focus < to ? focus : from) ? 0 : -1}
        role="button"
        aria-pressed={picked || undefined}
        aria-label={`${JSON.stringify(positions.map((p) => tokens[p]).join(''))}: ${act > 0 ? fmt(act) : 'not firing'}${isPeak ? ', peak' : ''}`}
      >
        {shown.text}
      </span>,
    );
  }
  const more = (side: 'before' | 'after', n: number) => (
    <button type="button" className="expand" data-testid="expand" onClick={() => setExpanded(true)} aria-label={`show the ${n} tokens ${side}`} title={`show the whole window (${tokens.length} tokens)`}>
      …
    </button>
  );

  return (
    <div
      className="token-strip"
      ref={box}
      role="group"
      aria-label={label}
      onMouseOver={(e) => setHover(groupOf(e.target))}
      onMouseLeave={() => setHover(null)}
      onFocus={(e) => {
        const g = groupOf(e.target);
        if (g !== null) {
          setFocus(g);
          setHover(g);
        }
      }}
      onBlur={() => setHover(null)}
      onClick={(e) => {
        const g = groupOf(e.target);
        if (g !== null) pick(g);
      }}
      onKeyDown={onKey}
    >
      {from > 0 && more('before', groups.slice(0, from).reduce((n, g) => n + g.positions.length, 0))}
      <span className="context-tokens">{cells}</span>
      {to < groups.length && more('after', groups.slice(to).reduce((n, g) => n + g.positions.length, 0))}
      {active !== null && active >= from && active < to && (
        <div className="token-popup" role="tooltip" data-testid="token-popup" ref={popup} style={place ?? { visibility: 'hidden' }}
          onClick={(e) => { e.stopPropagation(); setPinned(null); setHover(null); }}>
          {describe(groups[active], props)}
        </div>
      )}
    </div>
  );
}

/** One stored example: its strip (peak marked, cut to ``radius`` tokens each side until expanded). */
export function ContextView({ ctx, max, radius = 8 }: { ctx: ContextSample; max: number; radius?: number }) {
  return (
    <div className="context" data-testid="context">
      <span className="context-meta muted" title={`context ${ctx.context_id}, from token ${ctx.start}`}>
        {fmt(ctx.max, 2)}
      </span>
      <TokenStrip tokens={ctx.tokens} acts={ctx.acts} ids={ctx.token_ids} max={max} peak={ctx.peak - ctx.start} radius={radius} label={`context ${ctx.context_id}`} />
    </div>
  );
}
