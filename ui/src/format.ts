// Number formatting shared by all pages.

export function fmt(v: number | null | undefined, digits = 3): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (Number.isInteger(v) && Math.abs(v) < 1e9) return v.toLocaleString('en-US');
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return v.toFixed(digits);
}

export function pct(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  const p = v * 100;
  return (Math.abs(p) < 0.01 && p !== 0 ? p.toExponential(1) : p.toFixed(2)) + '%';
}

/** A stored ISO-8601 UTC timestamp as `YYYY-MM-DD HH:MM UTC` (the same in every time zone). */
export function utc(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/**
 * A firing density, the one convention of every page: a percentage with three significant digits
 * (`12.5%`, `0.0312%`), in scientific notation below 0.001% (`4.1e-4%`); `0%` for a dead feature.
 */
export function density(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (v === 0) return '0%';
  const p = v * 100;
  if (Math.abs(p) < 1e-3) return `${p.toExponential(1)}%`;
  return `${p.toPrecision(3)}%`;
}

/** `1 token`, `2 tokens`, `1,024 contexts`: the count formatted and the word in the right number. */
export function plural(n: number | null | undefined, word: string, many = `${word}s`): string {
  if (n === null || n === undefined || Number.isNaN(n)) return `— ${many}`;
  return `${fmt(n)} ${n === 1 ? word : many}`;
}

/** 10⁻⁵-style powers of ten for a log10 axis tick (a non-integer exponent as 10^-5.2). */
export function powerOfTen(exponent: number): string {
  if (!Number.isInteger(exponent)) return `10^${exponent.toFixed(1)}`;
  const sup: Record<string, string> = { '-': '⁻', '0': '⁰', '1': '¹', '2': '²', '3': '³', '4': '⁴', '5': '⁵', '6': '⁶', '7': '⁷', '8': '⁸', '9': '⁹' };
  return '10' + String(exponent).split('').map((c) => sup[c]).join('');
}

/** A stored metric when it is a number (metrics are free-form JSON). */
export function num(v: unknown): number | undefined {
  return typeof v === 'number' ? v : undefined;
}
