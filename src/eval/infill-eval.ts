// The infilling evaluation harness: MARIA against its baselines on the same passages, the same masks
// and the same models, in one run (definitions of the methods in docs MARIA.md and
// src/maria/baselines.ts). Library first: `evaluate(options)` returns an EvalResults object;
// src/eval/report.ts turns it into results.json, report.md and SVG plots; `maria eval` is the CLI.
//
// Per method × mask kind (i.i.d. / spans) × mask rate, over the passages:
//
//   nll        mean −log p(x_i | …) per masked token (nats), Σ over passages / Σ masked tokens.
//              'exact'       maria, maria-poe, mlm-l2r, ar: log p(x_M | x_¬M) by the chain rule
//                            (ar: conditioned on the left context only);
//              'elbo'        mdlm-T: the T-step MDLM bound L_T (mdlmElbo with steps T, in
//                            src/maria/baselines.ts), an upper bound on the NLL of the T-step
//                            sampler, estimated by Monte Carlo (`maria score --method mdlm`
//                            reports the continuous-time bound L_∞ instead);
//              'independent' mlm-oneshot: Σ_i −log p_MLM(x_i | x_¬M), every masked token on its
//                            own (not a joint likelihood; neither a bound nor comparable as one).
//   ppl        exp(nll).
//   accuracy   greedy infill (temperature 0) vs the truth: matching ids / masked tokens.
//   genPpl     generative perplexity of sampled infills (temperature 1, no top-k/top-p) under a
//              separate causal "scorer" LM: exp of the mean −log p_scorer(y_i | [BOS] y_<i) over
//              EVERY token of the filled passage y (given tokens too, so a fill that does not fit
//              its right context is penalised), pooled over samples and passages. genPplFilled is
//              the same mean over the filled positions only. Reference: the scorer on the true
//              passages (the same for every method).
//   distinct2  per passage, the token bigrams of the N sampled fills that touch at least one
//              filled position, pooled over the N samples: #distinct / #total (1 = every sample
//              differs everywhere, about 1/N = all samples identical); mean over passages.
//   entropy    mean over sampled filled tokens of −log q(y_i), q the distribution y_i was drawn
//              from (after banning special tokens): an unbiased Monte-Carlo estimate of the mean
//              per-position entropy H(q) of the sampling distributions (nats).
//
// Masks: evalMask(ids, rate, kind, seed) = randomMask / spanMask (src/maria/masks.ts): a function of
// the passage's tokens, the rate and the seed only, so every method sees identical masks.
// Seeds: every sampler and Monte-Carlo seed is derived from (seed, method, mask kind, rate, passage
// index) by seededHash, so the same arguments give the same quality numbers (timings aside), and a
// resumed run gives the same numbers as a straight one.
//
// Work is split into units (method × kind × rate × chunk of passages); after each unit its partial
// sums are written atomically to a checkpoint JSON; `resume` skips the units already there.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { resolve } from 'node:path';
import { seededHash } from '../data/corpus.js';
import { writeFileAtomic } from '../io/atomic.js';
import { anneal } from '../maria/anneal.js';
import { infillWithMethod, mdlmElbo, plainArModel, releaseBaselines, scoreWithMethod } from '../maria/baselines.js';
import { bundleDigest, modelDigest } from '../maria/digest.js';
import { Maria, type InfillResult } from '../maria/maria.js';
import { InputError, randomMask, spanMask, type MaskedSequence } from '../maria/masks.js';
import { logSoftmaxRow } from '../maria/sampling.js';
import { CausalLM } from '../models/causal-lm.js';
import { countParameters } from '../models/weights.js';
import { TextTokenizer } from '../tokenizer/tokenizer.js';
import { brownPassages, type Passage } from './lm-eval.js';

// ---------------------------------------------------------------------------------------------
// Methods

export type BaseMethod = 'maria' | 'mlm-l2r' | 'mlm-oneshot' | 'ar' | 'mdlm';
export type LikelihoodKind = 'exact' | 'elbo' | 'independent';

export interface MethodSpec {
  /** Canonical name: maria, maria-poe, mlm-l2r, mlm-oneshot, ar, mdlm-M (T = |M|), mdlm-64, … */
  name: string;
  base: BaseMethod;
  /** Which MARIA head runs it (only 'maria' uses the head). */
  head: 'trained' | 'product-of-experts';
  /** mdlm: denoising steps, 'M' = the number of masked tokens. */
  steps: number | 'M' | null;
  likelihood: LikelihoodKind;
  /** For tables and plots. */
  label: string;
}

export const DEFAULT_MASK_RATES = [0.15, 0.3, 0.5, 0.7, 0.9];
export const DEFAULT_METHODS = ['maria', 'maria-poe', 'mlm-l2r', 'mlm-oneshot', 'ar', 'mdlm-M', 'mdlm-64', 'mdlm-16', 'mdlm-4'];
export const DEFAULT_THROUGHPUT_LENGTHS = [128, 256, 512];

/** Parses a method name (case-insensitive; `mdlm` alone means mdlm-M). Throws RangeError. */
export function parseMethod(name: string): MethodSpec {
  const n = name.trim().toLowerCase();
  const simple: Record<string, Omit<MethodSpec, 'name'>> = {
    maria: { base: 'maria', head: 'trained', steps: null, likelihood: 'exact', label: 'MARIA' },
    'maria-poe': { base: 'maria', head: 'product-of-experts', steps: null, likelihood: 'exact', label: 'MARIA (PoE init)' },
    'mlm-l2r': { base: 'mlm-l2r', head: 'trained', steps: null, likelihood: 'exact', label: 'MLM left-to-right' },
    'mlm-oneshot': { base: 'mlm-oneshot', head: 'trained', steps: null, likelihood: 'independent', label: 'MLM one-shot' },
    ar: { base: 'ar', head: 'trained', steps: null, likelihood: 'exact', label: 'AR only (left context)' },
  };
  if (simple[n]) return { name: n, ...simple[n] };
  const m = /^mdlm(?:-(m|\d+))?$/.exec(n);
  if (m) {
    const steps = m[1] === undefined || m[1] === 'm' ? 'M' : Number(m[1]);
    if (steps !== 'M' && !(Number.isSafeInteger(steps) && steps >= 1)) throw new InputError(`method "${name}": the step count must be a positive integer`);
    return { name: `mdlm-${steps}`, base: 'mdlm', head: 'trained', steps, likelihood: 'elbo', label: `MDLM T=${steps === 'M' ? '|M|' : steps}` };
  }
  throw new InputError(`unknown method "${name}" (choose from maria, maria-poe, mlm-l2r, mlm-oneshot, ar, mdlm-M, mdlm-<T>)`);
}

