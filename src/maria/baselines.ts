// The methods MARIA is measured against, over the same MLM and AR (definitions in MARIA.md):
//   mlm-oneshot  one MLM pass, every mask filled independently (not a joint likelihood)
//   mlm-l2r      one MLM pass per masked token, revealing left to right (exact likelihood)
//   ar           the AR alone, left context only (exact likelihood of x_M given the left context)
//   mdlm         masked-diffusion sampling with T steps using the MLM as the denoiser; its
//                likelihood is an MDLM ELBO (an upper bound on the NLL), estimated by Monte Carlo
//                (mdlmElbo: the continuous-time bound, or the T-step one)
//   maria-poe    MARIA with the untrained product-of-experts head (load the bundle with it)
// SEDD's absorbing-state sampler with an un-time-conditioned MLM reduces to the mdlm sampler here.
// The sessions the baselines need beyond MARIA's own (the AR with its logits, the MLM with its
// logits) are built on first use from the loaded weights and released by Maria.release().
import { mulberry32 } from '../engine/random.js';
import { CausalLM } from '../models/causal-lm.js';
import { MaskedLM } from '../models/masked-lm.js';
import { InfillTimeout, mlmInputRow } from './core.js';
import type { Maria, InfillResult, InfillSample, FilledToken, InfillOptions } from './maria.js';
import { InputError, type MaskedSequence } from './masks.js';
import { checkSampling, logSoftmaxRow, rowRandom, sampleToken, topIds } from './sampling.js';

export const METHODS = ['maria', 'mlm-l2r', 'mlm-oneshot', 'ar', 'mdlm'] as const;
export type Method = (typeof METHODS)[number];

export interface MethodScore {
  /** Mean negative log-likelihood per masked token (natural log); for mdlm an upper bound. */
  nll: number;
  tokens: number;
  method: string;
  /** 'exact' likelihood, 'elbo' bound, or 'independent' (product of marginals, no joint model). */
  kind: 'exact' | 'elbo' | 'independent';
}

const plainAr = new WeakMap<Maria, Promise<CausalLM>>();
const mlmWithLogits = new WeakMap<Maria, Promise<MaskedLM>>();

/** The AR without MARIA's head (its own logits), built once per Maria from the loaded weights. */
export function plainArModel(m: Maria): Promise<CausalLM> {
  let p = plainAr.get(m);
  if (!p) {
    p = CausalLM.fromParams(m.ar.family, m.ar.config, m.ar.params, m.sessionOptions, m.ar.dir);
    plainAr.set(m, p);
  }
  return p;
}

/** The MLM with its logits (Maria's own MLM session stops at the hidden states), built once per Maria. */
export function mlmLogitsModel(m: Maria): Promise<MaskedLM> {
  let p = mlmWithLogits.get(m);
  if (!p) {
    p = MaskedLM.fromParams(m.mlm.family, m.mlm.config, m.mlm.params, m.sessionOptions, m.mlm.dir);
    mlmWithLogits.set(m, p);
  }
  return p;
}

/** Releases the sessions the baselines created for `m` (Maria.release() calls it). */
export async function releaseBaselines(m: Maria): Promise<void> {
  const made = [plainAr.get(m), mlmWithLogits.get(m)];
  plainAr.delete(m);
  mlmWithLogits.delete(m);
  // A session whose creation failed has nothing to release.
  await Promise.all(made.map(async (p) => (await p?.catch(() => null))?.release()));
}

/** Log-probabilities over the AR vocabulary from one row of MLM logits (−∞ where the MLM lacks the token). */
function mlmLogProbs(m: Maria, row: Float32Array, out: Float64Array): Float64Array {
  const V = m.head.vocabSize;
  const mapped = new Float32Array(V);
  for (let v = 0; v < V; v++) {
    const j = m.arToMlm ? m.arToMlm[v] : v;
    mapped[v] = j >= 0 && j < row.length ? row[j] : -Infinity;
  }
  return logSoftmaxRow(mapped, out);
}

interface MlmBatch {
  logits: Float32Array;
  /** Logit rows per batch row. */
  K: number;
  Vm: number;
  /** Per batch row: text position → its logit row. */
  rowOf: Array<Map<number, number>>;
}

/**
 * MLM logits for one pass over rows that each have their own mask (masked[i] → [MASK]), at the
 * text positions `need[b]` of each row only: the output product over the vocabulary is about a
 * third of a small MLM's pass, and these samplers read one or a few positions per row.
 */
