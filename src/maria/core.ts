// MARIA's infilling loop and exact scoring over an abstract runtime: one MLM pass over the masked
// text (with the head's MLM half at every masked position), AR prefill of each unmasked run, one
// cached AR step per masked token (with the head's AR half compiled into the step graph). Nothing
// here touches an ONNX Runtime package or Node: Maria (onnxruntime-node) and the in-browser runner
// (onnxruntime-web, src/web/browser-maria.ts) give the same runtime calls to the same code, so the
// same graphs produce the same tokens.
import type { KvCache } from '../models/kv-cache.js';
import { InputError, parseMaskedText, type MaskedSequence } from './masks.js';
import { checkSampling, logSoftmaxRow, rowRandom, sampleToken, topIds, type SamplingOptions } from './sampling.js';

export interface InfillOptions extends SamplingOptions {
  /**
   * Seed of the sampler (default 0). Each sample has its own generator, seeded from (seed, sample
   * index), so sample b is the same whatever the number of samples.
   */
  seed?: number;
  /** Number of samples, run as one batch (default 1). */
  samples?: number;
  /** Give up after this many milliseconds. */
  maxTimeMs?: number;
  /** Alternatives reported per filled token (default 5). */
  alternatives?: number;
}

export interface FilledToken {
  /** Token index in the text (0-based, decoder tokens, specials excluded). */
  position: number;
  token: string;
  id: number;
  /**
   * log p of the chosen token under the distribution sampled from, before temperature: the model's,
   * renormalised without the special tokens infilling never produces (score() uses the full one).
   */
  logprob: number;
  alternatives: Array<{ token: string; id: number; logprob: number }>;
}

export interface InfillSample {
  text: string;
  ids: number[];
  filled: FilledToken[];
}

export interface InfillResult {
  samples: InfillSample[];
  timing: { totalMs: number; mlmMs: number; arMs: number; arCalls: number; filledTokens: number; tokensPerSecond: number };
}

/** One token as it is chosen, for streaming. */
export interface InfillEvent extends FilledToken {
  sample: number;
}

export interface ScoreResult {
  /** log p(x_i | x_<i, x~) for each masked position, in order. */
  tokens: Array<{ position: number; token: string; id: number; logprob: number }>;
  /** Σ log p over the masked tokens: log p(x_M | x_¬M), exact. */
  logprob: number;
  /** Mean negative log-likelihood per masked token (natural log). */
  nll: number;
}

export class InfillTimeout extends Error {
  override name = 'InfillTimeout';
}

/** Input: text with [MASK] / [MASK:n] markers, or ids with a mask. */
export type InfillInput = string | MaskedSequence;

/** What the loop needs to know about a bundle. */
export interface MariaSpec {
  /** The MLM's mask token id. */
  mlmMaskId: number;
  /** Ids wrapped around the text for the MLM. */
  mlmPrefixIds: number[];
  mlmSuffixIds: number[];
  /** The token fed to the AR first. */
  arBosId: number;
  /** AR ids never produced by infilling. */
  bannedIds: number[];
  /** The head's (the AR's) vocabulary. */
  vocabSize: number;
  /** The longest text (in decoder tokens) both models can take. */
  maxTokens: number;
  /** AR id → MLM id (null when the ids are identical); −1 where the MLM lacks the token. */
  arToMlm: ArrayLike<number> | null;
  /** The MLM's vocabulary (its embedding rows). */
  mlmVocabSize: number;
  /** The MLM's unknown token, if it has one: what an AR token the MLM lacks becomes. */
  mlmUnkId: number | null;
}

/** What building the MLM's input row needs (a MariaSpec has it). */
export type MlmRowSpec = Pick<MariaSpec, 'mlmMaskId' | 'mlmPrefixIds' | 'mlmSuffixIds' | 'arToMlm' | 'mlmVocabSize' | 'mlmUnkId'>;

/**
 * The MLM's input row for a text of AR ids: the prefix, each id mapped to the MLM's ([MASK] at the
 * masked positions), the suffix. An unmasked token the MLM lacks (−1 in arToMlm, or an id past the
 * MLM's vocabulary) becomes the MLM's unknown token; without one it is an InputError naming the
 * token. (Never a −1 or out-of-range id: ONNX Gather would read a wrong embedding row or fail.)
 */
