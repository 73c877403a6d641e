// Training MARIA's head with frozen backbones (L_MARIA):
//   L = E_x E_M [ -(1/|M|) Σ_{i∈M} log p(x_i | x_<i, x~) ],  only W3 and b3 trained, AdamW.
// The AR features depend only on the clean text, so each batch of windows is run through the AR
// once and reused for several mask samples; only the MLM pass depends on the mask. Features are
// gathered at the masked positions in JS and the training step is a tiny graph (one linear layer
// and the loss) run by the engine's TrainStep.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { Graph, type Tensor } from '../engine/graph.js';
import * as F from '../engine/ops.js';
import * as nn from '../engine/nn.js';
import { warmupCosine } from '../engine/optim.js';
import { TrainStep } from '../engine/trainer.js';
import { floatTensor, int64Tensor, type SessionOptions } from '../engine/runtime.js';
import { loadCheckpoint, saveCheckpoint, trainCheckpoint, trainStateOf } from '../engine/checkpoint.js';
import { CausalLM } from '../models/causal-lm.js';
import { MaskedLM } from '../models/masked-lm.js';
import { bundlePath, readManifest, writeBundle, type BundleManifest } from './bundle.js';
import { mlmInputRow, type MlmRowSpec } from './core.js';
import { pairModels } from './create.js';
import { headLogits, type HeadWeights } from './head.js';
import { spanMask } from './masks.js';
import { stepRandom, type TokenStream } from '../train/data.js';

export interface TrainHeadOptions {
  mlmDir: string;
  arDir: string;
  /** Bundle folder to write. */
  out: string;
  train: TokenStream;
  validation: TokenStream;
  steps: number;
  /** Text windows per batch. */
  batch: number;
  /** Text tokens per window. */
  length: number;
  /** Mask samples per batch of windows (the AR features are reused across them). */
  maskSamples: number;
  /** Probability that a sample uses span masking instead of i.i.d. masking. */
  spanProbability: number;
  lr: number;
  warmup: number;
  weightDecay: number;
  seed: number;
  validateEvery: number;
  validationWindows: number;
  checkpointEvery: number;
  resume: boolean;
  maxMinutes?: number;
  /** Token ids that are never masked and never start a window (document markers). */
  isSpecial: (id: number) => boolean;
  session?: SessionOptions;
  onStep?: (s: { step: number; steps: number; loss: number; lr: number; elapsedSeconds: number; tokensPerSecond: number }) => void;
  onValidate?: (v: { step: number; loss: number; byRate: Record<string, number> }) => void;
  shouldStop?: () => boolean;
  /** Recorded in maria.json. */
  command?: string;
  /** How the head is stored in the bundle (training state stays F32). */
  headDtype?: 'F32' | 'F16';
  /** Which of the head's parameters train (default 'all'); the others keep their PoE values. */
  headParams?: HeadParams;
  /**
   * Early stopping: the bundle holds the head of the best validation seen (the PoE start included)
   * instead of the last one. 'mean': the lowest L_MARIA averaged over the rates; 'worst-rate': the
   * largest gain over the PoE start on the rate where it gains least, so a kept head beats the start
   * at every rate. With validation text of another domain than the training text, this keeps the
   * head where it still transfers.
   */
  keepBest?: KeepBest;
}

export type KeepBest = 'mean' | 'worst-rate';
export const KEEP_BEST: readonly KeepBest[] = ['mean', 'worst-rate'];

/**
 * What a head run may change, from most to least capacity: everything (the two expert gains, the
 * bias b3 and the full correction Δ of W3), the gains and the bias, or only the two gains (a
 * calibrated product of experts). Less capacity transfers better to text unlike the training text.
 */
export type HeadParams = 'all' | 'gains-bias' | 'gains';
export const HEAD_PARAMS: readonly HeadParams[] = ['all', 'gains-bias', 'gains'];

/** Validation rates: the loss is reported per rate and averaged. */
export const VALIDATION_RATES = [0.15, 0.5, 0.9];

interface FeatureBatch {
  hMlm: Float32Array;
  hAr: Float32Array;
  targets: number[];
  /** 1/(|M_b|·B) per masked token, so the sum is L_MARIA's per-sequence average. */
  weights: Float32Array;
}

/** Feature extraction with the frozen backbones. */
export class FeatureExtractor {
  private readonly mlmRowSpec: MlmRowSpec;

