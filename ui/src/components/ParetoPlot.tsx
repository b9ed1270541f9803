// A plain-SVG scatter of a sweep's finished rows: L0 (log x), or the sweep's own x metric (an SPD
// sweep's CI-L0, linear), against one metric. Members are
// filled circles, the members' Pareto frontier is a line, each baseline variant has its own marker.
import { useEffect, useRef, useState } from 'react';
import type { SweepRow } from '../api';
import { fmt } from '../format';

const L0 = 'l0';

/** The x axis's label: L0, or an SPD sweep's CI-L0 (the record's `x`). */
export function xLabel(x: string = L0): string {
  return x === L0 ? 'L0' : x === 'ci_l0' ? 'CI-L0' : x.replace(/_/g, ' ');
}

const PAD = { left: 54, right: 14, top: 12, bottom: 40 };
const SHAPES = ['square', 'triangle', 'diamond', 'cross', 'triangle-down'] as const;
type Shape = 'circle' | (typeof SHAPES)[number];

/** Each baseline variant's marker number, in order of first appearance (shapes repeat after five). */
export function baselineMarkers(rows: SweepRow[]): Map<string, number> {
  const markers = new Map<string, number>();
  for (const r of rows) {
    if (r.kind === 'baseline' && !markers.has(variantOf(r))) markers.set(variantOf(r), markers.size % SHAPES.length);
  }
  return markers;
}

const variantOf = (r: SweepRow) => r.variant ?? r.name;

/** The rows a plot of `metric` shows: finished, with both coordinates. */
function plotted(rows: SweepRow[], metric: string, x: string): SweepRow[] {
  return rows.filter((r) => r.status === 'finished' && typeof r.metrics[x] === 'number' && typeof r.metrics[metric] === 'number');
}

function Marker({ shape, x, y, className }: { shape: Shape; x: number; y: number; className: string }) {
  const s = 5;
  switch (shape) {
    case 'circle':
      return <circle cx={x} cy={y} r={s} className={className} />;
    case 'square':
      return <rect x={x - s} y={y - s} width={2 * s} height={2 * s} className={className} />;
    case 'triangle':
      return <polygon points={`${x},${y - s - 1} ${x + s + 1},${y + s} ${x - s - 1},${y + s}`} className={className} />;
    case 'triangle-down':
      return <polygon points={`${x},${y + s + 1} ${x + s + 1},${y - s} ${x - s - 1},${y - s}`} className={className} />;
    case 'diamond':
      return <polygon points={`${x},${y - s - 1} ${x + s + 1},${y} ${x},${y + s + 1} ${x - s - 1},${y}`} className={className} />;
    case 'cross':
      return <path d={`M${x - s},${y - s}L${x + s},${y + s}M${x - s},${y + s}L${x + s},${y - s}`} className={`${className} stroke-only`} />;
  }
}

/** [lo, hi] around the values, padded by `pad` of the span (a lone value gets `lone` either side). */
function domain(values: number[], pad: number, lone: number): [number, number] {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  if (hi - lo < 1e-12) return [lo - lone, hi + lone];
  return [lo - (hi - lo) * pad, hi + (hi - lo) * pad];
}

