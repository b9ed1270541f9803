// A plain-SVG bar histogram with labelled axes: `edges` has one more entry than `counts`.
import { fmt } from '../format';

interface Props {
  edges: number[];
  counts: number[];
  /** How to label an edge on the x axis. */
  label?: (edge: number) => string;
  /** Where the x ticks go (in edge units); default the two ends and the middle. */
  ticks?: number[];
  xLabel: string;
  yLabel: string;
  /** Scale bar heights by log(1 + count), for heavy-tailed counts. */
  logY?: boolean;
  title: string;
  testId?: string;
}

const W = 600;
const H = 160;

export function Histogram({ edges, counts, label = (e) => fmt(e, 2), ticks, xLabel, yLabel, logY = false, title, testId }: Props) {
  const n = counts.length;
  if (n === 0 || edges.length !== n + 1) return <p className="muted">No histogram data.</p>;
  const scale = (c: number) => (logY ? Math.log1p(c) : c);
  const top = Math.max(...counts.map(scale), 1e-12);
  const peak = Math.max(...counts);
  const bw = W / n;
  const lo = edges[0];
  const span = edges[n] - lo || 1;
  const at = ticks ?? [edges[0], edges[Math.floor(n / 2)], edges[n]];
  return (
    <figure className="histogram" data-testid={testId}>
      <div className="plot">
        <div className="y-axis small muted" aria-hidden="true">
          <span>{fmt(peak)}</span>
          <span className="y-label">{yLabel}</span>
          <span>0</span>
        </div>
        <div className="area">
          <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${title}: ${yLabel} by ${xLabel}`} preserveAspectRatio="none">
            {counts.map((c, i) => {
              const h = (scale(c) / top) * H;
              return (
                <rect key={i} x={i * bw + 0.5} y={H - h} width={Math.max(bw - 1, 0.5)} height={h} className="bar">
                  <title>{`${label(edges[i])} – ${label(edges[i + 1])}: ${c.toLocaleString('en-US')}`}</title>
                </rect>
              );
            })}
            <line x1={0} x2={W} y1={H} y2={H} className="axis" />
          </svg>
          <div className="ticks small muted">
            {at.map((t) => {
              const x = ((t - lo) / span) * 100;
              return (
                <span key={t} style={{ left: `${x}%` }} className={x < 8 ? 'first' : x > 92 ? 'last' : undefined}>
                  {label(t)}
                </span>
              );
            })}
          </div>
          <div className="x-label small muted">{xLabel}</div>
        </div>
      </div>
      <figcaption className="muted">
        {title}
        {logY ? ' (bar height: log count)' : ''}
      </figcaption>
    </figure>
  );
}