  private constructor(
    private readonly mlm: MaskedLM,
    private readonly ar: CausalLM,
    private readonly manifest: BundleManifest,
    arToMlm: Int32Array | null,
    mlmUnkId: number | null,
  ) {
    const { mlmMaskId, mlmPrefixIds, mlmSuffixIds } = manifest;
    this.mlmRowSpec = { mlmMaskId, mlmPrefixIds, mlmSuffixIds, arToMlm, mlmVocabSize: mlm.config.vocabSize, mlmUnkId };
  }

  static async create(mlmDir: string, arDir: string, manifest: BundleManifest, arToMlm: Int32Array | null, mlmUnkId: number | null, session?: SessionOptions): Promise<FeatureExtractor> {
    const mlm = await MaskedLM.load(mlmDir, session, { logits: false });
    const ar = await CausalLM.load(arDir, session, { keepLogits: false, build: () => ({}) });
    return new FeatureExtractor(mlm, ar, manifest, arToMlm, mlmUnkId);
  }

  /** AR features of clean windows: [B, L, dA], row i predicting token i. */
  async arFeatures(windows: number[][]): Promise<Float32Array> {
    const out = await this.ar.step(this.ar.newCache(windows.length), windows.map((w) => [this.manifest.arBosId, ...w.slice(0, -1)]));
    return out.hidden;
  }

  /** MLM features of masked windows: [B, L, dM] at the text positions. */
  async mlmFeatures(windows: number[][], masks: boolean[][]): Promise<Float32Array> {
    const pre = this.manifest.mlmPrefixIds;
    const out = await this.mlm.forward(windows.map((w, b) => mlmInputRow(this.mlmRowSpec, w, masks[b])));
    const L = windows[0].length;
    const dM = this.mlm.config.hiddenSize;
    const T = out.T;
    const h = new Float32Array(windows.length * L * dM);
    for (let b = 0; b < windows.length; b++) h.set(out.hidden.subarray((b * T + pre.length) * dM, (b * T + pre.length + L) * dM), b * L * dM);
    return h;
  }

  /** Gathers the features at the masked positions into one training batch. */
  gather(windows: number[][], masks: boolean[][], hAr: Float32Array, hMlm: Float32Array): FeatureBatch {
    const dM = this.mlm.config.hiddenSize;
    const dA = this.ar.config.hiddenSize;
    const L = windows[0].length;
    const B = windows.length;
    const n = masks.reduce((a, m) => a + m.filter(Boolean).length, 0);
    const out: FeatureBatch = { hMlm: new Float32Array(n * dM), hAr: new Float32Array(n * dA), targets: [], weights: new Float32Array(n) };
    let k = 0;
    for (let b = 0; b < B; b++) {
      const count = masks[b].filter(Boolean).length;
      for (let i = 0; i < L; i++) {
        if (!masks[b][i]) continue;
        out.hMlm.set(hMlm.subarray((b * L + i) * dM, (b * L + i + 1) * dM), k * dM);
        out.hAr.set(hAr.subarray((b * L + i) * dA, (b * L + i + 1) * dA), k * dA);
        out.targets.push(windows[b][i]);
        out.weights[k] = 1 / (count * B);
        k++;
      }
    }
    return out;
  }

  async release(): Promise<void> {
    await Promise.all([this.mlm.release(), this.ar.release()]);
  }
}

/** Windows of `length` tokens lying inside one document (no special tokens), from `rand`. */
export function textWindows(stream: TokenStream, count: number, length: number, rand: () => number, isSpecial: (id: number) => boolean): number[][] {
  if (stream.length < length) throw new Error(`the token stream has ${stream.length} tokens, fewer than one window of ${length}; use a shorter --length or more data`);
  const out: number[][] = [];
  for (let tries = 0; out.length < count; tries++) {
    if (tries > count * 1000) throw new Error(`could not find ${count} windows of ${length} tokens inside documents; use a shorter --length`);
    const o = Math.floor(rand() * (stream.length - length + 1));
    const w = Array.from(stream.subarray(o, o + length));
    if (!w.some(isSpecial)) out.push(w);
  }
  return out;
}

/** I.i.d. masks at a per-row rate r ~ U(0,1) (or fixed), or span masks; at least one per row. */
export function sampleMasks(windows: number[][], rand: () => number, spanProbability: number, fixedRate?: number): boolean[][] {
  return windows.map((w) => {
    const r = fixedRate ?? Math.max(rand(), 1e-3);
    if (rand() < spanProbability) return spanMask(w, r, Math.floor(rand() * 2 ** 31));
    const m = w.map(() => rand() < r);
    if (!m.some(Boolean)) m[Math.floor(rand() * w.length)] = true;
    return m;
  });
}

