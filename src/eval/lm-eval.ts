// Held-out evaluation of the default language models on the Brown Corpus (never trained on):
//
//   brownPassages       the test set: windows of `length` text tokens cut from Brown documents
//   arPerplexity        causal LM: exp(mean NLL) of every passage token, fed as [BOS] + passage
//   mlmPerplexity       masked LM: [BOS] passage [EOS] with i.i.d. masks at a rate, NLL of the true
//                       tokens at the masked positions from ONE pass (each token scored on its own,
//                       the standard MLM metric, not a joint likelihood)
//   BigramModel         an interpolated Kneser–Ney bigram trained on the training-split token
//                       stream, scored as an AR (p(x_i | x_{i-1})) and as a two-sided masked-token
//                       predictor (p(x_i | x_{i-1}, x_{i+1}) ∝ p(x_i | x_{i-1}) p(x_{i+1} | x_i))
//   arSamples, mlmFills the samples shown in the model cards (first five, fixed seed, no selection)
//
// Every random choice is seeded; the same arguments give the same passages, masks and samples.
import { loadBrown, seededHash, type BrownDoc } from '../data/corpus.js';
import { mulberry32 } from '../engine/random.js';
import { logSoftmaxRow, sampleToken, topIds } from '../maria/sampling.js';
import type { CausalLM } from '../models/causal-lm.js';
import type { MaskedLM } from '../models/masked-lm.js';
import type { TextTokenizer } from '../tokenizer/tokenizer.js';
import { maskRows } from '../train/data.js';

// ---------------------------------------------------------------------------------------------
// The Brown test set

export interface Passage {
  /** Brown sample id, e.g. `ca01`. */
  docId: string;
  genre: string;
  /** Offset of the window in the document's token sequence (a multiple of the length). */
  start: number;
  /** `length` text token ids (never a special token). */
  ids: number[];
}

export interface PassageOptions {
  /** Text tokens per passage (default 128). */
  length?: number;
  /** Number of passages (default 200). */
  n?: number;
  /** Seed of the document order and of the window chosen in each document (default 0). */
  seed?: number;
  /** The Brown documents (default: loadBrown()); tests pass a few of their own. */
  docs?: BrownDoc[];
}

/**
 * Windows of `length` text tokens cut from the Brown documents, deterministically:
 *
 * 1. each document's text (paragraphs joined by a blank line) is tokenized on its own, without
 *    special tokens, and cut into non-overlapping windows at offsets 0, length, 2·length, …
 *    (the tail shorter than `length` is dropped; a window holding a special id is dropped);
 * 2. documents are ordered by a seeded hash of their id, and the windows of each document by a
 *    seeded hash of (id, window index);
 * 3. passages are taken round-robin: the first window of every document in document order, then
 *    the second window of every document, … and the first `n` are returned.
 *
 * So n ≤ 500 gives n passages from n different Brown samples (spread over the genres in
 * proportion to the corpus), one randomly placed window each; the result for n is a prefix of the
 * result for any larger n with the same length and seed.
 */
export function brownPassages(tokenizer: TextTokenizer, options: PassageOptions = {}): Passage[] {
  const length = options.length ?? 128;
  const n = options.n ?? 200;
  const seed = options.seed ?? 0;
  if (!Number.isInteger(length) || length < 1) throw new RangeError(`passage length must be a positive integer, got ${length}`);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`the number of passages must be a positive integer, got ${n}`);
  if (!Number.isInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  const docs = [...(options.docs ?? loadBrown())].sort((a, b) => seededHash(seed, `brown/${a.id}`) - seededHash(seed, `brown/${b.id}`) || (a.id < b.id ? -1 : 1));
  const special = new Set<number>();
  for (const s of Object.values(tokenizer.specialTokens)) if (s) special.add(s.id);
  // Windows per document, tokenized lazily: with n ≤ documents only the first n are needed.
  const windows: Array<Array<{ start: number; ids: number[] }> | undefined> = new Array(docs.length);
  const windowsOf = (d: number): Array<{ start: number; ids: number[] }> => {
    let w = windows[d];
    if (w) return w;
    const doc = docs[d];
    const ids = tokenizer.encode(doc.text).ids;
    w = [];
    for (let k = 0; (k + 1) * length <= ids.length; k++) {
      const win = ids.slice(k * length, (k + 1) * length);
      if (win.some((id) => special.has(id) || tokenizer.isSpecialId(id))) continue;
      w.push({ start: k * length, ids: win });
    }
    const rank = new Map(w.map((x) => [x.start, seededHash(seed, `brown/${doc.id}#${x.start / length}`)]));
    w.sort((a, b) => rank.get(a.start)! - rank.get(b.start)! || a.start - b.start);
    windows[d] = w;
    return w;
  };
  const out: Passage[] = [];
  for (let round = 0; out.length < n; round++) {
    let any = false;
    for (let d = 0; d < docs.length && out.length < n; d++) {
      const w = windowsOf(d);
      if (round >= w.length) continue;
      any = true;
      out.push({ docId: docs[d].id, genre: docs[d].genre, start: w[round].start, ids: w[round].ids });
    }
    if (!any) throw new RangeError(`Brown holds only ${out.length} non-overlapping windows of ${length} tokens, fewer than the ${n} asked for`);
  }
  return out;
}