/** About `n` round ticks (1, 2 or 5 times a power of ten apart) inside [lo, hi]. */
function linearTicks(lo: number, hi: number, n = 5): number[] {
  const raw = (hi - lo) / n;
  let step = 10 ** Math.floor(Math.log10(raw));
  const err = raw / step;
  step *= err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

/** Ticks for a log axis spanning 10^lo..10^hi: 1-2-5 per decade, powers of ten alone when wide. */
function logTicks(lo: number, hi: number): number[] {
  const inside = (v: number) => Math.log10(v) >= lo && Math.log10(v) <= hi;
  const decades = Array.from({ length: Math.ceil(hi) - Math.floor(lo) + 1 }, (_, i) => Math.floor(lo) + i);
  const ones = decades.map((k) => 10 ** k).filter(inside);
  const oneTwoFive = decades.flatMap((k) => [1, 2, 5].map((m) => m * 10 ** k)).filter(inside);
  if (ones.length >= 3) return ones;
  if (oneTwoFive.length >= 2) return oneTwoFive;
  return linearTicks(10 ** lo, 10 ** hi, 4).filter((v) => v > 0);
}

const tick = (v: number) => String(Number(v.toPrecision(3)));

interface Props {
  rows: SweepRow[];
  metric: string;
  label: string;
  markers: Map<string, number>;
  selected: string | null;
  onSelect: (row: SweepRow) => void;
  /** The metric on the x axis (the record's `x`; default L0). */
  x?: string;
}

/** The element's width in CSS pixels, followed as it resizes (`initial` until measured). */
function useWidth<T extends Element>(initial: number) {
  const ref = useRef<T>(null);
  const [width, setWidth] = useState(initial);
  useEffect(() => {
    if (!ref.current) return;
    const observer = new ResizeObserver(([entry]) => setWidth(Math.round(entry.contentRect.width)));
    observer.observe(ref.current);
    return () => observer.disconnect();
  }, []);
  return [ref, width] as const;
}

export function ParetoPlot({ rows, metric, label, markers, selected, onSelect, x = L0 }: Props) {
  // Drawn at the figure's pixel width, so text and markers keep their size on any screen.
  const [ref, width] = useWidth<HTMLElement>(480);
  const W = Math.max(width, 240);
  const H = Math.round(Math.min(Math.max(W * 0.6, 220), 320));
  const points = plotted(rows, metric, x);
  const xName = xLabel(x);
  if (points.length === 0) {
    return (
      <figure className="pareto" ref={ref} data-testid="sweep-plot" data-metric={metric}>
        <p className="muted">No finished rows with {xName} and {label} yet.</p>
      </figure>
    );
  }
  const log = x === L0 && points.every((r) => r.metrics[x] > 0); // an SPD sweep's CI-L0: linear
  const xOf = (r: SweepRow) => (log ? Math.log10(r.metrics[x]) : r.metrics[x]);
  const [x0, x1] = domain(points.map(xOf), 0.06, log ? 0.3 : 1);
  const [y0, y1] = domain(points.map((r) => r.metrics[metric]), 0.08, 0.05);
  const sx = (v: number) => PAD.left + ((v - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const sy = (v: number) => H - PAD.bottom - ((v - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  const px = (r: SweepRow) => sx(xOf(r));
  const py = (r: SweepRow) => sy(r.metrics[metric]);
  const xTicks = log ? logTicks(x0, x1) : linearTicks(x0, x1);
  const yTicks = linearTicks(y0, y1);
  const front = points
    .filter((r) => r.kind === 'member' && r.frontier.includes(metric))
    .sort((a, b) => a.metrics[x] - b.metrics[x]);
  // Baselines under the members, so a member is never hidden by a baseline at the same spot.
  const ordered = [...points.filter((r) => r.kind === 'baseline'), ...points.filter((r) => r.kind === 'member')];
  return (
    <figure className="pareto" ref={ref} data-testid="sweep-plot" data-metric={metric}>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${xName} against ${label}`}>
        <rect x={PAD.left} y={PAD.top} width={W - PAD.left - PAD.right} height={H - PAD.top - PAD.bottom} className="frame" />
        {xTicks.map((t) => (
          <g key={`x${t}`}>
            <line x1={sx(log ? Math.log10(t) : t)} x2={sx(log ? Math.log10(t) : t)} y1={PAD.top} y2={H - PAD.bottom} className="grid" />
            <text x={sx(log ? Math.log10(t) : t)} y={H - PAD.bottom + 15} textAnchor="middle" className="tick">
              {tick(t)}
            </text>
          </g>
        ))}
        {yTicks.map((t) => (
          <g key={`y${t}`}>
            <line x1={PAD.left} x2={W - PAD.right} y1={sy(t)} y2={sy(t)} className="grid" />
            <text x={PAD.left - 5} y={sy(t) + 4} textAnchor="end" className="tick">
              {tick(t)}
            </text>
          </g>
        ))}
        <text x={(PAD.left + W - PAD.right) / 2} y={H - 6} textAnchor="middle" className="axis-label">
          {xName}
          {log ? ' (log scale)' : ''}
        </text>
        <text transform={`translate(13 ${(PAD.top + H - PAD.bottom) / 2}) rotate(-90)`} textAnchor="middle" className="axis-label">
          {label}
        </text>
        {front.length > 1 && <polyline points={front.map((r) => `${px(r)},${py(r)}`).join(' ')} className="frontier" />}
        {ordered.map((r) => {
          const b = markers.get(variantOf(r)) ?? 0;
          const [shape, cls]: [Shape, string] = r.kind === 'member' ? ['circle', 'member'] : [SHAPES[b], `baseline b${b}`];
          return (
            <g
              key={r.name}
              className={`pt${r.name === selected ? ' selected' : ''}`}
              data-testid="point"
              data-name={r.name}
              data-kind={r.kind}
              onClick={() => onSelect(r)}
            >
              <title>{`${r.name} (${r.kind}${r.variant ? `, ${r.variant}` : ''})\n${xName} = ${fmt(r.metrics[x], 4)}\n${label} = ${fmt(r.metrics[metric], 4)}${r.frontier.includes(metric) ? '\n★ on the Pareto frontier' : ''}`}</title>
              <circle cx={px(r)} cy={py(r)} r={10} className="hit" />
              <Marker shape={shape} x={px(r)} y={py(r)} className={cls} />
            </g>
          );
        })}
      </svg>
      <figcaption className="muted">
        {xName} against {label}
      </figcaption>
    </figure>
  );
}

/** The markers of both plots: members, their frontier, one entry per baseline variant. */
export function PlotLegend({ markers }: { markers: Map<string, number> }) {
  const entries: [string, Shape | 'line', string][] = [
    ['members', 'circle', 'member'],
    ['Pareto frontier (members)', 'line', 'frontier'],
    ...[...markers].map(([variant, b]): [string, Shape, string] => [`${variant} baseline`, SHAPES[b], `baseline b${b}`]),
  ];
  return (
    <ul className="legend" data-testid="plot-legend">
      {entries.map(([text, shape, cls]) => (
        <li key={text}>
          <svg viewBox="0 0 20 14" width="20" height="14" aria-hidden="true">
            {shape === 'line' ? <line x1={1} x2={19} y1={7} y2={7} className={cls} /> : <Marker shape={shape} x={10} y={7} className={cls} />}
          </svg>
          {text}
        </li>
      ))}
    </ul>
  );
}