async function mlmBatch(m: Maria, rows: readonly (readonly number[])[], masks: readonly (readonly boolean[])[], need: readonly (readonly number[])[]): Promise<MlmBatch> {
  const inputs = rows.map((ids, b) => mlmInputRow(m.runtime.spec, ids, masks[b], (id) => m.tokenizer.idToToken(id)));
  const offset = m.manifest.mlmPrefixIds.length;
  const out = await (await mlmLogitsModel(m)).forward(inputs, { logitsAt: need.map((ps) => ps.map((p) => offset + p)) });
  const K = out.logitRows;
  return { logits: out.logits, K, Vm: out.logits.length / (out.B * K), rowOf: need.map((ps) => new Map(ps.map((p, k) => [p, k]))) };
}

/** The MLM's log-probabilities at text position i of batch row b (one of the positions the batch was asked for). */
function mlmRow(m: Maria, batch: MlmBatch, b: number, i: number, out: Float64Array): Float64Array {
  const k = batch.rowOf[b].get(i);
  if (k === undefined) throw new Error(`internal: no MLM logits computed at position ${i} of row ${b}`);
  const start = (b * batch.K + k) * batch.Vm;
  return mlmLogProbs(m, batch.logits.subarray(start, start + batch.Vm), out);
}

/** Splits work into MLM batches of at most `size` rows. */
async function forChunks<T>(items: T[], size: number, fn: (chunk: T[], start: number) => Promise<void>): Promise<void> {
  for (let s = 0; s < items.length; s += size) await fn(items.slice(s, s + size), s);
}

/** A check to run before each model pass: throws InfillTimeout once `maxTimeMs` have passed since `start`. */
type DeadlineCheck = (progress: string) => void;
function deadlineCheck(start: number, maxTimeMs: number | undefined, what: string): DeadlineCheck {
  const deadline = maxTimeMs ? start + maxTimeMs : Infinity;
  return (progress) => {
    if (performance.now() > deadline) throw new InfillTimeout(`${what} took longer than ${maxTimeMs} ms (${progress})`);
  };
}

export interface MdlmElboOptions {
  /** Denoising steps T of the discrete-time bound; absent: the continuous-time bound (T → ∞). */
  steps?: number;
  /** Monte-Carlo draws of t (default 16). */
  draws?: number;
  /** Seed of the draws (default 0). */
  seed?: number;
  /** Give up (InfillTimeout) after this many milliseconds. */
  maxTimeMs?: number;
}

/**
 * An MDLM bound (Sahoo et al. 2024, linear schedule α_t = 1 − t) on −log p(x_M | x_¬M), summed over
 * the masked tokens, in nats, with the MLM as the denoiser. q(z_t | x) masks each position of M
 * independently with probability t; the draws of t are stratified over (0, 1) and seeded.
 *
 * - Without `steps`, the continuous-time bound (what `scoreWithMethod(…, 'mdlm')`, hence `maria
 *   score --method mdlm` and the server's "mdlm", report):
 *     L_∞ = E_{t ~ U(0,1)} E_{z ~ q(·|x, t)} (1/t) Σ_{i ∈ M, z_i = [MASK]} −log p_MLM(x_i | z)
 * - With `steps` T, the T-step bound of the T-step sampler (what `maria eval`'s mdlm-T reports):
 *     L_T = Σ_{k=1..T} (1/T)(1/t_k) E_{z ~ q(·|x, t_k)} Σ_{i ∈ M, z_i = [MASK]} −log p_MLM(x_i | z),
 *   t_k = k/T, k stratified over 1..T. L_T decreases toward L_∞ as T grows, so a sampler with fewer
 *   steps gets a looser (higher) bound.
 * Special tokens are not banned (as in the other scores).
 */
export async function mdlmElbo(m: Maria, ids: readonly number[], masked: readonly boolean[], options: MdlmElboOptions = {}): Promise<number> {
  const check = deadlineCheck(performance.now(), options.maxTimeMs, 'the MDLM bound');
  m.parse({ ids: [...ids], masked: [...masked] }, true);
  return mdlmBound(m, ids, masked, options, check);
}

