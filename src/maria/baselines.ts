// The methods MARIA is measured against, over the same MLM and AR (definitions in MARIA.md):
//   mlm-oneshot  one MLM pass, every mask filled independently (not a joint likelihood)
//   mlm-l2r      one MLM pass per masked token, revealing left to right (exact likelihood)
//   ar           the AR alone, left context only (exact likelihood of x_M given the left context)
//   mdlm         masked-diffusion sampling with T steps using the MLM as the denoiser; its
//                likelihood is the MDLM ELBO (an upper bound on the NLL), estimated by Monte Carlo
//   maria-poe    MARIA with the untrained product-of-experts head (load the bundle with it)
// SEDD's absorbing-state sampler with an un-time-conditioned MLM reduces to the mdlm sampler here.
import { mulberry32 } from '../engine/random.js';
import { CausalLM } from '../models/causal-lm.js';
import type { Maria, InfillResult, InfillSample, FilledToken, InfillOptions } from './maria.js';
import { InputError, type MaskedSequence } from './masks.js';
import { checkSampling, logSoftmaxRow, sampleToken, topIds } from './sampling.js';

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

/** The AR without MARIA's head (its own logits), built once per Maria from the loaded weights. */
export function plainArModel(m: Maria): Promise<CausalLM> {
  let p = plainAr.get(m);
  if (!p) {
    p = CausalLM.fromParams(m.ar.family, m.ar.config, m.ar.params, {}, m.ar.dir);
    plainAr.set(m, p);
  }
  return p;
}

/** Releases the plain AR session a baseline created. */
export async function releaseBaselines(m: Maria): Promise<void> {
  const p = plainAr.get(m);
  if (p) await (await p).release();
  plainAr.delete(m);
}

/** Log-probabilities over the AR vocabulary from one row of MLM logits. */
function mlmLogProbs(m: Maria, row: Float32Array, out: Float64Array): Float64Array {
  const V = m.head.vocabSize;
  const mapped = new Float32Array(V);
  for (let v = 0; v < V; v++) {
    const j = m.arToMlm ? m.arToMlm[v] : v;
    mapped[v] = j >= 0 && j < row.length ? row[j] : -Infinity;
  }
  return logSoftmaxRow(mapped, out);
}

/** MLM logits for one pass over rows that each have their own mask (masked[i] → [MASK]). */
async function mlmBatch(m: Maria, rows: number[][], masks: boolean[][]): Promise<{ logits: Float32Array; T: number; offset: number; Vm: number }> {
  const { mlmPrefixIds: pre, mlmSuffixIds: post, mlmMaskId } = m.manifest;
  const inputs = rows.map((ids, b) => [...pre, ...ids.map((id, i) => (masks[b][i] ? mlmMaskId : m.arToMlm ? m.arToMlm[id] : id)), ...post]);
  const out = await m.mlm.forward(inputs);
  return { logits: out.logits, T: out.T, offset: pre.length, Vm: out.logits.length / (out.B * out.T) };
}

/** The MLM's log-probabilities at text position i of batch row b. */
function mlmRow(m: Maria, batch: Awaited<ReturnType<typeof mlmBatch>>, b: number, i: number, out: Float64Array): Float64Array {
  const start = (b * batch.T + batch.offset + i) * batch.Vm;
  return mlmLogProbs(m, batch.logits.subarray(start, start + batch.Vm), out);
}

/** Splits work into MLM batches of at most `size` rows. */
async function forChunks<T>(items: T[], size: number, fn: (chunk: T[], start: number) => Promise<void>): Promise<void> {
  for (let s = 0; s < items.length; s += size) await fn(items.slice(s, s + size), s);
}

/**
 * Scores the true tokens at the masked positions with `method`. `mdlmSamples` Monte-Carlo draws
 * of t estimate the ELBO (stratified over (0,1), seeded).
 */