/**
 * I.i.d. masks at `rate` for each passage, as in pretraining (maskRows: each token masked with
 * probability `rate`, at least one per passage), from a generator seeded by (seed, rate, passage
 * index), so a passage's mask does not depend on the other passages or on the batch size.
 */
export function maskPassages(passages: readonly Passage[], rate: number, seed = 0): boolean[][] {
  if (!(rate > 0 && rate <= 1)) throw new RangeError(`mask rate must be in (0, 1], got ${rate}`);
  return passages.map((p, i) => {
    const rand = mulberry32(Math.floor(seededHash(seed, `mask/${rate}/${i}`) * 2 ** 32));
    const { targets } = maskRows([p.ids], -1, () => false, rand, rate);
    return targets[0].map((t) => t >= 0);
  });
}

// ---------------------------------------------------------------------------------------------
// Perplexity

export interface Perplexity {
  /** Mean negative log-likelihood per scored token (natural log). */
  nll: number;
  /** Scored tokens. */
  tokens: number;
  /** exp(nll). */
  ppl: number;
}

function perplexity(sum: number, tokens: number): Perplexity {
  const nll = tokens > 0 ? sum / tokens : NaN;
  return { nll, tokens, ppl: Math.exp(nll) };
}

/** -log p(target) from one row of logits (log-softmax over the whole vocabulary). */
function nllOf(logits: Float32Array, target: number, scratch: Float64Array): number {
  return -logSoftmaxRow(logits, scratch)[target];
}

export interface BatchOptions {
  /** Rows per forward call (default 8). */
  batch?: number;
}

/**
 * Test perplexity of a causal LM: every passage fed as [BOS] + passage (one forward call per batch
 * of equal-length rows) and every passage token scored given [BOS] and the tokens before it.
 */
export async function arPerplexity(ar: CausalLM, passages: readonly Passage[], bos: number, options: BatchOptions = {}): Promise<Perplexity> {
  const batch = options.batch ?? 8;
  const V = ar.config.vocabSize;
  const scratch = new Float64Array(V);
  let sum = 0;
  let tokens = 0;
  for (let s = 0; s < passages.length; s += batch) {
    const rows = passages.slice(s, s + batch).map((p) => [bos, ...p.ids]);
    const out = await ar.step(ar.newCache(rows.length), rows);
    rows.forEach((row, b) => {
      for (let t = 0; t + 1 < row.length; t++) {
        const off = (b * out.T + t) * V;
        sum += nllOf(out.logits.subarray(off, off + V), row[t + 1], scratch);
        tokens++;
      }
    });
  }
  return perplexity(sum, tokens);
}

/**
 * Masked-token perplexity of a masked LM: each passage fed as [BOS] passage [EOS] with [MASK] at
 * the masked positions, one pass; the NLL of the true token at every masked position, each on its
 * own (the standard MLM metric; not a joint likelihood of the masked tokens).
 */