export function mlmInputRow(spec: MlmRowSpec, ids: readonly number[], masked: readonly boolean[], tokenName?: (id: number) => string | null): number[] {
  const { mlmMaskId, mlmPrefixIds, mlmSuffixIds, arToMlm, mlmVocabSize, mlmUnkId } = spec;
  const row = new Array<number>(mlmPrefixIds.length + ids.length + mlmSuffixIds.length);
  let at = 0;
  for (const id of mlmPrefixIds) row[at++] = id;
  for (let i = 0; i < ids.length; i++) {
    if (masked[i]) {
      row[at++] = mlmMaskId;
      continue;
    }
    const id = ids[i];
    const j = arToMlm ? arToMlm[id] : id;
    if (Number.isInteger(j) && j >= 0 && j < mlmVocabSize) row[at++] = j;
    else if (mlmUnkId !== null) row[at++] = mlmUnkId;
    else {
      const name = tokenName?.(id);
      throw new InputError(`token ${name != null ? `${JSON.stringify(name)} (id ${id})` : `id ${id}`} at position ${i} is not in the MLM's vocabulary, and the MLM has no unknown token to stand for it`);
    }
  }
  for (const id of mlmSuffixIds) row[at++] = id;
  return row;
}

/** The tokenizer calls the loop makes (TextTokenizer provides them). */
export interface LoopTokenizer {
  encode(text: string): { ids: number[] };
  decode(ids: readonly number[]): string;
  idToToken(id: number): string | null;
}

/** The model calls the loop makes, on whatever runtime runs the graphs. */
export interface MariaRuntime {
  readonly spec: MariaSpec;
  readonly tokenizer: LoopTokenizer;
  /**
   * One MLM pass over one full row (prefix and suffix included) with the head's MLM half at the
   * row's positions `at`: maria_mlm_logits (W_M·h_mlm + b3) [K, V] flattened.
   */
  encodeMlm(ids: number[], at: number[]): Promise<Float32Array>;
  /** An empty AR cache for `batch` rows. */
  newCache(batch: number): KvCache;
  /**
   * One AR step (the step graph with the head's AR half): appends `rows` to the cache and returns
   * maria_logits [B, K, V] flattened, decoded at the K new positions `headIndex`, adding
   * `mlmLogits` [B, K, V] (encodeMlm's rows for the tokens those positions predict).
   */
  headStep(cache: KvCache, rows: number[][], headIndex: number[], mlmLogits: Float32Array): Promise<Float32Array>;
}

/** The longest text (in decoder tokens) an MLM and an AR of these contexts can take together. */
export function maxTokensOf(mlmMaxPositions: number, arMaxPositions: number, mlmPrefix: number, mlmSuffix: number): number {
  // The AR sees [BOS] x_0 … x_{n-2}: the last token is predicted, never fed.
  return Math.min(mlmMaxPositions - mlmPrefix - mlmSuffix, arMaxPositions);
}

/**
 * Tokenizes text with mask markers (or checks given ids and mask) against the bundle's limits. For
 * infilling the ids at masked positions are placeholders; for `scoring` they are the tokens scored,
 * so they are checked too.
 */
export function parseInput(rt: Pick<MariaRuntime, 'spec' | 'tokenizer'>, input: InfillInput, scoring = false): MaskedSequence {
  const seq = typeof input === 'string' ? parseMaskedText(input, (s) => rt.tokenizer.encode(s).ids) : input;
  if (seq.ids.length !== seq.masked.length) throw new InputError(`ids (${seq.ids.length}) and mask (${seq.masked.length}) differ in length`);
  if (seq.ids.length > rt.spec.maxTokens) {
    throw new InputError(`the text is ${seq.ids.length} tokens long; these models take at most ${rt.spec.maxTokens}`);
  }
  if (!seq.masked.some(Boolean)) throw new InputError('nothing is masked');
  const V = rt.spec.vocabSize;
  seq.ids.forEach((id, i) => {
    if ((scoring || !seq.masked[i]) && !(Number.isInteger(id) && id >= 0 && id < V)) {
      throw new InputError(`${seq.masked[i] ? 'scored ' : ''}token id ${id} at position ${i} is outside the vocabulary (0..${V - 1})`);
    }
  });
  return seq;
}

/**
 * The head's MLM half, W_M·h_mlm + b3, at the text positions `positions`: [K, V] (one bidirectional
 * pass over the masked text).
 */
export async function mlmHeadLogits(rt: MariaRuntime, seq: MaskedSequence, positions: number[]): Promise<Float32Array> {
  const pre = rt.spec.mlmPrefixIds.length;
  return rt.encodeMlm(
    mlmInputRow(rt.spec, seq.ids, seq.masked, (id) => rt.tokenizer.idToToken(id)),
    positions.map((p) => pre + p),
  );
}

/**
 * Fills the masked positions left to right (the samples run as one batch), yielding each token as
 * it is chosen; `done` receives the whole result at the end.
 */