export async function scoreWithMethod(m: Maria, ids: number[], masked: boolean[], method: string, options: { mdlmSamples?: number; seed?: number } = {}): Promise<MethodScore> {
  const seq = m.parse({ ids, masked });
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
      const batch = await mlmBatch(m, [ids], [masked]);
      for (const p of positions) total -= mlmRow(m, batch, 0, p, lp)[ids[p]];
      return { nll: total / K, tokens: K, method, kind: 'independent' };
    }
    case 'mlm-l2r': {
      // Row k reveals the first k masked tokens: all |M| factors of the chain rule in few batches.
      const masks = positions.map((_, k) => masked.map((x, i) => x && !positions.slice(0, k).includes(i)));
      await forChunks(masks, 16, async (chunk, start) => {
        const batch = await mlmBatch(m, chunk.map(() => ids), chunk);
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
      // MDLM's continuous-time bound with the linear schedule α_t = 1 − t:
      //   −log p(x_M | x_¬M) ≤ E_t[(1/t) Σ_{i∈M masked in z_t} −log p(x_i | z_t)]
      const S = options.mdlmSamples ?? 16;
      const rand = mulberry32((options.seed ?? 0) ^ 0xe1b0);
      const draws = Array.from({ length: S }, (_, s) => {
        const t = (s + rand()) / S;
        return { t, mask: masked.map((x) => x && rand() < t) };
      });
      await forChunks(draws, 16, async (chunk) => {
        const batch = await mlmBatch(m, chunk.map(() => ids), chunk.map((d) => d.mask));
        chunk.forEach((d, b) => {
          for (const p of positions) if (d.mask[p]) total -= mlmRow(m, batch, b, p, lp)[ids[p]] / d.t;
        });
      });
      return { nll: total / S / K, tokens: K, method, kind: 'elbo' };
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
 */
export async function infillWithMethod(m: Maria, input: string | MaskedSequence, method: string, options: BaselineInfillOptions = {}): Promise<InfillResult> {
  if (method === 'maria') return m.infill(input, options);
  if (!(METHODS as readonly string[]).includes(method)) throw new InputError(`unknown method "${method}" (choose from ${METHODS.join(', ')})`);
  checkSampling(options);
  const t0 = performance.now();
  const seq = m.parse(input);
  const N = options.samples ?? 1;
  if (!Number.isInteger(N) || N < 1) throw new InputError(`samples must be a positive integer, got ${N}`);
  const nAlt = options.alternatives ?? 5;
  const V = m.head.vocabSize;
  const rand = mulberry32(options.seed ?? 0);
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
    const id = sampleToken(lp, options, rand);
    rows[b][position] = id;
    const alternatives = topIds(lp, nAlt).map((a) => ({ token: m.tokenizer.idToToken(a) ?? '', id: a, logprob: lp[a] }));
    filled[b].push({ position, token: m.tokenizer.idToToken(id) ?? '', id, logprob: lp[id], alternatives });
  };
  const positions = seq.masked.flatMap((x, i) => (x ? [i] : []));
  let passes = 0;
  if (method === 'mlm-oneshot') {
    const batch = await mlmBatch(m, [seq.ids], [seq.masked]);
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
    // A step that reveals nothing leaves the MLM's input unchanged: reuse its output (the sampler
    // is the same; with T > |M| most steps reveal nothing).
    let batch: Awaited<ReturnType<typeof mlmBatch>> | null = null;
    for (let s = T; s >= 1; s--) {
      if (!batch) {
        batch = await mlmBatch(m, rows, still);
        passes++;
      }
      const current = batch;
      for (let b = 0; b < N; b++) {
        const reveal: number[] =
          method === 'mlm-l2r'
            ? [positions[T - s]]
            : positions.filter((p) => still[b][p] && (s === 1 || rand() < 1 / s)); // (t−s')/t with t = s/T, s' = (s−1)/T
        for (const p of reveal) {
          mlmRow(m, current, b, p, lp);
          choose(b, p);
          still[b][p] = false;
          batch = null;
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
      const out = await ar.step(cache, pending);
      passes++;
      const T = out.T;
      pending = [];
      for (let b = 0; b < N; b++) {
        logSoftmaxRow(out.logits.subarray((b * T + T - 1) * V, (b * T + T) * V), lp);
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