export async function mlmPerplexity(
  mlm: MaskedLM,
  passages: readonly Passage[],
  masks: readonly boolean[][],
  specials: { bos: number; eos: number; mask: number; pad?: number },
  options: BatchOptions = {},
): Promise<Perplexity> {
  const batch = options.batch ?? 8;
  const V = mlm.config.vocabSize;
  const scratch = new Float64Array(V);
  let sum = 0;
  let tokens = 0;
  for (let s = 0; s < passages.length; s += batch) {
    const chunk = passages.slice(s, s + batch);
    const rows = chunk.map((p, j) => [specials.bos, ...p.ids.map((id, i) => (masks[s + j][i] ? specials.mask : id)), specials.eos]);
    const out = await mlm.forward(rows, { padId: specials.pad ?? 0 });
    chunk.forEach((p, b) => {
      p.ids.forEach((id, i) => {
        if (!masks[s + b][i]) return;
        const off = (b * out.T + i + 1) * V;
        sum += nllOf(out.logits.subarray(off, off + V), id, scratch);
        tokens++;
      });
    });
  }
  return perplexity(sum, tokens);
}

// ---------------------------------------------------------------------------------------------
// The bigram baseline

/**
 * An interpolated Kneser–Ney bigram model (Chen & Goodman 1998, §3.6, one discount per order,
 * D = n1 / (n1 + 2·n2) from the counts of counts), over the whole vocabulary (special ids too):
 *
 *   p(w | v)   = max(c(v,w) − D, 0) / c(v) + D · N1+(v•) / c(v) · p_cont(w)     (p_cont(w) if c(v) = 0)
 *   p_cont(w)  = max(N1+(•w) − D1, 0) / N1+(••) + D1 · |{w : N1+(•w) > 0}| / N1+(••) · 1/V
 *
 * where c(v) = Σ_w c(v,w), N1+(v•) is the number of distinct successors of v, N1+(•w) the number
 * of distinct predecessors of w (the continuation count), N1+(••) the number of distinct bigrams,
 * and D1 the discount of the continuation counts (same estimator), so that every token, seen or
 * not, has a non-zero probability. Also keeps an add-one (Laplace) unigram
 * p_1(w) = (c(w) + 1) / (N + V), the prior of the two-sided predictor when the left neighbour is
 * unknown.
 */
export class BigramModel {
  private scratch: Float64Array | undefined;

  private constructor(
    readonly vocabSize: number,
    /** Bigram discount D. */
    readonly discount: number,
    /** Continuation-count discount D1. */
    readonly continuationDiscount: number,
    /** Training tokens. */
    readonly trainingTokens: number,
    /** Distinct bigrams seen. */
    readonly distinctBigrams: number,
    /** CSR by left token: successors (sorted) and counts. */
    private readonly rowStart: Int32Array,
    private readonly rowNext: Int32Array,
    private readonly rowCount: Float64Array,
    /** CSC by right token: predecessors (sorted) and counts. */
    private readonly colStart: Int32Array,
    private readonly colPrev: Int32Array,
    private readonly colCount: Float64Array,
    /** 1/c(v), 0 when v was never a context. */
    private readonly invContext: Float64Array,
    /** Weight of p_cont after v: D·N1+(v•)/c(v), 1 when v was never a context. */
    private readonly backoff: Float64Array,
    private readonly pCont: Float64Array,
    private readonly pUni: Float64Array,
  ) {}

