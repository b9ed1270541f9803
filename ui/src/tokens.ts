// How a token reads on screen, and how strongly it is shaded. Pure functions, shared by every
// token strip (top contexts, bands, test-on-text, inference, steering) and the e2e tests' checks.

/** What a whitespace or control character is drawn as. */
const GLYPHS: Record<string, string> = { '\n': '↵', '\t': '⇥', '\r': '␍', ' ': '·', '\u00a0': '⍽' };
/** Drawn as <U+XXXX>: invisible when printed (controls, zero-width characters, BOM). */
const INVISIBLE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u200b-\u200f\u2028\u2029\u2060\ufeff]/u;
const BYTE = /^(<0x[0-9A-F]{2}>)+$/;

export interface Shown {
  /** The text to draw. */
  text: string;
  /** Whether it differs from the token's text (glyphs, escapes): drawn muted. */
  glyph: boolean;
  /** A byte that completes no character, shown as <0xNN> (lm_saes/data/pieces.py). */
  bytes: boolean;
}

function codePoint(c: string): string {
  return `<U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}>`;
}

/**
 * A token as drawn: newlines, tabs and carriage returns always as glyphs (↵ ⇥ ␍), a token made only
 * of spaces as one · per space, invisible characters as <U+XXXX>; an empty token as ◌.
 */
export function shownToken(token: string): Shown {
  if (token === '') return { text: '◌', glyph: true, bytes: false };
  if (BYTE.test(token)) return { text: token, glyph: true, bytes: true };
  const blank = /^[\s\u00a0]+$/u.test(token);
  let text = '';
  for (const c of token) {
    if (c === '\n' || c === '\t' || c === '\r') text += GLYPHS[c];
    else if (blank) text += GLYPHS[c] ?? '·';
    else if (INVISIBLE.test(c)) text += codePoint(c);
    else text += c;
  }
  return { text, glyph: text !== token, bytes: false };
}

/**
 * Tokens grouped for drawing: a character split over byte-level tokens is stored whole on the token
 * completing it, the tokens before it holding "" (lm_saes/data/pieces.py), so a run of empty tokens
 * and the token after it are one group, drawn as one character. Every other token is its own group.
 * Returns the groups as lists of token positions, in order.
 */
export function tokenGroups(tokens: string[]): number[][] {
  const groups: number[][] = [];
  let pending: number[] = [];
  tokens.forEach((t, i) => {
    pending.push(i);
    if (t !== '') {
      groups.push(pending);
      pending = [];
    }
  });
  for (const i of pending) groups.push([i]); // empty tokens at the end: nothing completes them
  return groups;
}

/** The weakest shading a firing token gets: below it a light tint cannot be told from the page. */
export const MIN_INTENSITY = 0.25;

/**
 * A token's shading in [0, 1]: 0 where the feature does not fire (act <= 0), else
 * MIN_INTENSITY + (1 - MIN_INTENSITY) * act / max (capped at 1), so that every firing token shows.
 */
export function intensity(act: number, max: number): number {
  if (!(max > 0) || !(act > 0)) return 0;
  return MIN_INTENSITY + (1 - MIN_INTENSITY) * Math.min(act / max, 1);
}

/** The shading colour at intensity ``a`` (the accent orange with alpha ``a``). */
export function shade(a: number): string {
  return `rgba(255, 111, 0, ${a.toFixed(3)})`;
}

/** 1-based rank of ``acts[i]`` among the positive values of ``acts`` (ties share a rank); null if it is not positive. */
export function rankOf(acts: number[], i: number): number | null {
  const v = acts[i];
  if (!(v > 0)) return null;
  return 1 + acts.filter((a) => a > v).length;
}
