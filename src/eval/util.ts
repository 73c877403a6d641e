// What the infilling evaluation (infill-eval.ts) and the unconditional one (unconditional.ts) both
// need, kept here so that unconditional.ts need not import infill-eval.ts.
import { seededHash } from '../data/corpus.js';

/** A 32-bit seed derived from the run seed and a key. */
export function derivedSeed(seed: number, key: string): number {
  return Math.floor(seededHash(seed, key) * 2 ** 32) >>> 0;
}

/**
 * distinct-n over token sequences: #distinct n-grams / #n-grams, pooled over all sequences. With
 * `touch`, only the n-grams covering at least one position where touch[i] is true count. Returns
 * null when there is no n-gram.
 */
export function distinctN(seqs: readonly (readonly number[])[], n: number, touch?: readonly boolean[]): number | null {
  const seen = new Set<string>();
  let total = 0;
  for (const s of seqs) {
    for (let i = 0; i + n <= s.length; i++) {
      if (touch) {
        let any = false;
        for (let j = i; j < i + n; j++) any ||= touch[j];
        if (!any) continue;
      }
      seen.add(s.slice(i, i + n).join(','));
      total++;
    }
  }
  return total > 0 ? seen.size / total : null;
}

/** Seconds on a monotonic clock. */
export function now(): number {
  return performance.now() / 1000;
}