  /** Counts every adjacent pair of a token stream ([BOS] doc [EOS] [BOS] doc [EOS] …). */
  static train(stream: ArrayLike<number>, vocabSize: number): BigramModel {
    const V = vocabSize;
    if (!Number.isInteger(V) || V < 1 || V > 65536) throw new RangeError(`vocabulary size must be in 1..65536, got ${V}`);
    if (stream.length < 2) throw new RangeError('the training stream needs at least two tokens');
    const unigram = new Float64Array(V);
    for (let i = 0; i < stream.length; i++) {
      const id = stream[i];
      if (!(id >= 0 && id < V)) throw new RangeError(`token id ${id} at ${i} is outside the vocabulary (size ${V})`);
      unigram[id]++;
    }
    // Sorted pair keys, then run lengths: the distinct bigrams and their counts.
    const pairs = (order: 'row' | 'col'): { a: Int32Array; b: Int32Array; c: Float64Array } => {
      const keys = new Uint32Array(stream.length - 1);
      for (let i = 0; i + 1 < stream.length; i++) keys[i] = order === 'row' ? stream[i] * V + stream[i + 1] : stream[i + 1] * V + stream[i];
      keys.sort();
      let distinct = 0;
      for (let i = 0; i < keys.length; i++) if (i === 0 || keys[i] !== keys[i - 1]) distinct++;
      const a = new Int32Array(distinct);
      const b = new Int32Array(distinct);
      const c = new Float64Array(distinct);
      let j = -1;
      for (let i = 0; i < keys.length; i++) {
        if (i === 0 || keys[i] !== keys[i - 1]) {
          j++;
          a[j] = Math.floor(keys[i] / V);
          b[j] = keys[i] % V;
        }
        c[j]++;
      }
      return { a, b, c };
    };
    const starts = (major: Int32Array): Int32Array => {
      const s = new Int32Array(V + 1);
      for (const x of major) s[x + 1]++;
      for (let v = 0; v < V; v++) s[v + 1] += s[v];
      return s;
    };
    const rows = pairs('row');
    const cols = pairs('col');
    const discountOf = (counts: ArrayLike<number>): number => {
      let n1 = 0;
      let n2 = 0;
      for (let i = 0; i < counts.length; i++) {
        if (counts[i] === 1) n1++;
        else if (counts[i] === 2) n2++;
      }
      // No singletons (or nothing but singletons): fall back to the common default 0.75.
      return n1 > 0 && n2 > 0 ? n1 / (n1 + 2 * n2) : 0.75;
    };
    const D = discountOf(rows.c);
    const rowStart = starts(rows.a);
    const colStart = starts(cols.a);
    const invContext = new Float64Array(V);
    const backoff = new Float64Array(V).fill(1);
    for (let v = 0; v < V; v++) {
      let c = 0;
      for (let k = rowStart[v]; k < rowStart[v + 1]; k++) c += rows.c[k];
      if (c > 0) {
        invContext[v] = 1 / c;
        backoff[v] = (D * (rowStart[v + 1] - rowStart[v])) / c;
      }
    }
    const continuation = new Float64Array(V);
    for (let w = 0; w < V; w++) continuation[w] = colStart[w + 1] - colStart[w];
    const D1 = discountOf(continuation);
    const total = rows.a.length;
    let seenTypes = 0;
    for (let w = 0; w < V; w++) if (continuation[w] > 0) seenTypes++;
    const pCont = new Float64Array(V);
    for (let w = 0; w < V; w++) pCont[w] = Math.max(continuation[w] - D1, 0) / total + (D1 * seenTypes) / total / V;
    const pUni = new Float64Array(V);
    for (let w = 0; w < V; w++) pUni[w] = (unigram[w] + 1) / (stream.length + V);
    return new BigramModel(V, D, D1, stream.length, total, rowStart, rows.b, rows.c, colStart, cols.b, cols.c, invContext, backoff, pCont, pUni);
  }

  /** c(prev, next). */
  count(prev: number, next: number): number {
    let lo = this.rowStart[prev];
    let hi = this.rowStart[prev + 1] - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const x = this.rowNext[mid];
      if (x === next) return this.rowCount[mid];
      if (x < next) lo = mid + 1;
      else hi = mid - 1;
    }
    return 0;
  }

  /** p(next | prev). */
  prob(next: number, prev: number): number {
    const c = this.count(prev, next);
    return Math.max(c - this.discount, 0) * this.invContext[prev] + this.backoff[prev] * this.pCont[next];
  }

  /** The add-one unigram p_1(w). */
  unigram(w: number): number {
    return this.pUni[w];
  }

  /** p(· | prev) over the whole vocabulary. */
  nextDistribution(prev: number, out: Float64Array = new Float64Array(this.vocabSize)): Float64Array {
    const lam = this.backoff[prev];
    for (let w = 0; w < this.vocabSize; w++) out[w] = lam * this.pCont[w];
    const inv = this.invContext[prev];
    for (let k = this.rowStart[prev]; k < this.rowStart[prev + 1]; k++) out[this.rowNext[k]] += Math.max(this.rowCount[k] - this.discount, 0) * inv;
    return out;
  }

  /** p(next | x) for every x (a likelihood over x, not a distribution). */
  previousLikelihood(next: number, out: Float64Array = new Float64Array(this.vocabSize)): Float64Array {
    const pc = this.pCont[next];
    for (let x = 0; x < this.vocabSize; x++) out[x] = this.backoff[x] * pc;
    for (let k = this.colStart[next]; k < this.colStart[next + 1]; k++) {
      const x = this.colPrev[k];
      out[x] += Math.max(this.colCount[k] - this.discount, 0) * this.invContext[x];
    }
    return out;
  }

  /**
   * The two-sided predictor of a masked token x from its neighbours (null = unknown: masked, or
   * outside the passage), normalised over the vocabulary:
   *   both known        p(x | prev, next) ∝ p(x | prev) · p(next | x)
   *   only prev known   p(x | prev)
   *   only next known   p(x | next) ∝ p_1(x) · p(next | x)
   *   neither           p_1(x)
   */
  twoSided(prev: number | null, next: number | null, out: Float64Array = new Float64Array(this.vocabSize)): Float64Array {
    if (prev !== null) this.nextDistribution(prev, out);
    else out.set(this.pUni);
    if (next === null) return out;
    const right = this.previousLikelihood(next, (this.scratch ??= new Float64Array(this.vocabSize)));
    let z = 0;
    for (let x = 0; x < this.vocabSize; x++) z += (out[x] *= right[x]);
    for (let x = 0; x < this.vocabSize; x++) out[x] /= z;
    return out;
  }
}

