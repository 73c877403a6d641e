// Choosing a token from logits: greedy, temperature, top-k, top-p, with a seeded generator.
import { mulberry32 } from '../engine/random.js';
import { InputError } from './masks.js';

export interface SamplingOptions {
  /** 0 (default) picks the most likely token; otherwise logits are divided by it before sampling. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = all). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 = all). */
  topP?: number;
}

/** log-softmax of one row, in place into `out`. */
export function logSoftmaxRow(logits: Float32Array, out: Float64Array = new Float64Array(logits.length)): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > m) m = logits[i];
  let s = 0;
  for (let i = 0; i < logits.length; i++) s += Math.exp(logits[i] - m);
  const lse = m + Math.log(s);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] - lse;
  return out;
}

/**
 * The k best ids of a row by value, best first (ties: the lower id first). One pass, keeping the
 * best k in order by insertion: a value enters only when it beats the k-th best.
 */
export function topIds(row: ArrayLike<number>, k: number): number[] {
  const n = Math.min(k, row.length);
  const best: number[] = [];
  if (!(n > 0)) return best;
  for (let i = 0; i < row.length; i++) {
    const x = row[i];
    if (best.length === n) {
      if (!(x > row[best[n - 1]])) continue;
      best.pop();
    }
    let j = best.length;
    best.push(i);
    for (; j > 0 && row[best[j - 1]] < x; j--) best[j] = best[j - 1];
    best[j] = i;
  }
  return best;
}

/**
 * The generator of sample `row` of a batch, seeded from (seed, row) only: sample b draws the same
 * numbers whatever the number of samples run with it (row 0 is mulberry32(seed) itself).
 */
export function rowRandom(seed: number, row: number): () => number {
  return mulberry32((seed ^ Math.imul(row, 0x9e3779b9)) >>> 0);
}

/** Validates sampling options with messages a user can act on. */
export function checkSampling(o: SamplingOptions): void {
  if (o.temperature !== undefined && !(o.temperature >= 0 && Number.isFinite(o.temperature))) throw new InputError(`temperature must be ≥ 0, got ${o.temperature}`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) throw new InputError(`top-k must be a non-negative integer, got ${o.topK}`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new InputError(`top-p must be in (0, 1], got ${o.topP}`);
}

/** Samples from softmax(logp / t) over the whole row by inverse CDF, without allocating. */
function sampleAll(logp: Float64Array, t: number, rand: () => number): number {
  if (t === 1) {
    // logp is normalised: exp(logp) are the probabilities, one pass suffices.
    let r = rand();
    let last = 0;
    for (let i = 0; i < logp.length; i++) {
      if (logp[i] === -Infinity) continue;
      last = i;
      r -= Math.exp(logp[i]);
      if (r <= 0) return i;
    }
    return last;
  }
  let m = -Infinity;
  for (let i = 0; i < logp.length; i++) if (logp[i] > m) m = logp[i];
  let total = 0;
  for (let i = 0; i < logp.length; i++) total += Math.exp((logp[i] - m) / t);
  let r = rand() * total;
  let last = 0;
  for (let i = 0; i < logp.length; i++) {
    if (logp[i] === -Infinity) continue;
    last = i;
    r -= Math.exp((logp[i] - m) / t);
    if (r <= 0) return i;
  }
  return last;
}

/**
 * Picks a token from a row of log-probabilities (banned ids already at -Infinity). Returns the id.
 */
export function sampleToken(logp: Float64Array, o: SamplingOptions, rand: () => number): number {
  const t = o.temperature ?? 0;
  if (t === 0) {
    let best = 0;
    for (let i = 1; i < logp.length; i++) if (logp[i] > logp[best]) best = i;
    return best;
  }
  const k = o.topK && o.topK > 0 ? Math.min(o.topK, logp.length) : logp.length;
  const p = o.topP ?? 1;
  if (k === logp.length && p >= 1) return sampleAll(logp, t, rand);
  // Candidates sorted by probability; with top-k alone only k survive.
  let ids: number[];
  if (k < logp.length) ids = topIds(logp, k);
  else {
    ids = [];
    for (let i = 0; i < logp.length; i++) if (logp[i] > -Infinity) ids.push(i);
    if (p < 1) ids.sort((a, b) => logp[b] - logp[a]);
  }
  const weights = ids.map((i) => logp[i] / t);
  const m = Math.max(...weights);
  let probs = weights.map((w) => Math.exp(w - m));
  let total = probs.reduce((a, b) => a + b, 0);
  if (p < 1) {
    let acc = 0;
    let keep = 0;
    while (keep < probs.length && acc < p * total) acc += probs[keep++];
    ids = ids.slice(0, Math.max(1, keep));
    probs = probs.slice(0, ids.length);
    total = probs.reduce((a, b) => a + b, 0);
  }
  let r = rand() * total;
  for (let j = 0; j < ids.length; j++) {
    r -= probs[j];
    if (r <= 0) return ids[j];
  }
  return ids[ids.length - 1];
}