async function mdlmBound(m: Maria, ids: readonly number[], masked: readonly boolean[], options: MdlmElboOptions, check: DeadlineCheck): Promise<number> {
  const T = options.steps;
  const draws = options.draws ?? 16;
  if (T !== undefined && !(Number.isInteger(T) && T >= 1)) throw new InputError(`steps must be a positive integer, got ${T}`);
  if (!Number.isInteger(draws) || draws < 1) throw new InputError(`ELBO draws must be a positive integer, got ${draws}`);
  const rand = mulberry32(options.seed ?? 0);
  const positions = masked.flatMap((x, i) => (x ? [i] : []));
  const samples = Array.from({ length: draws }, (_, s) => {
    const u = (s + rand()) / draws;
    const t = T === undefined ? u : Math.min(T, Math.floor(u * T) + 1) / T;
    return { t, mask: masked.map((x) => x && rand() < t) };
  });
  const lp = new Float64Array(m.head.vocabSize);
  let total = 0;
  // Draws that mask nothing add nothing: they need no MLM pass.
  await forChunks(samples.filter((d) => d.mask.some(Boolean)), 16, async (chunk, start) => {
    check(`${start} of ${draws} draws done`);
    const batch = await mlmBatch(m, chunk.map(() => ids), chunk.map((d) => d.mask), chunk.map((d) => positions.filter((p) => d.mask[p])));
    chunk.forEach((d, b) => {
      for (const p of positions) if (d.mask[p]) total -= mlmRow(m, batch, b, p, lp)[ids[p]] / d.t;
    });
  });
  return total / draws;
}

/**
 * Scores the true tokens at the masked positions with `method`. For mdlm, `mdlmSamples`
 * Monte-Carlo draws of t estimate the continuous-time ELBO (see mdlmElbo). Past `maxTimeMs`, it
 * throws InfillTimeout (checked before each model pass).
 */
export async function scoreWithMethod(
  m: Maria,
  ids: number[],
  masked: boolean[],
  method: string,
  options: { mdlmSamples?: number; seed?: number; maxTimeMs?: number } = {},
): Promise<MethodScore> {
  const check = deadlineCheck(performance.now(), options.maxTimeMs, 'scoring');
  const seq = m.parse({ ids, masked }, true);
  const positions = seq.masked.flatMap((x, i) => (x ? [i] : []));
  const K = positions.length;
  const V = m.head.vocabSize;
  const lp = new Float64Array(V);
  let total = 0;
  switch (method) {
    case 'maria': {
      const r = await m.score(ids, masked);
      return { nll: r.nll, tokens: K, method, kind: 'exact' };
    }
    case 'mlm-oneshot': {
      const batch = await mlmBatch(m, [ids], [masked], [positions]);
      for (const p of positions) total -= mlmRow(m, batch, 0, p, lp)[ids[p]];
      return { nll: total / K, tokens: K, method, kind: 'independent' };
    }
    case 'mlm-l2r': {
      // Row k reveals the first k masked tokens: all |M| factors of the chain rule in few batches.
      const masks = positions.map((_, k) => masked.map((x, i) => x && i >= positions[k]));
      await forChunks(masks, 16, async (chunk, start) => {
        check(`scored ${start} of ${K} tokens`);
        const batch = await mlmBatch(m, chunk.map(() => ids), chunk, chunk.map((_, b) => [positions[start + b]]));
        chunk.forEach((_, b) => (total -= mlmRow(m, batch, b, positions[start + b], lp)[ids[positions[start + b]]]));
      });
      return { nll: total / K, tokens: K, method, kind: 'exact' };
    }
    case 'ar': {
      const ar = await plainArModel(m);
      const last = positions[K - 1];
      const out = await ar.forward([m.manifest.arBosId, ...ids.slice(0, last)]);
      for (const p of positions) {
        logSoftmaxRow(out.logits.subarray(p * V, (p + 1) * V), lp);
        total -= lp[ids[p]];
      }
      return { nll: total / K, tokens: K, method, kind: 'exact' };
    }
    case 'mdlm': {
      // The continuous-time bound (not the T-step one of `maria eval`'s mdlm-T).
      const bound = await mdlmBound(m, ids, masked, { draws: options.mdlmSamples ?? 16, seed: (options.seed ?? 0) ^ 0xe1b0 }, check);
      return { nll: bound / K, tokens: K, method, kind: 'elbo' };
    }
    default:
      throw new InputError(`unknown method "${method}" (choose from ${METHODS.join(', ')})`);
  }
}

export interface BaselineInfillOptions extends InfillOptions {
  /** mdlm: number of denoising steps (default: the number of masked tokens). */
  steps?: number;
}

/**
 * Infills with a baseline method (same result shape as Maria.infill). `maria` delegates to it.
 * As with Maria, each sample draws from its own generator seeded from (seed, sample index), and
 * past `maxTimeMs` it throws InfillTimeout (checked before each model pass).
 */