// ---------------------------------------------------------------------------------------------
// Masks and seeds

export type MaskKind = 'random' | 'span';

/**
 * The harness's mask: i.i.d. at `rate` (randomMask) or contiguous spans of mean length 4 up to
 * round(rate·n) tokens (spanMask). Depends only on (ids, rate, kind, seed): identical across methods.
 */
export function evalMask(ids: readonly number[], rate: number, kind: MaskKind, seed: number): boolean[] {
  return kind === 'span' ? spanMask([...ids], rate, seed) : randomMask([...ids], rate, seed);
}

/** A 32-bit seed derived from the run seed and a key. */
export function derivedSeed(seed: number, key: string): number {
  return Math.floor(seededHash(seed, key) * 2 ** 32) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Metrics

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

// ---------------------------------------------------------------------------------------------
// The scorer (generative perplexity)

export interface Scorer {
  /** Shown in reports: 'scorer (DIR)' or 'bundle AR'. */
  name: string;
  model: CausalLM;
  bos: number;
  /** Whether the scorer reads the decoder's ids as they are (same tokenizer.json model). */
  sameTokenizer: boolean;
  tokenizer: TextTokenizer;
  /** Whether `model` belongs to the bundle (released with it). */
  borrowed: boolean;
}

/** Loads a causal LM folder as the scorer; compares its tokenizer with the decoder's. */
export async function loadScorer(dir: string, m: Maria, threads?: number): Promise<Scorer> {
  const model = await CausalLM.load(dir, threads ? { threads } : {});
  const tokenizer = TextTokenizer.load(dir);
  const same = JSON.stringify(tokenizer.json.model) === JSON.stringify(m.tokenizer.json.model) && tokenizer.vocabSize === m.tokenizer.vocabSize;
  const bos = tokenizer.specialTokens.bos?.id ?? m.manifest.arBosId;
  return { name: `scorer (${dir})`, model, bos, sameTokenizer: same, tokenizer, borrowed: false };
}

/** The bundle's own AR as a scorer (unconditional generation without models/scorer). */
export async function bundleArScorer(m: Maria): Promise<Scorer> {
  return { name: 'bundle AR', model: await plainArModel(m), bos: m.manifest.arBosId, sameTokenizer: true, tokenizer: m.tokenizer, borrowed: true };
}

export interface ScoredRow {
  /** −log p_scorer of every token of the row (null when the scorer retokenizes). */
  perToken: Float64Array | null;
  total: number;
  tokens: number;
}

/** −log p_scorer(y_i | [BOS] y_<i) for rows of decoder ids (rows of one length run as one batch). */
export async function scoreRows(scorer: Scorer, m: Maria, rows: readonly (readonly number[])[]): Promise<ScoredRow[]> {
  const limit = scorer.model.config.maxPositions - 1;
  const V = scorer.model.config.vocabSize;
  const lp = new Float64Array(V);
  const score = async (batch: number[][]): Promise<ScoredRow[]> => {
    const out = await scorer.model.step(scorer.model.newCache(batch.length), batch.map((r) => [scorer.bos, ...r.slice(0, -1)]));
    return batch.map((r, b) => {
      const perToken = new Float64Array(r.length);
      let total = 0;
      for (let i = 0; i < r.length; i++) {
        const off = (b * out.T + i) * V;
        perToken[i] = -logSoftmaxRow(out.logits.subarray(off, off + V), lp)[r[i]];
        total += perToken[i];
      }
      return { perToken, total, tokens: r.length };
    });
  };
  if (scorer.sameTokenizer) {
    const result: ScoredRow[] = [];
    const equal = rows.every((r) => r.length === rows[0].length) && rows[0].length <= limit;
    if (equal) return score(rows.map((r) => [...r]));
    for (const r of rows) result.push(...(await score([r.slice(0, limit)])));
    return result;
  }
  const result: ScoredRow[] = [];
  for (const r of rows) {
    const ids = scorer.tokenizer.encode(m.tokenizer.decode([...r])).ids.slice(0, limit);
    const [s] = await score([ids]);
    result.push({ perToken: null, total: s.total, tokens: s.tokens });
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Options and results

export interface ThroughputOptions {
  /** Passage lengths (default 128, 256, 512; clamped to the models' context, with a note). */
  lengths?: number[];
  /** Mask rate (default 0.5). */
  rate?: number;
  /** Passages per length (default 3). */
  passages?: number;
  /** Passages of a given length (default: Brown windows, brownPassages with the run's seed). */
  passagesFor?: (length: number, n: number) => Passage[];
  /** One untimed call per method and length first (default true). */
  warmup?: boolean;
  /** Sampling temperature of the timed infills (default 1; 0 = greedy). */
  temperature?: number;
}

export interface UnconditionalOptions {
  /** Samples per method. */
  n: number;
  /** Tokens per sample (default: the passage length). */
  length?: number;
  /** Simulated-annealing rounds for maria-anneal (default 20). */
  annealSteps?: number;
  /** MDLM step counts; 'L' = the length (default L, 64, 16, 4). */
  mdlmSteps?: Array<number | 'L'>;
}

export interface DataInfo {
  /** 'brown' or the file read. */
  source: string;
  /** How the passages were chosen, in words (goes into the report). */
  description: string;
}

export interface EvalProgress {
  /** Work items done (passage × method evaluations, timed infills, unconditional samples). */
  done: number;
  total: number;
  /** Of `done`, the items restored from the checkpoint. */
  restored: number;
  /** The unit in progress. */
  unit: string;
}

export interface EvalOptions {
  /** The MARIA bundle (default models/default). */
  bundleDir: string;
  /** Token windows (e.g. brownPassages), all of one length. */
  passages: readonly Passage[];
  maskRates?: number[];
  /** Also span masks at every rate. */
  spans?: boolean;
  /** Default: DEFAULT_METHODS. */
  methods?: string[];
  /** Sampled infills per passage (diversity, gen-ppl; default 4). */
  samples?: number;
  /** Run seed (default 0). */
  seed?: number;
  /** Causal LM folder for generative perplexity; null/absent → the metric is skipped (noted). */
  scorerDir?: string | null;
  /** Monte-Carlo draws of the MDLM bound per passage (default 16). */
  elboDraws?: number;
  /** Passages per unit of work (default 10). */
  chunkSize?: number;
  /** Throughput measurement (false to skip). */
  throughput?: ThroughputOptions | false;
  /** Unconditional generation (absent/false to skip). */
  unconditional?: UnconditionalOptions | false;
  /** ORT intra-op threads. */
  threads?: number;
  /** Checkpoint JSON (written after every unit). */
  checkpoint?: string;
  /** Skip the units already in the checkpoint (it must be from the same configuration). */
  resume?: boolean;
  /**
   * Other checkpoints of the same run (e.g. written by shards) whose units a resumed run takes as
   * done; missing files are skipped, files of another configuration refused.
   */
  mergeCheckpoints?: string[];
  /**
   * Run only this shard's share of the work (units assigned by a hash of their key), never the throughput
   * measurement (it needs the machine to itself). Shards run as separate processes, each with its
   * own checkpoint; a shard run never reports (its result is incomplete): a final run without shard
   * resumes with the shards' checkpoints merged, does what is left and reports.
   */
  shard?: { index: number; count: number };
  onProgress?: (p: EvalProgress) => void;
  /** Checked after every unit: true stops the run (the checkpoint is up to date). */
  shouldStop?: () => boolean;
  data?: DataInfo;
  /** The command line, for the report. */
  command?: string;
}

export interface QualityRow {
  method: string;
  label: string;
  likelihood: LikelihoodKind;
  maskKind: MaskKind;
  rate: number;
  passages: number;
  maskedTokens: number;
  nll: number;
  /** Standard error of `nll` over passages (ratio estimator, delta method; includes Monte-Carlo noise). */
  nllSe: number | null;
  ppl: number;
  accuracy: number;
  genPpl: number | null;
  genPplFilled: number | null;
  distinct2: number | null;
  entropy: number;
  /** Seconds per passage spent on this row (scoring + greedy + sampled infills + scorer). */
  secondsPerPassage: number;
  /** Of those, per phase. */
  phaseSeconds: { score: number; greedy: number; sample: number; scorer: number };
}

/** MARIA against another method on the same passages and masks (paired). */
export interface Comparison {
  maskKind: MaskKind;
  rate: number;
  method: string;
  /** NLL(maria) − NLL(method), nats per masked token (negative: MARIA lower). */
  diff: number;
  /** Paired standard error of `diff` over passages (null with one passage). */
  se: number | null;
}

export interface ThroughputRow {
  method: string;
  label: string;
  /** Passage length measured (after clamping). */
  length: number;
  /** The length asked for. */
  requestedLength: number;
  passages: number;
  filledTokens: number;
  seconds: number;
  msPerPassage: number;
  msPerPassageMedian: number;
  tokensPerSecond: number;
  /** seconds(method) / seconds(maria): how many times faster MARIA is (null without maria). */
  mariaSpeedup: number | null;
}

export interface UnconditionalRow {
  method: string;
  label: string;
  samples: number;
  length: number;
  genPpl: number;
  distinct2: number | null;
  distinct3: number | null;
  secondsPerSample: number;
}

export interface UnconditionalResults {
  length: number;
  /** Who scored the samples (gen-ppl). */
  scorer: string;
  /** True when the scorer is the bundle's AR, also the annealing energy (biased toward maria-anneal). */
  scorerIsEnergy: boolean;
  rows: UnconditionalRow[];
  /** The same metrics on real passages of the same length (when available). */
  reference: { samples: number; genPpl: number; distinct2: number | null; distinct3: number | null } | null;
  annealSteps: number;
}

export interface EvalResults {
  format: 'maria-eval-results';
  version: 1;
  /** False when the run was stopped before every unit was done. */
  complete: boolean;
  config: {
    bundleDir: string;
    headInit: string;
    methods: string[];
    maskRates: number[];
    maskKinds: MaskKind[];
    samples: number;
    seed: number;
    elboDraws: number;
    chunkSize: number;
    passages: number;
    passageLength: number;
    scorer: string | null;
    throughput: { lengths: number[]; rate: number; passages: number; temperature: number; warmup: boolean } | null;
    unconditional: { n: number; length: number; annealSteps: number; mdlmSteps: number[] } | null;
  };
  meta: {
    command: string | null;
    date: string;
    startedAt: string;
    resumed: boolean;
    wallSeconds: number;
    machine: { cpu: string; cores: number; threads: number; node: string; onnxruntime: string; os: string; loadAverage: number[] };
    data: DataInfo & { passages: number; length: number; docs: number; genres: Record<string, number> };
    models: { mlm: string; ar: string; mlmParameters: number; arParameters: number };
  };
  quality: QualityRow[];
  /** MARIA's NLL minus every other method's, paired by passage, at every mask kind and rate. */
  comparisons: Comparison[];
  /** The scorer on the true passages (gen-ppl of real text), when a scorer is present. */
  reference: { genPpl: number; passages: number } | null;
  throughput: { rate: number; temperature: number; rows: ThroughputRow[] } | null;
  unconditional: UnconditionalResults | null;
  notes: string[];
}

// ---------------------------------------------------------------------------------------------
// Units and the checkpoint

interface QualitySums {
  passages: number;
  masked: number;
  nllSum: number;
  correct: number;
  genNllSum: number;
  genTokens: number;
  genFilledNllSum: number;
  genFilledTokens: number;
  distinct2Sum: number;
  distinct2Count: number;
  entropySum: number;
  entropyTokens: number;
  /** Per passage, in order: [Σ −log p over its masked tokens (or its bound), its masked tokens]. */
  byPassage: Array<[number, number]>;
  time: { score: number; greedy: number; sample: number; scorer: number };
}

interface ReferenceSums {
  passages: number;
  genNllSum: number;
  genTokens: number;
}

interface ThroughputSums {
  rate: number;
  temperature: number;
  rows: Array<{ method: string; length: number; requestedLength: number; times: number[]; filled: number }>;
  notes: string[];
}

interface UnconditionalSums {
  method: string;
  samples: number[][];
  seconds: number;
}

interface Checkpoint {
  format: 'maria-eval-checkpoint';
  version: 1;
  fingerprint: string;
  startedAt: string;
  units: Record<string, QualitySums | ReferenceSums | ThroughputSums | UnconditionalSums>;
}

/** The additive counters of QualitySums (merged across checkpoint units by adding). */
const SUM_FIELDS = ['passages', 'masked', 'nllSum', 'correct', 'genNllSum', 'genTokens', 'genFilledNllSum', 'genFilledTokens', 'distinct2Sum', 'distinct2Count', 'entropySum', 'entropyTokens'] as const;

function emptySums(): QualitySums {
  return { passages: 0, masked: 0, nllSum: 0, correct: 0, genNllSum: 0, genTokens: 0, genFilledNllSum: 0, genFilledTokens: 0, distinct2Sum: 0, distinct2Count: 0, entropySum: 0, entropyTokens: 0, byPassage: [], time: { score: 0, greedy: 0, sample: 0, scorer: 0 } };
}

function readCheckpoint(path: string): Checkpoint {
  let c: Checkpoint;
  try {
    c = JSON.parse(readFileSync(path, 'utf8')) as Checkpoint;
  } catch (err) {
    throw new InputError(`${path}: not a readable checkpoint (${(err as Error).message})`);
  }
  if (c.format !== 'maria-eval-checkpoint' || c.version !== 1 || typeof c.units !== 'object') throw new InputError(`${path}: not a maria eval checkpoint`);
  return c;
}

const require = createRequire(import.meta.url);

function onnxruntimeVersion(): string {
  try {
    return (require('onnxruntime-node/package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function now(): number {
  return performance.now() / 1000;
}

/**
 * Standard error of the ratio estimator Σx/Σk over passages (delta method):
 * sqrt(n/(n−1) · Σ (x_p − R·k_p)²) / Σk. Null with fewer than two passages.
 */
export function ratioSe(x: readonly number[], k: readonly number[]): number | null {
  const n = x.length;
  if (n < 2) return null;
  let sx = 0;
  let sk = 0;
  for (let i = 0; i < n; i++) {
    sx += x[i];
    sk += k[i];
  }
  const R = sx / sk;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (x[i] - R * k[i]) ** 2;
  return Math.sqrt((ss * n) / (n - 1)) / sk;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Ids with the masked positions blanked: no method can read the truth it has to fill. */
function blanked(ids: readonly number[], masked: readonly boolean[]): MaskedSequence {
  return { ids: ids.map((id, i) => (masked[i] ? 0 : id)), masked: [...masked] };
}

// ---------------------------------------------------------------------------------------------
// The harness

interface Context {
  maria: Maria;
  poe: Maria | null;
  scorer: Scorer | null;
  seed: number;
  samples: number;
  elboDraws: number;
}

function instanceFor(ctx: Context, spec: MethodSpec): Maria {
  return spec.head === 'product-of-experts' ? ctx.poe! : ctx.maria;
}

function stepsFor(spec: MethodSpec, masked: number): number | undefined {
  return spec.base === 'mdlm' ? (spec.steps === 'M' ? masked : (spec.steps as number)) : undefined;
}

/** One passage under one method at one mask: adds into `sums`. */
async function evalPassage(ctx: Context, spec: MethodSpec, passage: Passage, index: number, rate: number, kind: MaskKind, sums: QualitySums): Promise<void> {
  const m = instanceFor(ctx, spec);
  const masked = evalMask(passage.ids, rate, kind, ctx.seed);
  const K = masked.filter(Boolean).length;
  const key = `${spec.name}/${kind}/${rate}/${index}`;
  const seq = blanked(passage.ids, masked);
  const steps = stepsFor(spec, K);
  let t = now();
  let nll: number;
  if (spec.base === 'mdlm') nll = await mdlmElbo(m, passage.ids, masked, { steps, draws: ctx.elboDraws, seed: derivedSeed(ctx.seed, `elbo/${key}`) });
  else {
    const s = await scoreWithMethod(m, [...passage.ids], masked, spec.base);
    nll = s.nll * s.tokens;
  }
  sums.nllSum += nll;
  sums.byPassage.push([nll, K]);
  sums.time.score += now() - t;
  t = now();
  const greedy = await infillWithMethod(m, seq, spec.base, { temperature: 0, samples: 1, seed: derivedSeed(ctx.seed, `greedy/${key}`), steps, alternatives: 0 });
  for (const f of greedy.samples[0].filled) if (f.id === passage.ids[f.position]) sums.correct++;
  sums.time.greedy += now() - t;
  t = now();
  const sampled: InfillResult = await infillWithMethod(m, seq, spec.base, { temperature: 1, samples: ctx.samples, seed: derivedSeed(ctx.seed, `sample/${key}`), steps, alternatives: 0 });
  for (const s of sampled.samples) {
    for (const f of s.filled) {
      sums.entropySum -= f.logprob;
      sums.entropyTokens++;
    }
  }
  const d2 = distinctN(
    sampled.samples.map((s) => s.ids),
    2,
    masked,
  );
  if (d2 !== null) {
    sums.distinct2Sum += d2;
    sums.distinct2Count++;
  }
  sums.time.sample += now() - t;
  if (ctx.scorer) {
    t = now();
    const scored = await scoreRows(ctx.scorer, m, sampled.samples.map((s) => s.ids));
    for (const r of scored) {
      sums.genNllSum += r.total;
      sums.genTokens += r.tokens;
      if (r.perToken) {
        masked.forEach((x, i) => {
          if (x) {
            sums.genFilledNllSum += r.perToken![i];
            sums.genFilledTokens++;
          }
        });
      }
    }
    sums.time.scorer += now() - t;
  }
  sums.passages++;
  sums.masked += K;
}

/** Times every method on the same passages, interleaved (passage by passage, method by method). */
async function measureThroughput(
  ctx: Context,
  specs: MethodSpec[],
  o: { lengths: number[]; rate: number; passages: number; passagesFor: (length: number, n: number) => Passage[]; warmup: boolean; temperature: number },
  tick: (items: number) => void,
): Promise<ThroughputSums> {
  const maxTokens = Math.min(ctx.maria.maxTokens, ctx.poe?.maxTokens ?? Infinity);
  const notes: string[] = [];
  const lengths = new Map<number, number>();
  for (const L of o.lengths) {
    const eff = Math.min(L, maxTokens);
    if (eff !== L) notes.push(`throughput length ${L} measured at ${eff} tokens: the models take at most ${maxTokens} text tokens (their context includes the special tokens)`);
    if (!lengths.has(eff)) lengths.set(eff, L);
  }
  const rows: ThroughputSums['rows'] = [];
  for (const [L, requested] of lengths) {
    const passages = o.passagesFor(L, o.passages);
    const cells = specs.map((spec) => ({ spec, times: [] as number[], filled: 0 }));
    const run = async (spec: MethodSpec, p: Passage, i: number): Promise<{ ms: number; filled: number }> => {
      const masked = evalMask(p.ids, o.rate, 'random', ctx.seed);
      const K = masked.filter(Boolean).length;
      const m = instanceFor(ctx, spec);
      const t0 = performance.now();
      await infillWithMethod(m, blanked(p.ids, masked), spec.base, { temperature: o.temperature, samples: 1, seed: derivedSeed(ctx.seed, `throughput/${spec.name}/${L}/${i}`), steps: stepsFor(spec, K), alternatives: 0 });
      return { ms: performance.now() - t0, filled: K };
    };
    if (o.warmup) for (const c of cells) await run(c.spec, passages[0], -1);
    for (let i = 0; i < passages.length; i++) {
      for (const c of cells) {
        const r = await run(c.spec, passages[i], i);
        c.times.push(r.ms);
        c.filled += r.filled;
        tick(1);
      }
    }
    for (const c of cells) rows.push({ method: c.spec.name, length: L, requestedLength: requested, times: c.times, filled: c.filled });
  }
  return { rate: o.rate, temperature: o.temperature, rows, notes };
}

// ---------------------------------------------------------------------------------------------
// Unconditional generation

interface UncondSpec {
  name: string;
  label: string;
  run: (ctx: Context, n: number, length: number, seed: number) => Promise<number[][]>;
}

function unconditionalSpecs(length: number, annealSteps: number, mdlmSteps: number[]): UncondSpec[] {
  const allMask = (L: number): MaskedSequence => ({ ids: new Array<number>(L).fill(0), masked: new Array<boolean>(L).fill(true) });
  const specs: UncondSpec[] = [
    {
      name: 'maria-anneal',
      label: `MARIA + annealing (${annealSteps} rounds)`,
      run: async (ctx, n, L, seed) => {
        const out: number[][] = [];
        for (let i = 0; i < n; i++) out.push((await anneal(ctx.maria, allMask(L), { steps: annealSteps, seed: derivedSeed(seed, `uncond/maria-anneal/${i}`) })).ids);
        return out;
      },
    },
    {
      name: 'maria',
      label: 'MARIA (one pass, no annealing)',
      run: async (ctx, n, L, seed) => (await ctx.maria.infill(allMask(L), { temperature: 1, samples: n, seed: derivedSeed(seed, 'uncond/maria'), alternatives: 0 })).samples.map((s) => s.ids),
    },
    {
      name: 'ar',
      label: 'AR sampling',
      run: async (ctx, n, L, seed) => (await infillWithMethod(ctx.maria, allMask(L), 'ar', { temperature: 1, samples: n, seed: derivedSeed(seed, 'uncond/ar'), alternatives: 0 })).samples.map((s) => s.ids),
    },
  ];
  for (const T of mdlmSteps) {
    specs.push({
      name: `mdlm-${T}`,
      label: `MDLM from all-mask, T=${T}${T === length ? ' (=L)' : ''}`,
      run: async (ctx, n, L, seed) =>
        (await infillWithMethod(ctx.maria, allMask(L), 'mdlm', { temperature: 1, samples: n, steps: T, seed: derivedSeed(seed, `uncond/mdlm-${T}`), alternatives: 0 })).samples.map((s) => s.ids),
    });
  }
  return specs;
}

function resolveUnconditional(u: UnconditionalOptions, passageLength: number, maxTokens: number): { n: number; length: number; annealSteps: number; mdlmSteps: number[] } {
  if (!Number.isInteger(u.n) || u.n < 1) throw new InputError(`unconditional samples must be a positive integer, got ${u.n}`);
  const length = u.length ?? passageLength;
  if (!Number.isInteger(length) || length < 1 || length > maxTokens) throw new InputError(`unconditional length must be in 1..${maxTokens}, got ${length}`);
  const annealSteps = u.annealSteps ?? 20;
  const mdlmSteps = [...new Set((u.mdlmSteps ?? ['L', 64, 16, 4]).map((t) => (t === 'L' ? length : t)))];
  for (const t of mdlmSteps) if (!Number.isInteger(t) || t < 1) throw new InputError(`MDLM steps must be positive integers, got ${t}`);
  return { n: u.n, length, annealSteps, mdlmSteps };
}

function summariseUnconditional(spec: UncondSpec, samples: number[][], seconds: number, scored: ScoredRow[]): UnconditionalRow {
  const total = scored.reduce((a, r) => a + r.total, 0);
  const tokens = scored.reduce((a, r) => a + r.tokens, 0);
  return {
    method: spec.name,
    label: spec.label,
    samples: samples.length,
    length: samples[0]?.length ?? 0,
    genPpl: Math.exp(total / tokens),
    distinct2: distinctN(samples, 2),
    distinct3: distinctN(samples, 3),
    secondsPerSample: seconds / samples.length,
  };
}

async function referenceUnconditional(scorer: Scorer, m: Maria, passages: readonly Passage[], n: number, length: number): Promise<UnconditionalResults['reference']> {
  const real = passages.filter((p) => p.ids.length >= length).slice(0, n).map((p) => p.ids.slice(0, length));
  if (real.length === 0) return null;
  const scored = await scoreRows(scorer, m, real);
  return {
    samples: real.length,
    genPpl: Math.exp(scored.reduce((a, r) => a + r.total, 0) / scored.reduce((a, r) => a + r.tokens, 0)),
    distinct2: distinctN(real, 2),
    distinct3: distinctN(real, 3),
  };
}

export interface EvaluateUnconditionalOptions extends UnconditionalOptions {
  bundleDir: string;
  seed?: number;
  scorerDir?: string | null;
  threads?: number;
  /** Real passages for the reference row. */
  referencePassages?: readonly Passage[];
}

/**
 * Unconditional generation: MARIA + simulated annealing (src/maria/anneal.ts, energy −log p of the
 * bundle's AR), plain MARIA, AR sampling and MDLM from all-mask with T steps; n samples of `length`
 * tokens each, scored by generative perplexity under the scorer (or, without one, the bundle's AR:
 * then labelled, since it is also the annealing energy) and distinct-2/3 over all samples pooled.
 */
export async function evaluateUnconditional(o: EvaluateUnconditionalOptions): Promise<UnconditionalResults> {
  const session = o.threads ? { threads: o.threads } : {};
  const maria = await Maria.load(o.bundleDir, session);
  const ctx: Context = { maria, poe: null, scorer: null, seed: o.seed ?? 0, samples: 1, elboDraws: 1 };
  try {
    ctx.scorer = o.scorerDir ? await loadScorer(o.scorerDir, maria, o.threads) : null;
    const u = resolveUnconditional(o, o.length ?? 128, maria.maxTokens);
    const scorer = ctx.scorer ?? (await bundleArScorer(maria));
    const rows: UnconditionalRow[] = [];
    for (const spec of unconditionalSpecs(u.length, u.annealSteps, u.mdlmSteps)) {
      const t0 = now();
      const samples = await spec.run(ctx, u.n, u.length, ctx.seed);
      const seconds = now() - t0;
      rows.push(summariseUnconditional(spec, samples, seconds, await scoreRows(scorer, maria, samples)));
    }
    return {
      length: u.length,
      scorer: scorer.name,
      scorerIsEnergy: !ctx.scorer,
      rows,
      reference: o.referencePassages ? await referenceUnconditional(scorer, maria, o.referencePassages, u.n, u.length) : null,
      annealSteps: u.annealSteps,
    };
  } finally {
    if (ctx.scorer && !ctx.scorer.borrowed) await ctx.scorer.model.release();
    await releaseBaselines(maria);
    await maria.release();
  }
}

// ---------------------------------------------------------------------------------------------
// evaluate

/** Everything that determines the quality numbers: a resumed run must match it. */
function fingerprintOf(o: object): string {
  return createHash('sha256').update(JSON.stringify(o)).digest('hex');
}

/**
 * Runs the evaluation (see the header of this file for every metric). Returns the results; with
 * `shouldStop` returning true the run stops after the current unit and returns `complete: false`.
 */
export async function evaluate(o: EvalOptions): Promise<EvalResults> {
  const startWall = now();
  const seed = o.seed ?? 0;
  const maskRates = o.maskRates ?? DEFAULT_MASK_RATES;
  for (const r of maskRates) if (!(r > 0 && r <= 1)) throw new InputError(`mask rates must be in (0, 1], got ${r}`);
  const maskKinds: MaskKind[] = o.spans ? ['random', 'span'] : ['random'];
  const specs = (o.methods ?? DEFAULT_METHODS).map(parseMethod);
  const names = specs.map((s) => s.name);
  if (new Set(names).size !== names.length) throw new InputError(`a method is listed twice: ${names.join(', ')}`);
  if (specs.length === 0) throw new InputError('no methods to evaluate');
  const samples = o.samples ?? 4;
  if (!Number.isInteger(samples) || samples < 1) throw new InputError(`samples must be a positive integer, got ${samples}`);
  const elboDraws = o.elboDraws ?? 16;
  const chunkSize = o.chunkSize ?? 10;
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new InputError(`chunk size must be a positive integer, got ${chunkSize}`);
  const passages = o.passages;
  if (passages.length === 0) throw new InputError('no passages to evaluate');
  const length = passages[0].ids.length;
  if (passages.some((p) => p.ids.length !== length)) throw new InputError('all passages must have the same length');
  const scorerDir = o.scorerDir ? resolve(o.scorerDir) : null;
  if (scorerDir && !existsSync(scorerDir)) throw new InputError(`scorer folder ${scorerDir} does not exist`);
  const bundleDir = resolve(o.bundleDir);
  const notes: string[] = [];

  const session = o.threads ? { threads: o.threads } : {};
  const maria = await Maria.load(bundleDir, session);
  const ctx: Context = { maria, poe: null, scorer: null, seed, samples, elboDraws };
  try {
    if (specs.some((s) => s.head === 'product-of-experts')) ctx.poe = await Maria.load(bundleDir, session, { head: 'product-of-experts' });
    if (length > maria.maxTokens) throw new InputError(`passages are ${length} tokens long; the models take at most ${maria.maxTokens}`);
    if (scorerDir) {
      ctx.scorer = await loadScorer(scorerDir, maria, o.threads);
      if (!ctx.scorer.sameTokenizer) notes.push(`the scorer's tokenizer differs from the decoder's: sampled passages are decoded to text and re-tokenized for it, gen-ppl is per scorer token and genPplFilled is not available`);
      if (length + 1 > ctx.scorer.model.config.maxPositions) notes.push(`the scorer's context (${ctx.scorer.model.config.maxPositions}) is shorter than a passage: passages are truncated for it`);
    } else notes.push('no scorer model: generative perplexity of infills is not measured (give --scorer DIR, e.g. models/scorer)');
    if (maria.manifest.head.init === 'product-of-experts' && names.includes('maria') && names.includes('maria-poe')) {
      notes.push("the bundle's head is the untrained product-of-experts head: maria and maria-poe are the same model here");
    }

    const tp = o.throughput === false ? null : {
      lengths: o.throughput?.lengths ?? DEFAULT_THROUGHPUT_LENGTHS,
      rate: o.throughput?.rate ?? 0.5,
      passages: o.throughput?.passages ?? 3,
      passagesFor: o.throughput?.passagesFor ?? ((L: number, n: number) => brownPassages(maria.tokenizer, { length: L, n, seed })),
      warmup: o.throughput?.warmup ?? true,
      temperature: o.throughput?.temperature ?? 1,
    };
    const uncond = o.unconditional ? resolveUnconditional(o.unconditional, length, maria.maxTokens) : null;

    const config: EvalResults['config'] = {
      bundleDir,
      headInit: maria.manifest.head.init,
      methods: names,
      maskRates,
      maskKinds,
      samples,
      seed,
      elboDraws,
      chunkSize,
      passages: passages.length,
      passageLength: length,
      scorer: scorerDir,
      throughput: tp ? { lengths: tp.lengths, rate: tp.rate, passages: tp.passages, temperature: tp.temperature, warmup: tp.warmup } : null,
      unconditional: uncond,
    };
    const passageHash = createHash('sha256');
    for (const p of passages) passageHash.update(`${p.ids.join(',')};`);
    // The models' contents, not only their folders: a resume after retraining must not mix results.
    const contents = { bundle: bundleDigest(maria), scorer: ctx.scorer ? modelDigest(ctx.scorer.model) : null };
    const fingerprint = fingerprintOf({ ...config, passagesSha256: passageHash.digest('hex'), contents });

    const shard = o.shard;
    if (shard && !(Number.isInteger(shard.count) && shard.count >= 1 && Number.isInteger(shard.index) && shard.index >= 0 && shard.index < shard.count)) {
      throw new InputError(`shard ${shard.index} of ${shard.count}: the index must be an integer from 0 to count − 1`);
    }
    // By a hash of the key, not by position: positions cycle through the methods, whose costs differ a lot.
    const inShard = (key: string): boolean => !shard || (key !== 'throughput' && Math.floor(seededHash(0, key) * shard.count) === shard.index);

    let checkpoint: Checkpoint = { format: 'maria-eval-checkpoint', version: 1, fingerprint, startedAt: new Date().toISOString(), units: {} };
    let resumed = false;
    if (o.resume) {
      if (!o.checkpoint) throw new InputError('resume needs a checkpoint file');
      if (existsSync(o.checkpoint)) {
        const c = readCheckpoint(o.checkpoint);
        if (c.fingerprint !== fingerprint) throw new InputError(`${o.checkpoint}: the checkpoint is from a run with other arguments, passages or models (resume only with the same arguments and unchanged bundle and scorer)`);
        checkpoint = c;
      }
      for (const path of o.mergeCheckpoints ?? []) {
        if (!existsSync(path)) continue;
        const c = readCheckpoint(path);
        if (c.fingerprint !== fingerprint) throw new InputError(`${path}: this checkpoint is from a run with other arguments, passages or models; delete it or resume with the same arguments`);
        // A shard takes only its own share: the other shards' units would only grow the file it rewrites after each unit.
        for (const [key, unit] of Object.entries(c.units)) if (inShard(key)) checkpoint.units[key] ??= unit;
      }
      resumed = Object.keys(checkpoint.units).length > 0;
    }
    const save = (): void => {
      if (o.checkpoint) writeFileAtomic(o.checkpoint, JSON.stringify(checkpoint));
    };

    // The units, in order, each with its weight in progress items.
    interface Unit {
      key: string;
      weight: number;
      run: (tick: (items: number) => void) => Promise<QualitySums | ReferenceSums | ThroughputSums | UnconditionalSums>;
    }
    const units: Unit[] = [];
    const chunks: Array<{ start: number; items: readonly Passage[] }> = [];
    for (let s = 0; s < passages.length; s += chunkSize) chunks.push({ start: s, items: passages.slice(s, s + chunkSize) });
    if (ctx.scorer) {
      for (const c of chunks) {
        units.push({
          key: `reference|${c.start}`,
          weight: c.items.length,
          run: async (tick) => {
            const sums: ReferenceSums = { passages: 0, genNllSum: 0, genTokens: 0 };
            for (const p of c.items) {
              const [r] = await scoreRows(ctx.scorer!, maria, [p.ids]);
              sums.genNllSum += r.total;
              sums.genTokens += r.tokens;
              sums.passages++;
              tick(1);
            }
            return sums;
          },
        });
      }
    }
    for (const kind of maskKinds) {
      for (const rate of maskRates) {
        for (const c of chunks) {
          for (const spec of specs) {
            units.push({
              key: `quality|${spec.name}|${kind}|${rate}|${c.start}`,
              weight: c.items.length,
              run: async (tick) => {
                const sums = emptySums();
                for (let j = 0; j < c.items.length; j++) {
                  await evalPassage(ctx, spec, c.items[j], c.start + j, rate, kind, sums);
                  tick(1);
                }
                return sums;
              },
            });
          }
        }
      }
    }
    if (tp) {
      units.push({ key: 'throughput', weight: tp.lengths.length * tp.passages * specs.length, run: (tick) => measureThroughput(ctx, specs, tp, tick) });
    }
    const uncondSpecs = uncond ? unconditionalSpecs(uncond.length, uncond.annealSteps, uncond.mdlmSteps) : [];
    for (const spec of uncondSpecs) {
      units.push({
        key: `unconditional|${spec.name}`,
        weight: uncond!.n,
        run: async (tick) => {
          const t0 = now();
          const out = await spec.run(ctx, uncond!.n, uncond!.length, seed);
          tick(uncond!.n);
          return { method: spec.name, samples: out, seconds: now() - t0 };
        },
      });
    }

    if (shard) units.splice(0, units.length, ...units.filter((u) => inShard(u.key)));
    const total = units.reduce((a, u) => a + u.weight, 0);
    let done = 0;
    let restored = 0;
    for (const u of units) if (checkpoint.units[u.key]) restored += u.weight;
    done = restored;
    // A shard's result covers only its share: it is never complete (the merging run reports).
    let complete = !shard;
    o.onProgress?.({ done, total, restored, unit: '' });
    for (const u of units) {
      if (checkpoint.units[u.key]) continue;
      if (o.shouldStop?.()) {
        complete = false;
        break;
      }
      let inUnit = 0;
      const result = await u.run((items) => {
        inUnit += items;
        o.onProgress?.({ done: done + Math.min(inUnit, u.weight), total, restored, unit: u.key });
      });
      checkpoint.units[u.key] = result;
      save();
      done += u.weight;
      o.onProgress?.({ done, total, restored, unit: u.key });
    }

    // ---- aggregate
    const quality: QualityRow[] = [];
    const perPassage = new Map<string, Array<[number, number]>>();
    for (const kind of maskKinds) {
      for (const rate of maskRates) {
        for (const spec of specs) {
          const s = emptySums();
          let have = false;
          for (const c of chunks) {
            const u = checkpoint.units[`quality|${spec.name}|${kind}|${rate}|${c.start}`] as QualitySums | undefined;
            if (!u) continue;
            have = true;
            for (const k of SUM_FIELDS) s[k] += u[k];
            s.byPassage.push(...u.byPassage);
            for (const k of ['score', 'greedy', 'sample', 'scorer'] as const) s.time[k] += u.time[k];
          }
          if (!have) continue;
          perPassage.set(`${spec.name}|${kind}|${rate}`, s.byPassage);
          const nll = s.nllSum / s.masked;
          const each = (x: number): number => x / s.passages;
          quality.push({
            method: spec.name,
            label: spec.label,
            likelihood: spec.likelihood,
            maskKind: kind,
            rate,
            passages: s.passages,
            maskedTokens: s.masked,
            nll,
            nllSe: ratioSe(s.byPassage.map((b) => b[0]), s.byPassage.map((b) => b[1])),
            ppl: Math.exp(nll),
            accuracy: s.correct / s.masked,
            genPpl: s.genTokens > 0 ? Math.exp(s.genNllSum / s.genTokens) : null,
            genPplFilled: s.genFilledTokens > 0 ? Math.exp(s.genFilledNllSum / s.genFilledTokens) : null,
            distinct2: s.distinct2Count > 0 ? s.distinct2Sum / s.distinct2Count : null,
            entropy: s.entropySum / s.entropyTokens,
            secondsPerPassage: each(s.time.score + s.time.greedy + s.time.sample + s.time.scorer),
            phaseSeconds: { score: each(s.time.score), greedy: each(s.time.greedy), sample: each(s.time.sample), scorer: each(s.time.scorer) },
          });
        }
      }
    }
    const comparisons: Comparison[] = [];
    for (const kind of maskKinds) {
      for (const rate of maskRates) {
        const a = perPassage.get(`maria|${kind}|${rate}`);
        if (!a) continue;
        for (const spec of specs) {
          const b = perPassage.get(`${spec.name}|${kind}|${rate}`);
          if (spec.name === 'maria' || !b || b.length !== a.length) continue;
          const d = a.map((x, i) => x[0] - b[i][0]);
          const k = a.map((x) => x[1]);
          comparisons.push({ maskKind: kind, rate, method: spec.name, diff: d.reduce((x, y) => x + y, 0) / k.reduce((x, y) => x + y, 0), se: ratioSe(d, k) });
        }
      }
    }
    let reference: EvalResults['reference'] = null;
    if (ctx.scorer) {
      const r: ReferenceSums = { passages: 0, genNllSum: 0, genTokens: 0 };
      for (const c of chunks) {
        const u = checkpoint.units[`reference|${c.start}`] as ReferenceSums | undefined;
        if (!u) continue;
        r.passages += u.passages;
        r.genNllSum += u.genNllSum;
        r.genTokens += u.genTokens;
      }
      if (r.passages > 0) reference = { genPpl: Math.exp(r.genNllSum / r.genTokens), passages: r.passages };
    }
    let throughput: EvalResults['throughput'] = null;
    const t = checkpoint.units.throughput as ThroughputSums | undefined;
    if (t) {
      notes.push(...t.notes);
      const rows: ThroughputRow[] = t.rows.map((r) => {
        const seconds = r.times.reduce((a, b) => a + b, 0) / 1000;
        const spec = specs.find((s) => s.name === r.method)!;
        return {
          method: r.method,
          label: spec.label,
          length: r.length,
          requestedLength: r.requestedLength,
          passages: r.times.length,
          filledTokens: r.filled,
          seconds,
          msPerPassage: (seconds * 1000) / r.times.length,
          msPerPassageMedian: median(r.times),
          tokensPerSecond: r.filled / seconds,
          mariaSpeedup: null,
        };
      });
      for (const row of rows) {
        const ref = rows.find((x) => x.method === 'maria' && x.length === row.length);
        row.mariaSpeedup = ref ? row.seconds / ref.seconds : null;
      }
      throughput = { rate: t.rate, temperature: t.temperature, rows };
    }
    let unconditional: UnconditionalResults | null = null;
    if (uncond) {
      const scorer = ctx.scorer ?? (await bundleArScorer(maria));
      const rows: UnconditionalRow[] = [];
      for (const spec of uncondSpecs) {
        const u = checkpoint.units[`unconditional|${spec.name}`] as UnconditionalSums | undefined;
        if (!u) continue;
        rows.push(summariseUnconditional(spec, u.samples, u.seconds, await scoreRows(scorer, maria, u.samples)));
      }
      unconditional = {
        length: uncond.length,
        scorer: scorer.name,
        scorerIsEnergy: !ctx.scorer,
        rows,
        reference: await referenceUnconditional(scorer, maria, passages, uncond.n, uncond.length),
        annealSteps: uncond.annealSteps,
      };
      if (!ctx.scorer) notes.push("unconditional samples are scored by the bundle's own AR, which is also maria-anneal's energy: its gen-ppl is biased in maria-anneal's favour");
    }

    const genres: Record<string, number> = {};
    for (const p of passages) genres[p.genre] = (genres[p.genre] ?? 0) + 1;
    const cpus = os.cpus();
    return {
      format: 'maria-eval-results',
      version: 1,
      complete,
      config,
      meta: {
        command: o.command ?? null,
        date: new Date().toISOString(),
        startedAt: checkpoint.startedAt,
        resumed,
        wallSeconds: now() - startWall,
        machine: {
          cpu: cpus[0]?.model ?? 'unknown',
          cores: cpus.length,
          threads: o.threads ?? (Number(process.env.MARIA_THREADS) || os.availableParallelism()),
          node: process.version,
          onnxruntime: onnxruntimeVersion(),
          os: `${os.type()} ${os.release()} ${os.arch()}`,
          loadAverage: os.loadavg(),
        },
        data: { ...(o.data ?? { source: 'passages', description: 'passages given to evaluate()' }), passages: passages.length, length, docs: new Set(passages.map((p) => p.docId)).size, genres },
        models: { mlm: maria.mlm.dir, ar: maria.ar.dir, mlmParameters: countParameters(maria.mlm.params), arParameters: countParameters(maria.ar.params) },
      },
      quality,
      comparisons,
      reference,
      throughput,
      unconditional,
      notes,
    };
  } finally {
    if (ctx.scorer && !ctx.scorer.borrowed) await ctx.scorer.model.release();
    await releaseBaselines(maria);
    await maria.release();
    if (ctx.poe) {
      await releaseBaselines(ctx.poe);
      await ctx.poe.release();
    }
  }
}

/** The quality numbers of a result (everything a rerun with the same arguments must reproduce). */
export function qualityNumbers(r: EvalResults): unknown {
  return {
    quality: r.quality.map(({ secondsPerPassage: _s, phaseSeconds: _p, ...rest }) => rest),
    comparisons: r.comparisons,
    reference: r.reference,
    unconditional: r.unconditional ? { ...r.unconditional, rows: r.unconditional.rows.map(({ secondsPerSample: _s, ...rest }) => rest) } : null,
  };
}