/** The bigram as an AR: p(x_i | x_{i-1}) of every passage token, the first one given [BOS]. */
export function bigramArPerplexity(model: BigramModel, passages: readonly Passage[], bos: number): Perplexity {
  let sum = 0;
  let tokens = 0;
  for (const p of passages) {
    let prev = bos;
    for (const id of p.ids) {
      sum -= Math.log(model.prob(id, prev));
      prev = id;
      tokens++;
    }
  }
  return perplexity(sum, tokens);
}

/**
 * The bigram as a masked-token predictor on the same masks as the MLM: BigramModel.twoSided with
 * the true left neighbour when it is unmasked ([BOS] for the first token) and the true right
 * neighbour when it is unmasked (none after the last token: the passage is cut from running text,
 * and the [EOS] the MLM sees there is a window marker, not a document end). With `sides` 'left',
 * the right neighbour is never used: the plain bigram p(x_i | x_{i−1}), or the unigram p₁(x_i)
 * when the left neighbour is masked too.
 */
export function bigramMaskedPerplexity(model: BigramModel, passages: readonly Passage[], masks: readonly boolean[][], bos: number, sides: 'both' | 'left' = 'both'): Perplexity {
  const scratch = new Float64Array(model.vocabSize);
  let sum = 0;
  let tokens = 0;
  passages.forEach((p, j) => {
    const m = masks[j];
    p.ids.forEach((id, i) => {
      if (!m[i]) return;
      const prev = i === 0 ? bos : m[i - 1] ? null : p.ids[i - 1];
      const next = sides === 'left' || i + 1 >= p.ids.length || m[i + 1] ? null : p.ids[i + 1];
      sum -= Math.log(model.twoSided(prev, next, scratch)[id]);
      tokens++;
    });
  });
  return perplexity(sum, tokens);
}

// ---------------------------------------------------------------------------------------------
// Samples

export interface ArSample {
  /** The Brown passage whose first tokens prompted it. */
  docId: string;
  prompt: string;
  continuation: string;
  /** Continuation ids (stopped early at [EOS], which is included). */
  ids: number[];
}

export interface SampleOptions {
  /** Number of samples (default 5). */
  count?: number;
  /** Prompt tokens taken from the start of each passage, after [BOS] (default 8). */
  promptTokens?: number;
  /** Tokens generated (default 40). */
  maxTokens?: number;
  temperature?: number;
  topK?: number;
  seed?: number;
}

/**
 * The first `count` generations, each prompted by [BOS] and the first `promptTokens` tokens of one
 * of the first `count` passages: `maxTokens` tokens sampled at temperature 1 with top-k 50 (by
 * default) from one generator seeded `seed`, rows drawn in order at each step; a row stops at
 * [EOS]. Nothing is filtered or re-drawn.
 */