/** How much faster the two expert gains move than the head's weights under the same learning rate. */
const GAIN_SCALE = 50;

/** The MLM and AR column blocks of a head's weight, each [V, d]. */
function splitHead(h: HeadWeights): { mlmHalf: Float32Array; arHalf: Float32Array } {
  const { vocabSize: V, mlmHidden: dM, arHidden: dA } = h;
  const mlmHalf = new Float32Array(V * dM);
  const arHalf = new Float32Array(V * dA);
  for (let v = 0; v < V; v++) {
    mlmHalf.set(h.weight.subarray(v * (dM + dA), v * (dM + dA) + dM), v * dM);
    arHalf.set(h.weight.subarray(v * (dM + dA) + dM, (v + 1) * (dM + dA)), v * dA);
  }
  return { mlmHalf, arHalf };
}

const SELECTION: Record<KeepBest, string> = {
  mean: 'the step of the lowest validation L_MARIA averaged over the rates, the PoE start included',
  'worst-rate': "the step whose validation L_MARIA gains most over the PoE start on the rate where it gains least (the start itself if no step gains at every rate)",
};

const TRAINED: Record<HeadParams, string> = { all: 'the gains g_M and g_A, b3 and Δ', 'gains-bias': 'the gains g_M and g_A and b3 (Δ = 0)', gains: 'the gains g_M and g_A only (Δ = 0, b3 from the PoE start)' };

/** W3 = [g_M·W_M, g_A·W_A] + Δ from the product-of-experts start (Δ = 0 when null). */
export function materializeHead(poe: HeadWeights, gainMlm: number, gainAr: number, delta: Float32Array | null, bias: Float32Array): HeadWeights {
  const { vocabSize: V, mlmHidden: dM, arHidden: dA } = poe;
  const d = dM + dA;
  const weight = new Float32Array(V * d);
  for (let v = 0; v < V; v++) {
    for (let j = 0; j < d; j++) weight[v * d + j] = (j < dM ? gainMlm : gainAr) * poe.weight[v * d + j] + (delta ? delta[v * d + j] : 0);
  }
  return { weight, bias: Float32Array.from(bias), vocabSize: V, mlmHidden: dM, arHidden: dA };
}

/** Trains (or resumes training) the head and writes the bundle. */
/** One validation: L_MARIA averaged over the rates, and per rate. */
export interface HeadValidation {
  step: number;
  loss: number;
  byRate: Record<string, number>;
}