export async function infillWithMethod(m: Maria, input: string | MaskedSequence, method: string, options: BaselineInfillOptions = {}): Promise<InfillResult> {
  if (method === 'maria') return m.infill(input, options);
  if (!(METHODS as readonly string[]).includes(method)) throw new InputError(`unknown method "${method}" (choose from ${METHODS.join(', ')})`);
  checkSampling(options);
  const t0 = performance.now();
  const check = deadlineCheck(t0, options.maxTimeMs, 'infilling');
  const seq = m.parse(input);
  const N = options.samples ?? 1;
  if (!Number.isInteger(N) || N < 1) throw new InputError(`samples must be a positive integer, got ${N}`);
  const nAlt = options.alternatives ?? 5;
  const V = m.head.vocabSize;
  const seed = options.seed ?? 0;
  const rands = Array.from({ length: N }, (_, b) => rowRandom(seed, b));
  const banned = new Set(m.manifest.bannedIds);
  const rows = Array.from({ length: N }, () => [...seq.ids]);
  const filled: FilledToken[][] = Array.from({ length: N }, () => []);
  const lp = new Float64Array(V);
  const choose = (b: number, position: number): void => {
    for (const id of banned) lp[id] = -Infinity;
    // Renormalise after banning so reported log-probabilities are of the distribution sampled from.
    let max = -Infinity;
    for (let v = 0; v < V; v++) if (lp[v] > max) max = lp[v];
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(lp[v] - max);
    const lse = max + Math.log(s);
    for (let v = 0; v < V; v++) lp[v] -= lse;
    const id = sampleToken(lp, options, rands[b]);
    rows[b][position] = id;
    const alternatives = topIds(lp, nAlt).map((a) => ({ token: m.tokenizer.idToToken(a) ?? '', id: a, logprob: lp[a] }));
    filled[b].push({ position, token: m.tokenizer.idToToken(id) ?? '', id, logprob: lp[id], alternatives });
  };
  const positions = seq.masked.flatMap((x, i) => (x ? [i] : []));
  const progress = (): string => `filled ${filled[0].length} of ${positions.length} tokens`;
  let passes = 0;
  if (method === 'mlm-oneshot') {
    const batch = await mlmBatch(m, [seq.ids], [seq.masked], [positions]);
    passes++;
    for (let b = 0; b < N; b++) {
      for (const p of positions) {
        mlmRow(m, batch, 0, p, lp);
        choose(b, p);
      }
    }
  } else if (method === 'mlm-l2r' || method === 'mdlm') {
    // Each row keeps its own set of still-masked positions; every step is one MLM pass over all rows.
    const still = Array.from({ length: N }, () => [...seq.masked]);
    const T = method === 'mlm-l2r' ? positions.length : (options.steps ?? positions.length);
    if (!Number.isInteger(T) || T < 1) throw new InputError(`steps must be a positive integer, got ${T}`);
    // Which positions a step reveals does not depend on the MLM's output, so each step decides
    // them first and runs the MLM only when something is revealed (with T > |M| most steps reveal
    // nothing), with logits at the revealed positions only. Each row draws from its own generator,
    // reveals then tokens, so the samples are those of the plain step-by-step sampler.
    for (let s = T; s >= 1; s--) {
      const reveals = Array.from({ length: N }, (_, b): number[] =>
        method === 'mlm-l2r'
          ? [positions[T - s]]
          : positions.filter((p) => still[b][p] && (s === 1 || rands[b]() < 1 / s)), // (t−s')/t with t = s/T, s' = (s−1)/T
      );
      if (reveals.every((r) => r.length === 0)) continue;
      check(progress());
      const batch = await mlmBatch(m, rows, still, reveals);
      passes++;
      for (let b = 0; b < N; b++) {
        for (const p of reveals[b]) {
          mlmRow(m, batch, b, p, lp);
          choose(b, p);
          still[b][p] = false;
        }
      }
    }
    for (const f of filled) f.sort((a, b) => a.position - b.position);
  } else if (method === 'ar') {
    const ar = await plainArModel(m);
    const cache = ar.newCache(N);
    let pending = Array.from({ length: N }, () => [m.manifest.arBosId]);
    for (let i = 0; i < seq.ids.length; i++) {
      if (!seq.masked[i]) {
        for (const p of pending) p.push(seq.ids[i]);
        continue;
      }
      check(progress());
      const out = await ar.step(cache, pending, {}, { logits: 'last' });
      passes++;
      pending = [];
      for (let b = 0; b < N; b++) {
        logSoftmaxRow(out.logits.subarray(b * V, (b + 1) * V), lp);
        choose(b, i);
        pending.push([rows[b][i]]);
      }
    }
  }
  const totalMs = performance.now() - t0;
  const filledTokens = N * positions.length;
  const samples: InfillSample[] = rows.map((ids, b) => ({ text: m.tokenizer.decode(ids), ids, filled: filled[b] }));
  return { samples, timing: { totalMs, mlmMs: 0, arMs: 0, arCalls: passes, filledTokens, tokensPerSecond: filledTokens / (totalMs / 1000) } };
}
