// Which tokens are masked: parsed from text with [MASK] / [MASK:n] markers, drawn at a rate from a
// seed, or given as positions. A mask never depends on the method that will fill or score it, so
// methods can be compared on identical masks.
import { mulberry32 } from '../engine/random.js';

/** A token sequence (decoder/AR ids, no special tokens) with the positions to infill. */
export interface MaskedSequence {
  ids: number[];
  masked: boolean[];
}

/** Thrown for input the user can fix (bad mask syntax, no mask, too long, ...). */
export class InputError extends Error {
  override name = 'InputError';
}

const MARKER = /\[MASK(?::(\d+))?\]/g;

/** Largest n accepted in [MASK:n]: far beyond any context, small enough to catch typos. */
const MAX_SPAN = 4096;

/**
 * Splits text into literal pieces and mask spans. A literal that ends in a space before a mask
 * gives the space to the mask: byte-level tokenizers attach leading spaces to the following word,
 * so " [MASK]" must be able to produce "Ġword" rather than a lone "Ġ" and then "word".
 */
export function splitMaskMarkers(text: string): Array<{ literal: string } | { mask: number }> {
  const parts: Array<{ literal: string } | { mask: number }> = [];
  let last = 0;
  for (const m of text.matchAll(MARKER)) {
    const n = m[1] === undefined ? 1 : Number(m[1]);
    if (!Number.isInteger(n) || n < 1 || n > MAX_SPAN) throw new InputError(`"${m[0]}": the span length must be between 1 and ${MAX_SPAN}`);
    let literal = text.slice(last, m.index);
    if (literal.endsWith(' ')) literal = literal.slice(0, -1);
    if (literal) parts.push({ literal });
    parts.push({ mask: n });
    last = m.index! + m[0].length;
  }
  if (last < text.length) parts.push({ literal: text.slice(last) });
  return parts;
}

/** Tokenizes text with mask markers into ids and a mask (masked ids are placeholders, 0). */
export function parseMaskedText(text: string, encode: (literal: string) => number[]): MaskedSequence {
  const ids: number[] = [];
  const masked: boolean[] = [];
  for (const part of splitMaskMarkers(text)) {
    if ('literal' in part) {
      for (const id of encode(part.literal)) {
        ids.push(id);
        masked.push(false);
      }
    } else {
      for (let i = 0; i < part.mask; i++) {
        ids.push(0);
        masked.push(true);
      }
    }
  }
  if (!masked.some(Boolean)) throw new InputError('the text has no mask: mark what to fill with [MASK] (one token) or [MASK:n] (n tokens)');
  return { ids, masked };
}

/** FNV-1a over the ids: mixes the text into the mask seed. */
function hashIds(ids: number[], seed: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (const id of ids) {
    h ^= id & 0xffff;
    h = Math.imul(h, 0x01000193);
    h ^= id >>> 16;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Masks each token independently with probability `rate`, from a generator seeded by the ids and
 * `seed`. At least one token is always masked.
 */
export function randomMask(ids: number[], rate: number, seed: number): boolean[] {
  if (!(rate > 0 && rate <= 1)) throw new InputError(`mask rate must be in (0, 1], got ${rate}`);
  if (ids.length === 0) throw new InputError('cannot mask an empty text');
  const rand = mulberry32(hashIds(ids, seed));
  const masked = ids.map(() => rand() < rate);
  if (!masked.some(Boolean)) masked[Math.floor(rand() * ids.length)] = true;
  return masked;
}

/**
 * Masks contiguous spans until about `rate` of the tokens are masked; span lengths are geometric
 * with the given mean (as in span-corruption objectives).
 */
export function spanMask(ids: number[], rate: number, seed: number, meanSpan = 4): boolean[] {
  if (!(rate > 0 && rate <= 1)) throw new InputError(`mask rate must be in (0, 1], got ${rate}`);
  const n = ids.length;
  const rand = mulberry32(hashIds(ids, seed ^ 0x5bd1e995));
  const masked = new Array<boolean>(n).fill(false);
  const target = Math.max(1, Math.round(rate * n));
  let count = 0;
  for (let guard = 0; count < target && guard < 100 * n; guard++) {
    let len = 1;
    while (rand() > 1 / meanSpan && len < n) len++;
    const start = Math.floor(rand() * n);
    for (let i = start; i < Math.min(n, start + len) && count < target; i++) {
      if (!masked[i]) {
        masked[i] = true;
        count++;
      }
    }
  }
  return masked;
}

/** Parses "3,5,9" (0-based token positions) into a mask over n tokens. */
export function positionsMask(n: number, positions: number[]): boolean[] {
  const masked = new Array<boolean>(n).fill(false);
  for (const p of positions) {
    if (!Number.isInteger(p) || p < 0 || p >= n) throw new InputError(`mask position ${p} is outside the text's ${n} tokens (0-based)`);
    masked[p] = true;
  }
  if (positions.length === 0) throw new InputError('no mask positions given');
  return masked;
}