export async function* infillLoop(rt: MariaRuntime, input: InfillInput, options: InfillOptions, done: (r: InfillResult) => void): AsyncGenerator<InfillEvent> {
  checkSampling(options);
  const N = options.samples ?? 1;
  if (!Number.isInteger(N) || N < 1) throw new InputError(`samples must be a positive integer, got ${N}`);
  const nAlt = options.alternatives ?? 5;
  const t0 = performance.now();
  const deadline = options.maxTimeMs ? t0 + options.maxTimeMs : Infinity;
  const seq = parseInput(rt, input);
  const n = seq.ids.length;
  const V = rt.spec.vocabSize;
  const tokenizer = rt.tokenizer;
  const positions = seq.masked.flatMap((m, i) => (m ? [i] : []));
  const H = await mlmHeadLogits(rt, seq, positions);
  const mlmMs = performance.now() - t0;

  const seed = options.seed ?? 0;
  const rands = Array.from({ length: N }, (_, b) => rowRandom(seed, b));
  const banned = new Set(rt.spec.bannedIds);
  const rows = Array.from({ length: N }, () => [...seq.ids]);
  const filled: FilledToken[][] = Array.from({ length: N }, () => []);
  const cache = rt.newCache(N);
  let pending: number[][] = Array.from({ length: N }, () => [rt.spec.arBosId]);
  let arCalls = 0;
  const logp = new Float64Array(V);
  const mlmLogits = new Float32Array(N * V);
  for (let i = 0, k = 0; i < n; i++) {
    if (!seq.masked[i]) {
      for (const p of pending) p.push(seq.ids[i]);
      continue;
    }
    if (performance.now() > deadline) throw new InfillTimeout(`infilling took longer than ${options.maxTimeMs} ms (filled ${filled[0].length} of ${positions.length} tokens)`);
    const T = pending[0].length;
    // The MLM half is the same for every sample: each row of the batch gets a copy.
    for (let b = 0; b < N; b++) mlmLogits.set(H.subarray(k * V, (k + 1) * V), b * V);
    k++;
    const logits = await rt.headStep(cache, pending, [T - 1], mlmLogits);
    arCalls++;
    pending = [];
    for (let b = 0; b < N; b++) {
      const row = logits.subarray(b * V, (b + 1) * V); // this step's output, ours to change
      for (const id of banned) row[id] = -Infinity;
      logSoftmaxRow(row, logp);
      const id = sampleToken(logp, options, rands[b]);
      const alternatives = topIds(logp, nAlt).map((a) => ({ token: tokenizer.idToToken(a) ?? '', id: a, logprob: logp[a] }));
      const tok: FilledToken = { position: i, token: tokenizer.idToToken(id) ?? '', id, logprob: logp[id], alternatives };
      rows[b][i] = id;
      filled[b].push(tok);
      pending.push([id]);
      yield { ...tok, sample: b };
    }
  }
  const totalMs = performance.now() - t0;
  const filledTokens = N * positions.length;
  done({
    samples: rows.map((ids, b) => ({ text: tokenizer.decode(ids), ids, filled: filled[b] })),
    timing: { totalMs, mlmMs, arMs: totalMs - mlmMs, arCalls, filledTokens, tokensPerSecond: filledTokens / (totalMs / 1000) },
  });
}

/** Runs the loop to the end: the whole result. */
export async function infillAll(rt: MariaRuntime, input: InfillInput, options: InfillOptions = {}): Promise<InfillResult> {
  const samples: InfillSample[] = [];
  let timing: InfillResult['timing'] | null = null;
  for await (const ev of infillLoop(rt, input, options, (r) => ((timing = r.timing), samples.push(...r.samples)))) void ev;
  return { samples, timing: timing! };
}

/**
 * Exact log p(x_M | x_¬M) of the true tokens at the masked positions: one MLM pass on the masked
 * text and one teacher-forced AR pass.
 */
export async function scoreMasked(rt: MariaRuntime, ids: number[], masked: boolean[]): Promise<ScoreResult> {
  const seq = parseInput(rt, { ids, masked }, true);
  const positions = masked.flatMap((m, i) => (m ? [i] : []));
  const mlmLogits = await mlmHeadLogits(rt, seq, positions);
  const V = rt.spec.vocabSize;
  const K = positions.length;
  const last = positions[K - 1];
  // AR input [BOS, x_0 … x_{last-1}]: the state at index p predicts x_p.
  const logits = await rt.headStep(rt.newCache(1), [[rt.spec.arBosId, ...ids.slice(0, last)]], positions, mlmLogits);
  const logp = new Float64Array(V);
  const tokens = positions.map((p, k) => {
    logSoftmaxRow(logits.subarray(k * V, (k + 1) * V), logp);
    return { position: p, token: rt.tokenizer.idToToken(ids[p]) ?? '', id: ids[p], logprob: logp[ids[p]] };
  });
  const total = tokens.reduce((a, t) => a + t.logprob, 0);
  return { tokens, logprob: total, nll: -total / K };
}
