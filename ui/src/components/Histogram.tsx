// A plain-SVG bar histogram: `edges` has one more entry than `counts`.
import { fmt } from '../format';

interface Props {
  edges: number[];
  counts: number[];
  /** How to label an edge on the x axis. */
  label?: (edge: number) => string;
  /** Scale bar heights by log(1 + count), for heavy-tailed counts. */
  logY?: boolean;
  title: string;
  testId?: string;
}

const W = 600;
const H = 160;
const PAD_B = 20;

export function Histogram({ edges, counts, label = (e) => fmt(e, 2), logY = false, title, testId }: Props) {
  const n = counts.length;
  if (n === 0 || edges.length !== n + 1) return <p className="muted">No histogram data.</p>;
  const scale = (c: number) => (logY ? Math.log1p(c) : c);
  const top = Math.max(...counts.map(scale), 1e-12);
  const bw = W / n;
  const ticks = Array.from(new Set([0, Math.floor(n / 2), n]));
  return (
    <figure className="histogram" data-testid={testId}>
      <svg viewBox={`0 0 ${W} ${H + PAD_B}`} role="img" aria-label={title} preserveAspectRatio="none">
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
      <div className="ticks">
        {ticks.map((t) => (
          <span key={t}>{label(edges[t])}</span>
        ))}
      </div>
      <figcaption className="muted">
        {title}
        {logY ? ' (bar height: log count)' : ''}
      </figcaption>
    </figure>
  );
}
