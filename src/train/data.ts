// Pretraining data: documents tokenized once into a compact uint16 token stream (cached on disk,
// keyed by the tokenizer and the split), then batches drawn from it by a generator seeded per step,
// so a resumed run sees exactly the batches an uninterrupted run would.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { mulberry32 } from '../engine/random.js';

/** A token stream: [BOS] doc [EOS] [BOS] doc [EOS] … */
export type TokenStream = Uint16Array;

/** Tokenizes documents into one stream, cached under `cacheDir` by content hash. */
export function tokenStream(
  docs: Array<{ id: string; text: string }>,
  encode: (text: string) => number[],
  specials: { bos: number; eos: number },
  cacheDir: string,
  tokenizerKey: string,
): TokenStream {
  const hash = createHash('sha256');
  hash.update(tokenizerKey);
  for (const d of docs) hash.update(d.id).update('\0').update(d.text).update('\0');
  const file = join(cacheDir, `${hash.digest('hex').slice(0, 16)}.u16`);
  if (existsSync(file)) {
    const buf = readFileSync(file);
    return new Uint16Array(buf.buffer, buf.byteOffset, buf.byteLength / 2);
  }
  const parts: number[] = [];
  for (const d of docs) {
    parts.push(specials.bos);
    for (const id of encode(d.text)) {
      if (id > 0xffff) throw new Error(`token id ${id} does not fit the uint16 stream (vocabulary over 65536)`);
      parts.push(id);
    }
    parts.push(specials.eos);
  }
  const stream = Uint16Array.from(parts);
  mkdirSync(cacheDir, { recursive: true });
  writeFileAtomic(file, new Uint8Array(stream.buffer));
  return stream;
}

/** The generator for step `step` of a run seeded `seed` (independent of every other step). */
export function stepRandom(seed: number, step: number): () => number {
  return mulberry32((Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(step, 0xc2b2ae35)) >>> 0);
}

/** B windows of `length` tokens at random offsets. */
export function randomWindows(stream: TokenStream, batch: number, length: number, rand: () => number): number[][] {
  if (stream.length < length + 1) throw new Error(`the token stream (${stream.length}) is shorter than one window (${length + 1})`);
  return Array.from({ length: batch }, () => {
    const o = Math.floor(rand() * (stream.length - length));
    return Array.from(stream.subarray(o, o + length));
  });
}

/** Evenly spaced windows, for a fixed validation set. */
export function evenWindows(stream: TokenStream, count: number, length: number): number[][] {
  const span = stream.length - length;
  if (span < 1) throw new Error(`the validation stream (${stream.length}) is shorter than one window (${length + 1})`);
  return Array.from({ length: count }, (_, i) => {
    const o = Math.floor((i * span) / count);
    return Array.from(stream.subarray(o, o + length));
  });
}

/**
 * Masked-diffusion corruption: per row a rate r ~ U(lo, hi) (default U(0, 1); or the given fixed
 * rate), each maskable token masked independently with probability r, at least one per row.
 * Returns the corrupted ids and targets (the true id at masked positions, -100 elsewhere).
 */
export function maskRows(
  rows: number[][],
  maskId: number,
  isSpecial: (id: number) => boolean,
  rand: () => number,
  fixedRate?: number,
  [lo, hi]: readonly [number, number] = [0, 1],
): { ids: number[][]; targets: number[][]; masked: number; rates: number[] } {
  let masked = 0;
  const ids: number[][] = [];
  const targets: number[][] = [];
  const rates: number[] = [];
  for (const row of rows) {
    const r = fixedRate ?? lo + (hi - lo) * rand();
    rates.push(r);
    const out = [...row];
    const tgt = row.map(() => -100);
    const maskable: number[] = [];
    row.forEach((id, i) => {
      if (isSpecial(id)) return;
      maskable.push(i);
      if (rand() < r) {
        out[i] = maskId;
        tgt[i] = id;
        masked++;
      }
    });
    if (!tgt.some((t) => t >= 0) && maskable.length > 0) {
      const i = maskable[Math.floor(rand() * maskable.length)];
      tgt[i] = row[i];
      out[i] = maskId;
      masked++;
    }
    ids.push(out);
    targets.push(tgt);
  }
  return { ids, targets, masked, rates };
}
