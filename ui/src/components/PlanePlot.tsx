// A matrix with a side of width 2 (TMS 5-2's hidden plane): the target's feature directions (grey,
// labelled f0, f1, ...) and each live subcomponent's direction for the feature it weighs most
// (coloured arrows, labelled c<component>), on one scale. A recovered decomposition lays one arrow
// on each grey line.
import type { ComponentSummary, Plane } from '../api';
import { fmt } from '../format';

const S = 260; // viewBox side
const R = 110; // radius of the longest vector

export function PlanePlot({ plane, components, module }: { plane: Plane; components: ComponentSummary[]; module: string }) {
  const live = new Set(components.filter((c) => (c.n_fired ?? 0) > 0).map((c) => c.component));
  const shown = plane.components.map((v, c) => ({ v, c, feature: plane.feature[c] })).filter((d) => live.has(d.c));
  const longest = Math.max(...plane.target.map(norm), ...shown.map((d) => norm(d.v)), 1e-12);
  const at = ([x, y]: number[]) => [S / 2 + (x / longest) * R, S / 2 - (y / longest) * R];
  return (
    <figure className="plane" data-testid="plane-plot" data-module={module} data-live={shown.length}>
      <svg viewBox={`0 0 ${S} ${S}`} role="img" aria-label={`${module}: target feature directions and live subcomponents`}>
        <circle cx={S / 2} cy={S / 2} r={R} className="plane-ring" />
        {plane.target.map((v, i) => {
          const [x, y] = at(v);
          const [lx, ly] = at(v.map((u) => u * 1.12));
          return (
            <g key={`f${i}`} data-testid="plane-target" data-feature={i}>
              <line x1={S / 2} y1={S / 2} x2={x} y2={y} className="plane-target" />
              <text x={lx} y={ly} className="plane-label" textAnchor="middle" dominantBaseline="middle">
                f{i}
              </text>
            </g>
          );
        })}
        {shown.map(({ v, c, feature }) => {
          const [x, y] = at(v);
          const colour = `hsl(${(feature * 360) / plane.target.length}, 70%, 42%)`;
          return (
            <g key={`c${c}`} data-testid="plane-component" data-component={c} data-feature={feature} data-x={v[0]} data-y={v[1]}>
              <title>{`c${c} (weighs f${feature} most): (${fmt(v[0], 2)}, ${fmt(v[1], 2)})`}</title>
              <line x1={S / 2} y1={S / 2} x2={x} y2={y} className="plane-component" style={{ stroke: colour }} />
              <circle cx={x} cy={y} r={3.5} style={{ fill: colour }} />
            </g>
          );
        })}
      </svg>
      <figcaption className="muted small">
        {module}: grey, the target's {plane.target.length} feature directions; coloured, the {shown.length} live subcomponents
        (each on the feature it weighs most).
      </figcaption>
    </figure>
  );
}

function norm(v: number[]): number {
  return Math.hypot(v[0], v[1]);
}
