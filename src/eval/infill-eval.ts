// The infilling evaluation harness: MARIA against its baselines on the same passages, the same masks
// and the same models, in one run (definitions of the methods in docs MARIA.md and
// src/maria/baselines.ts). Library first: `evaluate(options)` returns an EvalResults object;
// src/eval/report.ts turns it into results.json, report.md and SVG plots; `maria eval` is the CLI.
// Beside it: the methods and their masks (methods.ts), throughput timing (throughput.ts), the
// scorer LM (scorer.ts), unconditional generation (unconditional.ts) and the resumable, shardable
// units of work (units.ts).
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
//   genPpl     generative perplexity of sampled infills (`temperature`, default 1, no top-k/top-p) under a
//              separate causal "scorer" LM: exp of the mean −log p_scorer(y_i | [BOS] y_<i) over
//              EVERY token of the filled passage y (given tokens too, so a fill that does not fit
//              its right context is penalised), pooled over samples and passages. genPplFilled is
//              the same mean over the filled positions only. Reference: the scorer on the true
//              passages (the same for every method).
//   distinct2  per passage, the token bigrams of the N sampled fills that touch at least one
//              filled position, pooled over the N samples: #distinct / #total (1 = every sample
//              differs everywhere, about 1/N = all samples identical); mean over passages.
//   entropy    mean over sampled filled tokens of −log p(y_i), p the model's distribution at
//              that step (after banning special tokens; FilledToken.logprob). At temperature 1 the
//              samples are drawn from p, so this is an unbiased Monte-Carlo estimate of the mean
//              per-position entropy H(p) of the sampling distributions (nats); at another
//              temperature it is the model's mean surprisal of its own samples (lower = sharper).
//
// Masks: evalMask(ids, rate, kind, seed) = randomMask / spanMask (src/maria/masks.ts): a function of
// the passage's tokens, the rate and the seed only, so every method sees identical masks.
// Seeds: every sampler and Monte-Carlo seed is derived from (seed, method, mask kind, rate, passage
// index) by seededHash, so the same arguments give the same quality numbers (timings aside), and a
// resumed run gives the same numbers as a straight one.
//
// Work is split into units (method × kind × rate × chunk of passages); after each unit its partial
// sums are written atomically to a checkpoint JSON; `resume` skips the units already there (units.ts).
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { resolve } from 'node:path';
import type { SessionOptions } from '../engine/runtime.js';
import { infillWithMethod, mdlmElbo, releaseBaselines, scoreWithMethod } from '../maria/baselines.js';
import { bundleDigest, modelDigest } from '../maria/digest.js';
import { Maria, type InfillResult } from '../maria/maria.js';
import { InputError } from '../maria/masks.js';
import { countParameters } from '../models/weights.js';
import type { Passage } from './lm-eval.js';
import { blanked, DEFAULT_METHODS, evalMask, instanceFor, parseMethod, stepsFor, type LikelihoodKind, type MaskKind, type MethodSpec } from './methods.js';
import { bundleArScorer, loadScorer, scoreRows, type Scorer } from './scorer.js';
import { measureThroughput, throughputResult, throughputSettings, type ThroughputOptions, type ThroughputRow, type ThroughputSums } from './throughput.js';
import {
  referenceUnconditional,
  resolveUnconditional,
  summariseUnconditional,
  unconditionalSpecs,
  type UncondSpec,
  type UnconditionalOptions,
  type UnconditionalResults,
  type UnconditionalRow,
  type UnconditionalSettings,
} from './unconditional.js';
import { openCheckpoint, runUnits, shardFilter, type Checkpoint as UnitCheckpoint, type Shard, type Unit as WorkUnit, type UnitProgress } from './units.js';
import { derivedSeed, distinctN, now } from './util.js';

export { DEFAULT_METHODS, evalMask, parseMethod, type BaseMethod, type LikelihoodKind, type MaskKind, type MethodSpec } from './methods.js';
export { DEFAULT_THROUGHPUT_LENGTHS, type ThroughputOptions, type ThroughputRow } from './throughput.js';
export type EvalProgress = UnitProgress;