export async function arSamples(ar: CausalLM, tokenizer: TextTokenizer, passages: readonly Passage[], specials: { bos: number; eos: number }, options: SampleOptions = {}): Promise<ArSample[]> {
  const count = Math.min(options.count ?? 5, passages.length);
  const promptTokens = options.promptTokens ?? 8;
  const maxTokens = options.maxTokens ?? 40;
  const sampling = { temperature: options.temperature ?? 1, topK: options.topK ?? 50 };
  const rand = mulberry32(options.seed ?? 0);
  const V = ar.config.vocabSize;
  const chosen = passages.slice(0, count);
  const prompts = chosen.map((p) => p.ids.slice(0, promptTokens));
  const generated: number[][] = chosen.map(() => []);
  const done = chosen.map(() => false);
  const cache = ar.newCache(count);
  let out = await ar.step(cache, prompts.map((p) => [specials.bos, ...p]), {}, { logits: 'last' });
  const logp = new Float64Array(V);
  for (let step = 0; step < maxTokens; step++) {
    const next: number[][] = [];
    for (let b = 0; b < count; b++) {
      const off = b * V;
      const id = sampleToken(logSoftmaxRow(out.logits.subarray(off, off + V), logp), sampling, rand);
      if (!done[b]) {
        generated[b].push(id);
        if (id === specials.eos) done[b] = true;
      }
      next.push([id]);
    }
    if (done.every((d) => d) || step + 1 === maxTokens) break;
    out = await ar.step(cache, next, {}, { logits: 'last' });
  }
  return chosen.map((p, b) => ({ docId: p.docId, prompt: tokenizer.decode(prompts[b]), continuation: tokenizer.decode(generated[b]), ids: generated[b] }));
}

export interface MlmFill {
  docId: string;
  /** Position of the masked token in the passage. */
  position: number;
  /** Decoded text around the mask, with "[MASK]" in its place. */
  context: string;
  truth: { id: number; token: string; prob: number; rank: number };
  top: Array<{ id: number; token: string; prob: number }>;
}

/**
 * Single-token fills on the first `count` passages: the middle token (index ⌊length/2⌋) replaced
 * by [MASK] in [BOS] passage [EOS], one pass, the `top` most likely tokens with probabilities and
 * the true token's probability and rank. `contextTokens` tokens either side go into `context`.
 */