export async function trainHead(o: TrainHeadOptions): Promise<{ steps: number; finished: boolean; poe: Record<string, number>; validation: HeadValidation[]; best: HeadValidation | null; wallSeconds: number }> {
  mkdirSync(o.out, { recursive: true });
  const { manifest, head: poeHead, arToMlm, mlmUnkId } = pairModels(o.mlmDir, o.arDir, o.out);
  const features = await FeatureExtractor.create(bundlePath(o.out, manifest.mlm), bundlePath(o.out, manifest.ar), manifest, arToMlm, mlmUnkId, o.session);
  const { vocabSize: V, mlmHidden: dM, arHidden: dA } = poeHead;

  // The head is trained as W3 = [g_M·W1/2, g_A·W2/2] + Δ (Δ starts at 0, the gains at 1): still one
  // linear map (materialised when saved), but re-weighting a whole expert is one parameter instead of
  // a coordinated move of millions, which Adam's per-weight steps make slow and noisy.
  const g = new Graph();
  const hMlm = g.input('h_mlm', ['N', dM]);
  const hAr = g.input('h_ar', ['N', dA]);
  const targets = g.input('targets', ['N'], 'int64');
  const weights = g.input('weights', ['N']);
  const { mlmHalf, arHalf } = splitHead(poeHead);
  // g = 1 + GAIN_SCALE·γ: the same learning rate moves a gain GAIN_SCALE times faster than a weight.
  const gainOf = (name: string): Tensor => F.add(g.scalar(1), F.mul(g.scalar(GAIN_SCALE), g.param(name, new Float32Array([0]), [1])));
  const gainMlm = gainOf('gain_mlm');
  const gainAr = gainOf('gain_ar');
  const headParams = o.headParams ?? 'all';
  const bias = headParams === 'gains' ? g.constant(poeHead.bias, [V]) : g.param('bias', poeHead.bias, [V]);
  const experts = F.add(
    F.mul(gainMlm, nn.linear(hMlm, g.constant(mlmHalf, [V, dM]))),
    F.mul(gainAr, nn.linear(hAr, g.constant(arHalf, [V, dA]))),
  );
  const logits =
    headParams === 'all'
      ? F.add(experts, headLogits(hMlm, hAr, g.param('delta', new Float32Array(V * (dM + dA)), [V, dM + dA]), bias))
      : F.add(experts, bias);
  const loss = F.sum(F.mul(nn.tokenNll(logits, targets), weights), [0]);
  const trainer = await TrainStep.create(g, loss, {
    schedule: warmupCosine(o.lr, o.warmup, o.steps, o.lr * 0.1),
    weightDecay: o.weightDecay,
    // Decay pulls Δ back toward the (re-weighted) product of experts, never the gains.
    decay: (name) => o.weightDecay > 0 && name === 'delta',
    maxGradNorm: 1.0,
    session: o.session,
  });
  const feedsOf = (b: FeatureBatch) => ({
    h_mlm: floatTensor(b.hMlm, [b.targets.length, dM]),
    h_ar: floatTensor(b.hAr, [b.targets.length, dA]),
    targets: int64Tensor(b.targets, [b.targets.length]),
    weights: floatTensor(b.weights, [b.targets.length]),
  });

  // Fixed validation set: the same windows at each rate, masks from a fixed seed.
  const valWindows = textWindows(o.validation, o.validationWindows, o.length, stepRandom(o.seed ^ 0x51ed, 0), o.isSpecial);
  const valAr: Float32Array[] = [];
  const chunk = Math.min(o.batch, valWindows.length);
  for (let s = 0; s < valWindows.length; s += chunk) valAr.push(await features.arFeatures(valWindows.slice(s, s + chunk)));
  const validate = async (): Promise<{ loss: number; byRate: Record<string, number> }> => {
    const byRate: Record<string, number> = {};
    for (const rate of VALIDATION_RATES) {
      let total = 0;
      for (let s = 0, c = 0; s < valWindows.length; s += chunk, c++) {
        const w = valWindows.slice(s, s + chunk);
        const masks = sampleMasks(w, stepRandom(o.seed ^ 0x7e57, c + Math.round(rate * 1000)), 0, rate);
        const batch = features.gather(w, masks, valAr[c], await features.mlmFeatures(w, masks));
        total += (await trainer.evalLoss(feedsOf(batch))) * w.length;
      }
      byRate[String(rate)] = total / valWindows.length;
    }
    const values = Object.values(byRate);
    return { loss: values.reduce((a, b) => a + b, 0) / values.length, byRate };
  };

  const statePath = join(o.out, 'head-train-state.safetensors');
  // Everything that decides the batches and the schedule: a resumed run must use the same values.
  const settings = {
    mlm: manifest.mlm,
    ar: manifest.ar,
    steps: o.steps,
    batch: o.batch,
    length: o.length,
    maskSamples: o.maskSamples,
    spanProbability: o.spanProbability,
    lr: o.lr,
    warmup: o.warmup,
    weightDecay: o.weightDecay,
    headParams,
    keepBest: o.keepBest ?? null,
    threads: o.session?.threads ?? null,
    trainTokens: o.train.length,
    validationTokens: o.validation.length,
  };
  const history = { poe: {} as Record<string, number>, validation: [] as HeadValidation[], wallSeconds: 0, best: null as HeadValidation | null };
  if (o.resume && existsSync(statePath)) {
    const ckpt = loadCheckpoint(statePath);
    const progress = ckpt.progress as { seed: number; settings?: unknown; history: Partial<typeof history> };
    if (progress.seed !== o.seed || JSON.stringify(progress.settings) !== JSON.stringify(settings)) {
      throw new Error(`${statePath}: was written by a run with other settings (${JSON.stringify({ seed: progress.seed, ...(progress.settings as object) })}); resume with the same arguments`);
    }
    trainer.loadState(trainStateOf(ckpt));
    Object.assign(history, progress.history);
  }

  // The bundle: the last head, or with keepBest the best validated one (written when it is found).
  const writeHead = (state: ReturnType<typeof trainer.state>, finished: boolean): void => {
    const gain = (name: string): number => 1 + GAIN_SCALE * state.params.get(name)![0];
    const head = materializeHead(poeHead, gain('gain_mlm'), gain('gain_ar'), state.params.get('delta') ?? null, state.params.get('bias') ?? poeHead.bias);
    writeBundle(o.out, manifestOf(state.step, finished, { mlm: gain('gain_mlm'), ar: gain('gain_ar') }), head, o.headDtype ?? 'F32');
  };
  const manifestOf = (steps: number, finished: boolean, gains: { mlm: number; ar: number }): BundleManifest => {
    const last = history.validation[history.validation.length - 1];
    return {
      ...manifest,
      head: { ...manifest.head, init: steps === 0 ? 'product-of-experts' : 'trained' },
      training: {
        command: o.command,
        objective: `L_MARIA (teacher-forced, per-sequence mean over masked tokens), frozen backbones; AdamW on ${TRAINED[headParams]}, W3 parametrised as [g_M·W1/2, g_A·W2/2] + Δ`,
        headParams,
        gains,
        steps,
        ...(o.keepBest ? { selection: SELECTION[o.keepBest], runSteps: trainer.steps } : {}),
        finished,
        batch: o.batch,
        length: o.length,
        maskSamples: o.maskSamples,
        spanProbability: o.spanProbability,
        lr: o.lr,
        seed: o.seed,
        wallSeconds: Math.round(history.wallSeconds),
        validationAtInit: history.poe,
        validationFinal: o.keepBest ? history.best?.byRate : last?.byRate,
      },
    };
  };
  // Lower is better: the mean loss, or the loss change from the start on the rate that gained least.
  const selectionScore = (v: HeadValidation): number =>
    o.keepBest === 'worst-rate' ? Math.max(...Object.entries(v.byRate).map(([rate, loss]) => loss - history.poe[rate])) : v.loss;
  const keep = (v: HeadValidation): void => {
    if (!o.keepBest || (history.best && selectionScore(v) >= selectionScore(history.best))) return;
    history.best = v;
    writeHead(trainer.state(), false);
  };
  const save = (finished: boolean): void => {
    const state = trainer.state();
    saveCheckpoint(statePath, trainCheckpoint(state, trainer.paramShapes(), { seed: o.seed, settings, history }));
    if (!o.keepBest) writeHead(state, finished);
    else if (finished) {
      // The kept head is already on disk; only the manifest learns that the run is over.
      const kept = readManifest(o.out);
      writeFileAtomic(join(o.out, 'maria.json'), JSON.stringify({ ...kept, training: { ...kept.training, finished: true, runSteps: state.step } }, null, 2) + '\n');
    }
  };
  if (!(o.resume && existsSync(statePath))) {
    const start = await validate();
    history.poe = start.byRate;
    o.onValidate?.({ step: 0, ...start });
    keep({ step: 0, ...start });
  }

  const t0 = performance.now();
  const wallBefore = history.wallSeconds;
  let tokens = 0;
  let stopped = false;
  let cached = null as { group: number; windows: number[][]; hAr: Float32Array } | null;
  while (trainer.steps < o.steps) {
    const step = trainer.steps + 1;
    const rand = stepRandom(o.seed, step);
    // One AR pass per batch of windows, reused for `maskSamples` consecutive steps.
    const group = Math.floor((step - 1) / o.maskSamples);
    if (cached?.group !== group) {
      const w = textWindows(o.train, o.batch, o.length, stepRandom(o.seed ^ 0xa11ce, group), o.isSpecial);
      cached = { group, windows: w, hAr: await features.arFeatures(w) };
    }
    const { windows, hAr: hArBatch } = cached;
    const masks = sampleMasks(windows, rand, o.spanProbability);
    const batch = features.gather(windows, masks, hArBatch, await features.mlmFeatures(windows, masks));
    const r = await trainer.step(feedsOf(batch));
    tokens += batch.targets.length;
    const elapsed = (performance.now() - t0) / 1000;
    history.wallSeconds = wallBefore + elapsed;
    o.onStep?.({ step, steps: o.steps, loss: r.loss, lr: r.lr, elapsedSeconds: history.wallSeconds, tokensPerSecond: tokens / elapsed });
    if (step % o.validateEvery === 0 || step === o.steps) {
      const v = await validate();
      history.validation.push({ step, ...v });
      o.onValidate?.({ step, ...v });
      keep({ step, ...v });
    }
    if (o.shouldStop?.() || (o.maxMinutes !== undefined && elapsed > o.maxMinutes * 60)) stopped = true;
    if (step % o.checkpointEvery === 0 || step === o.steps || stopped) save(step === o.steps);
    if (stopped) break;
  }
  if (trainer.steps >= o.steps && !existsSync(join(o.out, 'maria.json'))) save(true);
  await trainer.release();
  await features.release();
  return { steps: trainer.steps, finished: trainer.steps >= o.steps, ...history };
}