export const DEFAULT_MASK_RATES = [0.15, 0.3, 0.5, 0.7, 0.9];

// ---------------------------------------------------------------------------------------------
// Options and results

export interface DataInfo {
  /** 'brown' or the file read. */
  source: string;
  /** How the passages were chosen, in words (goes into the report). */
  description: string;
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
  /** Sampling temperature of those infills (default 1; > 0: greedy infills are measured apart). */
  temperature?: number;
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
  shard?: Shard;
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
    /** Of the sampled infills; absent in results written before it could be set (then 1). */
    temperature?: number;
    seed: number;
    elboDraws: number;
    chunkSize: number;
    passages: number;
    passageLength: number;
    scorer: string | null;
    throughput: { lengths: number[]; rate: number; passages: number; temperature: number; warmup: boolean } | null;
    unconditional: UnconditionalSettings | null;
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
// What each unit of work keeps in the checkpoint

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

interface UnconditionalSums {
  method: string;
  samples: number[][];
  seconds: number;
}

type UnitSums = QualitySums | ReferenceSums | ThroughputSums | UnconditionalSums;
type Checkpoint = UnitCheckpoint<UnitSums>;
type Unit = WorkUnit<UnitSums>;

/** The additive counters of QualitySums (merged across checkpoint units by adding). */
const SUM_FIELDS = ['passages', 'masked', 'nllSum', 'correct', 'genNllSum', 'genTokens', 'genFilledNllSum', 'genFilledTokens', 'distinct2Sum', 'distinct2Count', 'entropySum', 'entropyTokens'] as const;

function emptySums(): QualitySums {
  return { passages: 0, masked: 0, nllSum: 0, correct: 0, genNllSum: 0, genTokens: 0, genFilledNllSum: 0, genFilledTokens: 0, distinct2Sum: 0, distinct2Count: 0, entropySum: 0, entropyTokens: 0, byPassage: [], time: { score: 0, greedy: 0, sample: 0, scorer: 0 } };
}

const require = createRequire(import.meta.url);

function onnxruntimeVersion(): string {
  try {
    return (require('onnxruntime-node/package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
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

// ---------------------------------------------------------------------------------------------
// The harness

interface Context {
  maria: Maria;
  poe: Maria | null;
  scorer: Scorer | null;
  seed: number;
  samples: number;
  temperature: number;
  elboDraws: number;
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
  const sampled: InfillResult = await infillWithMethod(m, seq, spec.base, { temperature: ctx.temperature, samples: ctx.samples, seed: derivedSeed(ctx.seed, `sample/${key}`), steps, alternatives: 0 });
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

// ---------------------------------------------------------------------------------------------
// evaluate

/** EvalOptions with their defaults, checked before any model loads: a bad argument fails at once. */
interface Settings {
  seed: number;
  maskRates: number[];
  maskKinds: MaskKind[];
  specs: MethodSpec[];
  names: string[];
  samples: number;
  temperature: number;
  elboDraws: number;
  chunkSize: number;
  passages: readonly Passage[];
  length: number;
  scorerDir: string | null;
  bundleDir: string;
}

function checkedSettings(o: EvalOptions): Settings {
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
  const temperature = o.temperature ?? 1;
  if (!(temperature > 0 && Number.isFinite(temperature))) throw new InputError(`the sampling temperature must be a positive number, got ${temperature} (greedy infills are measured anyway, as accuracy)`);
  const elboDraws = o.elboDraws ?? 16;
  const chunkSize = o.chunkSize ?? 10;
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new InputError(`chunk size must be a positive integer, got ${chunkSize}`);
  const passages = o.passages;
  if (passages.length === 0) throw new InputError('no passages to evaluate');
  const length = passages[0].ids.length;
  if (passages.some((p) => p.ids.length !== length)) throw new InputError('all passages must have the same length');
  const scorerDir = o.scorerDir ? resolve(o.scorerDir) : null;
  if (scorerDir && !existsSync(scorerDir)) throw new InputError(`scorer folder ${scorerDir} does not exist`);
  return { seed, maskRates, maskKinds, specs, names, samples, temperature, elboDraws, chunkSize, passages, length, scorerDir, bundleDir: resolve(o.bundleDir) };
}

/**
 * Each model goes into `ctx` as soon as it loads, so that evaluate's cleanup releases it even when a
 * later check throws.
 */
async function loadPoeAndScorer(ctx: Context, settings: Settings, session: SessionOptions, threads: number | undefined, notes: string[]): Promise<void> {
  const { maria } = ctx;
  const { length, scorerDir, names } = settings;
  if (settings.specs.some((s) => s.head === 'product-of-experts')) ctx.poe = await Maria.load(settings.bundleDir, session, { head: 'product-of-experts' });
  if (length > maria.maxTokens) throw new InputError(`passages are ${length} tokens long; the models take at most ${maria.maxTokens}`);
  if (scorerDir) {
    ctx.scorer = await loadScorer(scorerDir, maria, threads);
    if (!ctx.scorer.sameTokenizer) notes.push(`the scorer's tokenizer differs from the decoder's: sampled passages are decoded to text and re-tokenized for it, gen-ppl is per scorer token and genPplFilled is not available`);
    if (length + 1 > ctx.scorer.model.config.maxPositions) notes.push(`the scorer's context (${ctx.scorer.model.config.maxPositions}) is shorter than a passage: passages are truncated for it`);
  } else notes.push('no scorer model: generative perplexity of infills is not measured (give --scorer DIR, e.g. models/scorer)');
  if (maria.manifest.head.init === 'product-of-experts' && names.includes('maria') && names.includes('maria-poe')) {
    notes.push("the bundle's head is the untrained product-of-experts head: maria and maria-poe are the same model here");
  }
}

/** The fingerprint hashes this object as JSON: its keys and their order are part of every checkpoint. */
function runConfig(settings: Settings, maria: Maria, tp: Required<ThroughputOptions> | null, uncond: UnconditionalSettings | null): EvalResults['config'] {
  return {
    bundleDir: settings.bundleDir,
    headInit: maria.manifest.head.init,
    methods: settings.names,
    maskRates: settings.maskRates,
    maskKinds: settings.maskKinds,
    samples: settings.samples,
    temperature: settings.temperature,
    seed: settings.seed,
    elboDraws: settings.elboDraws,
    chunkSize: settings.chunkSize,
    passages: settings.passages.length,
    passageLength: settings.length,
    scorer: settings.scorerDir,
    throughput: tp ? { lengths: tp.lengths, rate: tp.rate, passages: tp.passages, temperature: tp.temperature, warmup: tp.warmup } : null,
    unconditional: uncond,
  };
}

/** Everything that determines the quality numbers: a resumed run must match it. */
function fingerprintOf(config: EvalResults['config'], passages: readonly Passage[], ctx: Context): string {
  const passageHash = createHash('sha256');
  for (const p of passages) passageHash.update(`${p.ids.join(',')};`);
  // The models' contents, not only their folders: a resume after retraining must not mix results.
  const contents = { bundle: bundleDigest(ctx.maria), scorer: ctx.scorer ? modelDigest(ctx.scorer.model) : null };
  return createHash('sha256').update(JSON.stringify({ ...config, passagesSha256: passageHash.digest('hex'), contents })).digest('hex');
}

interface Chunk {
  /** Index of the first passage: part of the unit keys and of the seeds. */
  start: number;
  items: readonly Passage[];
}

function chunksOf(passages: readonly Passage[], chunkSize: number): Chunk[] {
  const chunks: Chunk[] = [];
  for (let s = 0; s < passages.length; s += chunkSize) chunks.push({ start: s, items: passages.slice(s, s + chunkSize) });
  return chunks;
}

/** The keys are the checkpoint's: a resumed run finds its done units by them, so they never change. */
function planUnits(
  ctx: Context,
  settings: Settings,
  chunks: Chunk[],
  tp: Required<ThroughputOptions> | null,
  uncond: UnconditionalSettings | null,
  uncondSpecs: UncondSpec[],
): Unit[] {
  const units: Unit[] = [];
  if (ctx.scorer) {
    for (const c of chunks) {
      units.push({
        key: `reference|${c.start}`,
        weight: c.items.length,
        run: async (tick) => {
          const sums: ReferenceSums = { passages: 0, genNllSum: 0, genTokens: 0 };
          for (const p of c.items) {
            const [r] = await scoreRows(ctx.scorer!, ctx.maria, [p.ids]);
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
  for (const kind of settings.maskKinds) {
    for (const rate of settings.maskRates) {
      for (const c of chunks) {
        for (const spec of settings.specs) {
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
    units.push({ key: 'throughput', weight: tp.lengths.length * tp.passages * settings.specs.length, run: (tick) => measureThroughput(ctx, settings.specs, tp, tick) });
  }
  for (const spec of uncondSpecs) {
    units.push({
      key: `unconditional|${spec.name}`,
      weight: uncond!.n,
      run: async (tick) => {
        const t0 = now();
        const out = await spec.run(ctx.maria, uncond!.n, uncond!.length, ctx.seed);
        tick(uncond!.n);
        return { method: spec.name, samples: out, seconds: now() - t0 };
      },
    });
  }
  return units;
}

/**
 * A row wherever at least one chunk is done, so that a stopped run reports what it has;
 * `perPassage` keeps each row's passages for the paired comparisons.
 */
function qualityRows(checkpoint: Checkpoint, settings: Settings, chunks: Chunk[]): { quality: QualityRow[]; perPassage: Map<string, Array<[number, number]>> } {
  const quality: QualityRow[] = [];
  const perPassage = new Map<string, Array<[number, number]>>();
  for (const kind of settings.maskKinds) {
    for (const rate of settings.maskRates) {
      for (const spec of settings.specs) {
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
  return { quality, perPassage };
}

/** Paired by passage, since every method sees the same masks (see Comparison). */
function pairedComparisons(perPassage: Map<string, Array<[number, number]>>, settings: Settings): Comparison[] {
  const comparisons: Comparison[] = [];
  for (const kind of settings.maskKinds) {
    for (const rate of settings.maskRates) {
      const a = perPassage.get(`maria|${kind}|${rate}`);
      if (!a) continue;
      for (const spec of settings.specs) {
        const b = perPassage.get(`${spec.name}|${kind}|${rate}`);
        if (spec.name === 'maria' || !b || b.length !== a.length) continue;
        const d = a.map((x, i) => x[0] - b[i][0]);
        const k = a.map((x) => x[1]);
        comparisons.push({ maskKind: kind, rate, method: spec.name, diff: d.reduce((x, y) => x + y, 0) / k.reduce((x, y) => x + y, 0), se: ratioSe(d, k) });
      }
    }
  }
  return comparisons;
}

function referenceResult(checkpoint: Checkpoint, chunks: Chunk[]): EvalResults['reference'] {
  const r: ReferenceSums = { passages: 0, genNllSum: 0, genTokens: 0 };
  for (const c of chunks) {
    const u = checkpoint.units[`reference|${c.start}`] as ReferenceSums | undefined;
    if (!u) continue;
    r.passages += u.passages;
    r.genNllSum += u.genNllSum;
    r.genTokens += u.genTokens;
  }
  return r.passages > 0 ? { genPpl: Math.exp(r.genNllSum / r.genTokens), passages: r.passages } : null;
}

async function unconditionalResult(
  ctx: Context,
  uncond: UnconditionalSettings,
  uncondSpecs: UncondSpec[],
  checkpoint: Checkpoint,
  passages: readonly Passage[],
  notes: string[],
): Promise<UnconditionalResults> {
  const scorer = ctx.scorer ?? (await bundleArScorer(ctx.maria));
  const rows: UnconditionalRow[] = [];
  for (const spec of uncondSpecs) {
    const u = checkpoint.units[`unconditional|${spec.name}`] as UnconditionalSums | undefined;
    if (!u) continue;
    rows.push(summariseUnconditional(spec, u.samples, u.seconds, await scoreRows(scorer, ctx.maria, u.samples)));
  }
  if (!ctx.scorer) notes.push("unconditional samples are scored by the bundle's own AR, which is also maria-anneal's energy: its gen-ppl is biased in maria-anneal's favour");
  return {
    length: uncond.length,
    scorer: scorer.name,
    scorerIsEnergy: !ctx.scorer,
    rows,
    reference: await referenceUnconditional(scorer, ctx.maria, passages, uncond.n, uncond.length),
    annealSteps: uncond.annealSteps,
  };
}

/** What the report needs to say where, when and on what the numbers were measured. */
function runMeta(o: EvalOptions, settings: Settings, maria: Maria, checkpoint: Checkpoint, resumed: boolean, startWall: number): EvalResults['meta'] {
  const { passages, length } = settings;
  const genres: Record<string, number> = {};
  for (const p of passages) genres[p.genre] = (genres[p.genre] ?? 0) + 1;
  const cpus = os.cpus();
  return {
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
  };
}

/**
 * Runs the evaluation (see the header of this file for every metric). Returns the results; with
 * `shouldStop` returning true the run stops after the current unit and returns `complete: false`.
 */
export async function evaluate(o: EvalOptions): Promise<EvalResults> {
  const startWall = now();
  const settings = checkedSettings(o);
  const notes: string[] = [];

  const session = o.threads ? { threads: o.threads } : {};
  const maria = await Maria.load(settings.bundleDir, session);
  const ctx: Context = { maria, poe: null, scorer: null, seed: settings.seed, samples: settings.samples, temperature: settings.temperature, elboDraws: settings.elboDraws };
  try {
    await loadPoeAndScorer(ctx, settings, session, o.threads, notes);
    const tp = throughputSettings(o.throughput, maria, settings.seed);
    const uncond = o.unconditional ? resolveUnconditional(o.unconditional, settings.length, maria.maxTokens) : null;
    const config = runConfig(settings, maria, tp, uncond);
    const fingerprint = fingerprintOf(config, settings.passages, ctx);
    const inShard = shardFilter(o.shard, ['throughput']);
    const { checkpoint, resumed } = openCheckpoint<UnitSums>(o, fingerprint, inShard);

    const chunks = chunksOf(settings.passages, settings.chunkSize);
    const uncondSpecs = uncond ? unconditionalSpecs(uncond.length, uncond.annealSteps, uncond.mdlmSteps) : [];
    const units = planUnits(ctx, settings, chunks, tp, uncond, uncondSpecs).filter((u) => inShard(u.key));
    const finished = await runUnits(units, checkpoint, o);

    const { quality, perPassage } = qualityRows(checkpoint, settings, chunks);
    const comparisons = pairedComparisons(perPassage, settings);
    const reference = ctx.scorer ? referenceResult(checkpoint, chunks) : null;
    const throughputSums = checkpoint.units.throughput as ThroughputSums | undefined;
    if (throughputSums) notes.push(...throughputSums.notes);
    const throughput = throughputSums ? throughputResult(throughputSums, settings.specs) : null;
    const unconditional = uncond ? await unconditionalResult(ctx, uncond, uncondSpecs, checkpoint, settings.passages, notes) : null;
    return {
      format: 'maria-eval-results',
      version: 1,
      // A shard's result covers only its share: it is never complete (the merging run reports).
      complete: !o.shard && finished,
      config,
      meta: runMeta(o, settings, maria, checkpoint, resumed, startWall),
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