export async function mlmFills(
  mlm: MaskedLM,
  tokenizer: TextTokenizer,
  passages: readonly Passage[],
  specials: { bos: number; eos: number; mask: number },
  options: { count?: number; top?: number; contextTokens?: number } = {},
): Promise<MlmFill[]> {
  const count = Math.min(options.count ?? 5, passages.length);
  const topK = options.top ?? 5;
  const around = options.contextTokens ?? 12;
  const V = mlm.config.vocabSize;
  const chosen = passages.slice(0, count);
  const positions = chosen.map((p) => Math.floor(p.ids.length / 2));
  const rows = chosen.map((p, b) => [specials.bos, ...p.ids.map((id, i) => (i === positions[b] ? specials.mask : id)), specials.eos]);
  const out = await mlm.forward(rows);
  return chosen.map((p, b) => {
    const at = positions[b];
    const off = (b * out.T + at + 1) * V;
    const logp = logSoftmaxRow(out.logits.subarray(off, off + V));
    const truthId = p.ids[at];
    let rank = 1;
    for (let v = 0; v < V; v++) if (logp[v] > logp[truthId]) rank++;
    const left = tokenizer.decode(p.ids.slice(Math.max(0, at - around), at));
    const right = tokenizer.decode(p.ids.slice(at + 1, at + 1 + around));
    return {
      docId: p.docId,
      position: at,
      context: `${left}[MASK]${right}`,
      truth: { id: truthId, token: tokenizer.decode([truthId]), prob: Math.exp(logp[truthId]), rank },
      top: topIds(logp, topK).map((id) => ({ id, token: tokenizer.decode([id]), prob: Math.exp(logp[id]) })),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Everything together

export const MASK_RATES = [0.15, 0.5] as const;

export interface EvaluationOptions {
  passages: readonly Passage[];
  bigram: BigramModel;
  tokenizer: TextTokenizer;
  ar?: CausalLM;
  mlm?: MaskedLM;
  /** Seed of the masks and the samples (default 0). */
  seed?: number;
  /** Rows per forward call (default 8). */
  batch?: number;
  maskRates?: readonly number[];
  /** Also draw the AR samples and MLM fills shown in the model cards (default true). */
  samples?: boolean;
  /** Called when a phase starts (progress messages). */
  onPhase?: (name: string) => void;
}

export interface EvaluationReport {
  passages: number;
  /** Distinct Brown samples the passages come from. */
  documents: number;
  length: number;
  seed: number;
  genres: Record<string, number>;
  bigram: { discount: number; continuationDiscount: number; trainingTokens: number; distinctBigrams: number };
  ar?: { model: Perplexity; bigram: Perplexity; ratio: number };
  /** Per mask rate: the MLM, the two-sided bigram (`bigram`, `ratio` = its ppl / the MLM's) and the left-context bigram. */
  mlm?: Array<{ rate: number; model: Perplexity; bigram: Perplexity; ratio: number; leftBigram: Perplexity; leftRatio: number }>;
  samples: { ar?: ArSample[]; mlm?: MlmFill[] };
  /** Seconds per phase. */
  seconds: Record<string, number>;
}

/** Runs every metric and sample on the given passages (the models must share the tokenizer). */
export async function evaluate(o: EvaluationOptions): Promise<EvaluationReport> {
  const sp = o.tokenizer.specialTokens;
  if (!sp.bos || !sp.eos || !sp.mask) throw new Error(`${o.tokenizer.source}: the tokenizer needs [BOS], [EOS] and [MASK] special tokens`);
  const specials = { bos: sp.bos.id, eos: sp.eos.id, mask: sp.mask.id, pad: sp.pad?.id ?? 0 };
  const seed = o.seed ?? 0;
  const batch = { batch: o.batch ?? 8 };
  const length = o.passages[0]?.ids.length ?? 0;
  for (const m of [o.ar, o.mlm]) {
    if (!m) continue;
    if (m.config.vocabSize !== o.bigram.vocabSize) throw new Error(`${m.dir}: vocabulary of ${m.config.vocabSize} ids, but the tokenizer/bigram has ${o.bigram.vocabSize}`);
    if (length + 2 > m.config.maxPositions) throw new Error(`${m.dir}: passages of ${length} tokens (+2 specials) exceed the model's context of ${m.config.maxPositions}`);
  }
  const seconds: Record<string, number> = {};
  const timed = async <T>(name: string, f: () => Promise<T> | T): Promise<T> => {
    o.onPhase?.(name);
    const t0 = performance.now();
    const r = await f();
    seconds[name] = (performance.now() - t0) / 1000;
    return r;
  };
  const genres: Record<string, number> = {};
  for (const p of o.passages) genres[p.genre] = (genres[p.genre] ?? 0) + 1;
  const report: EvaluationReport = {
    passages: o.passages.length,
    documents: new Set(o.passages.map((p) => p.docId)).size,
    length,
    seed,
    genres,
    bigram: { discount: o.bigram.discount, continuationDiscount: o.bigram.continuationDiscount, trainingTokens: o.bigram.trainingTokens, distinctBigrams: o.bigram.distinctBigrams },
    samples: {},
    seconds,
  };
  if (o.ar) {
    const ar = o.ar;
    const model = await timed('ar', () => arPerplexity(ar, o.passages, specials.bos, batch));
    const bigram = await timed('bigram-ar', () => bigramArPerplexity(o.bigram, o.passages, specials.bos));
    report.ar = { model, bigram, ratio: bigram.ppl / model.ppl };
    if (o.samples !== false) report.samples.ar = await timed('ar-samples', () => arSamples(ar, o.tokenizer, o.passages, specials, { seed }));
  }
  if (o.mlm) {
    const mlm = o.mlm;
    report.mlm = [];
    for (const rate of o.maskRates ?? MASK_RATES) {
      const masks = maskPassages(o.passages, rate, seed);
      const model = await timed(`mlm@${rate}`, () => mlmPerplexity(mlm, o.passages, masks, specials, batch));
      const bigram = await timed(`bigram-masked@${rate}`, () => bigramMaskedPerplexity(o.bigram, o.passages, masks, specials.bos));
      const leftBigram = await timed(`bigram-left@${rate}`, () => bigramMaskedPerplexity(o.bigram, o.passages, masks, specials.bos, 'left'));
      report.mlm.push({ rate, model, bigram, ratio: bigram.ppl / model.ppl, leftBigram, leftRatio: leftBigram.ppl / model.ppl });
    }
    if (o.samples !== false) report.samples.mlm = await timed('mlm-fills', () => mlmFills(mlm, o.tokenizer, o.passages, specials));
  }
  return report;
}
