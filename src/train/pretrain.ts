// Pretraining a masked LM (masked-diffusion objective: per sequence a mask rate r ~ U(0,1), loss on
// the masked tokens) or a causal LM (next-token loss) from scratch, through the engine's training
// step. Checkpoints are atomic and carry the optimiser state; a resumed run is bit-identical to an
// uninterrupted one because each step's batch comes from a generator seeded by (seed, step).
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type ort from 'onnxruntime-node';
import { Graph, type Tensor } from '../engine/graph.js';
import * as F from '../engine/ops.js';
import * as nn from '../engine/nn.js';
import { warmupCosine } from '../engine/optim.js';
import { TrainStep } from '../engine/trainer.js';
import { floatTensor, int64Tensor } from '../engine/runtime.js';
import { loadCheckpoint, saveCheckpoint, trainCheckpoint, trainStateOf } from '../engine/checkpoint.js';
import { writeFileAtomic } from '../io/atomic.js';
import { writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { HfConfig } from '../models/config.js';
import type { BaseConfig, CausalFamily, Family, MaskedFamily } from '../models/family.js';
import { familyFor } from '../models/registry.js';
import { initParams, loadParams, paramSource, type ParamMap } from '../models/weights.js';
import { evenWindows, maskRows, randomWindows, stepRandom, type TokenStream } from './data.js';

export interface PretrainOptions {
  /** HF config.json contents of the model to train. */
  config: Record<string, unknown>;
  train: TokenStream;
  validation: TokenStream;
  /** Folder of the tokenizer files copied next to the weights. */
  tokenizerDir: string;
  out: string;
  steps: number;
  batch: number;
  /** Tokens per sequence (for the MLM including [BOS] … [EOS]). */
  seqLen: number;
  lr: number;
  warmup: number;
  minLrRatio: number;
  weightDecay: number;
  seed: number;
  validateEvery: number;
  validationBatches: number;
  checkpointEvery: number;
  resume: boolean;
  /** Stop (with a checkpoint) after this many minutes; the run can be resumed. */
  maxMinutes?: number;
  /** Store weights as F16 (compute stays F32). */
  saveDtype: 'F32' | 'F16';
  /** Start from the weights of this HF folder (same architecture) instead of random ones. */
  initFrom?: string;
  /**
   * Masked LM loss: 'masked-mean' (mean NLL over all masked tokens of the batch) or 'mdlm' (MDLM's
   * continuous-time ELBO with the linear schedule: per sequence (1/r)·Σ_masked NLL / its length,
   * with r clipped at MDLM_MIN_RATE for the weight). Validation always reports 'masked-mean'.
   */
  objective?: 'masked-mean' | 'mdlm';
  /**
   * Masked LM: the training mask rate is drawn from U(lo, hi) per window (default [0, 1], the
   * masked-diffusion prior). A narrower range spends the model on the rates a user will infill at
   * (e.g. [0.05, 0.4] for short gaps); with 'mdlm' the loss is then that range's share of the ELBO.
   */
  maskRateRange?: readonly [number, number];
  /** Special token ids; `isSpecial` tokens are never masked. */
  specials: { bos: number; eos: number; mask: number; pad: number; isSpecial: (id: number) => boolean };
  threads?: number;
  /** Called after every step (progress display). */
  onStep?: (info: StepInfo) => void;
  /** Called after each validation. */
  onValidate?: (info: { step: number; loss: number }) => void;
  /** Returns true when the run should stop early (e.g. on SIGINT). */
  shouldStop?: () => boolean;
}

export interface StepInfo {
  step: number;
  steps: number;
  loss: number;
  gradNorm: number;
  lr: number;
  tokensPerSecond: number;
  elapsedSeconds: number;
}

export interface PretrainResult {
  steps: number;
  finished: boolean;
  validation: Array<{ step: number; loss: number }>;
  trainLoss: Array<{ step: number; loss: number }>;
  wallSeconds: number;
  parameters: number;
}

interface Built {
  graph: Graph;
  /** The loss trained on. */
  loss: Tensor;
  /** The loss validation reports (the plain mean over targets). */
  meanLoss: Tensor;
  feeds: (ids: number[][], targets: number[][], weights?: number[][]) => Record<string, ort.Tensor>;
}

/** The smallest mask rate the MDLM weight 1/r uses (a 1/r from U(0,1) has unbounded variance). */
export const MDLM_MIN_RATE = 0.02;

/** The training graph: the family's forward on fresh inputs plus the loss. */
function buildGraph(family: Family, config: BaseConfig, params: ParamMap, objective: 'masked-mean' | 'mdlm'): Built {
  const g = new Graph();
  const ids = g.input('input_ids', ['B', 'T'], 'int64');
  const positions = g.input('position_ids', ['B', 'T'], 'int64');
  const targets = g.input('targets', ['B', 'T'], 'int64');
  const p = paramSource(g, params, 'pretrain');
  const flat = (rows: number[][]): number[] => rows.flat();
  const posRows = (rows: number[][]): number[] => rows.flatMap((r) => r.map((_, i) => i));
  if (family.kind === 'causal') {
    // No KV cache while training: keys are exactly the sequence's own tokens.
    const keyValid = g.input('key_valid', ['B', 'T'], 'int64');
    const keyPositions = g.input('key_positions', ['B', 'T'], 'int64');
    const out = (family as CausalFamily).forward(g, p, config, { ids, positions, keyValid, keyPositions, past: [] });
    const loss = nn.crossEntropy(out.logits, targets);
    return {
      graph: g,
      loss,
      meanLoss: loss,
      feeds: (rows, tgts) => {
        const B = rows.length;
        const T = rows[0].length;
        return {
          input_ids: int64Tensor(flat(rows), [B, T]),
          position_ids: int64Tensor(posRows(rows), [B, T]),
          targets: int64Tensor(flat(tgts), [B, T]),
          key_valid: int64Tensor(new Array(B * T).fill(1), [B, T]),
          key_positions: int64Tensor(posRows(rows), [B, T]),
        };
      },
    };
  }
  const attentionMask = g.input('attention_mask', ['B', 'T'], 'int64');
  const out = (family as MaskedFamily).forward(g, p, config, { ids, positions, attentionMask });
  const meanLoss = nn.crossEntropy(out.logits, targets);
  // MDLM: per-token weights 1/(B·r·L) on masked tokens (0 elsewhere), summed.
  const tokenWeights = objective === 'mdlm' ? g.input('token_weights', ['B', 'T']) : null;
  const loss = tokenWeights
    ? F.sum(F.mul(nn.tokenNll(out.logits, F.where(F.less(targets, g.int64([0])), g.int64([0]), targets)), tokenWeights), [0, 1])
    : meanLoss;
  return {
    graph: g,
    loss,
    meanLoss,
    feeds: (rows, tgts, weights) => {
      const B = rows.length;
      const T = rows[0].length;
      return {
        ...(tokenWeights ? { token_weights: floatTensor(weights ? weights.flat() : new Array(B * T).fill(0), [B, T]) } : {}),
        input_ids: int64Tensor(flat(rows), [B, T]),
        position_ids: int64Tensor(posRows(rows), [B, T]),
        attention_mask: int64Tensor(new Array(B * T).fill(1), [B, T]),
        targets: int64Tensor(flat(tgts), [B, T]),
      };
    },
  };
}

/** Saves an HF model folder: config.json, model.safetensors, tokenizer files. */
export function exportModelFolder(dir: string, config: Record<string, unknown>, params: Map<string, Float32Array>, shapes: Map<string, number[]>, tokenizerDir: string, dtype: 'F32' | 'F16'): void {
  mkdirSync(dir, { recursive: true });
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, data] of params) tensors[name] = { dtype, shape: shapes.get(name)!, data };
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  writeFileAtomic(join(dir, 'config.json'), JSON.stringify({ ...config, dtype: dtype === 'F16' ? 'float16' : 'float32' }, null, 2) + '\n');
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
    if (existsSync(join(tokenizerDir, f))) copyFileSync(join(tokenizerDir, f), join(dir, f));
  }
}

/** Trains (or resumes) a model and writes it as an HF folder to `out`. */
export async function pretrain(o: PretrainOptions): Promise<PretrainResult> {
  const hf = new HfConfig(o.config, 'config');
  const family = familyFor(hf);
  const config = family.parseConfig(hf);
  const isMlm = family.kind === 'masked';
  const specs = family.params(config as never);
  const params = o.initFrom ? loadParams(o.initFrom, specs) : initParams(specs, o.seed);
  const objective = o.objective ?? 'masked-mean';
  if (objective === 'mdlm' && !isMlm) throw new Error('--objective mdlm applies to masked LMs only');
  if (o.maskRateRange) {
    const [lo, hi] = o.maskRateRange;
    if (!isMlm) throw new Error('a mask-rate range applies to masked LMs only');
    if (!(lo >= 0 && hi <= 1 && lo < hi)) throw new RangeError(`mask-rate range must satisfy 0 ≤ lo < hi ≤ 1, got ${lo}, ${hi}`);
  }
  const built = buildGraph(family, config, params, objective);
  const trainer = await TrainStep.create(built.graph, built.loss, {
    schedule: warmupCosine(o.lr, o.warmup, o.steps, o.lr * o.minLrRatio),
    weightDecay: o.weightDecay,
    maxGradNorm: 1.0,
    beta2: 0.95,
    session: { threads: o.threads },
    evalOutputs: { loss: built.meanLoss },
  });
  mkdirSync(o.out, { recursive: true });
  const statePath = join(o.out, 'train-state.safetensors');
  // Everything that decides the batches and the schedule: a resumed run must use the same values
  // (and the same thread count, as ORT's reductions may split differently).
  const settings = {
    steps: o.steps,
    batch: o.batch,
    seqLen: o.seqLen,
    lr: o.lr,
    warmup: o.warmup,
    minLrRatio: o.minLrRatio,
    weightDecay: o.weightDecay,
    threads: o.threads ?? null,
    initFrom: o.initFrom ?? null,
    objective,
    // Recorded only when set, so runs from before the option resume as before.
    ...(o.maskRateRange ? { maskRateRange: o.maskRateRange } : {}),
    trainTokens: o.train.length,
    validationTokens: o.validation.length,
  };
  const history: { validation: Array<{ step: number; loss: number }>; trainLoss: Array<{ step: number; loss: number }>; wallSeconds: number } = {
    validation: [],
    trainLoss: [],
    wallSeconds: 0,
  };
  if (o.resume && existsSync(statePath)) {
    const ckpt = loadCheckpoint(statePath);
    const progress = ckpt.progress as { seed: number; config: unknown; settings?: unknown; history: typeof history };
    if (progress.seed !== o.seed || JSON.stringify(progress.config) !== JSON.stringify(o.config) || JSON.stringify(progress.settings) !== JSON.stringify(settings)) {
      throw new Error(
        `${statePath}: was written by a run with other settings (${JSON.stringify({ seed: progress.seed, ...(progress.settings as object) })}); resume with the same arguments or choose another --out`,
      );
    }
    trainer.loadState(trainStateOf(ckpt));
    Object.assign(history, progress.history);
  }

  const isSpecial = o.specials.isSpecial;
  const makeBatch = (rand: () => number, windows: number[][], fixedRate?: number) => {
    if (!isMlm) return { ids: windows.map((w) => w.slice(0, -1)), targets: windows.map((w) => w.slice(1)), weights: undefined, tokens: windows.length * (windows[0].length - 1) };
    const wrapped = windows.map((w) => [o.specials.bos, ...w, o.specials.eos]);
    const m = maskRows(wrapped, o.specials.mask, isSpecial, rand, fixedRate, o.maskRateRange);
    const weights = m.targets.map((t, b) => {
      const length = wrapped[b].filter((id) => !isSpecial(id)).length;
      const w = 1 / (wrapped.length * Math.max(m.rates[b], MDLM_MIN_RATE) * Math.max(1, length));
      return t.map((x) => (x >= 0 ? w : 0));
    });
    return { ids: m.ids, targets: m.targets, weights, tokens: wrapped.length * wrapped[0].length };
  };
  // AR windows hold seqLen+1 tokens (inputs and shifted targets); MLM windows leave room for BOS/EOS.
  const windowLen = isMlm ? o.seqLen - 2 : o.seqLen + 1;
  const valWindows = evenWindows(o.validation, o.validationBatches * o.batch, windowLen);
  // Validation masks are fixed: rates cycle through 0.15 … 0.9 so the figure is comparable across runs.
  const valRates = [0.15, 0.3, 0.5, 0.7, 0.9];
  const validate = async (): Promise<number> => {
    let total = 0;
    for (let b = 0; b < o.validationBatches; b++) {
      const rand = stepRandom(o.seed ^ 0x7a11d, b);
      const batch = makeBatch(rand, valWindows.slice(b * o.batch, (b + 1) * o.batch), isMlm ? valRates[b % valRates.length] : undefined);
      total += await trainer.evalLoss(built.feeds(batch.ids, batch.targets, batch.weights));
    }
    return total / o.validationBatches;
  };
  const save = (): void => {
    const state = trainer.state();
    saveCheckpoint(statePath, trainCheckpoint(state, trainer.paramShapes(), { seed: o.seed, config: o.config, settings, history }));
    exportModelFolder(o.out, o.config, state.params, trainer.paramShapes(), o.tokenizerDir, o.saveDtype);
  };

  const t0 = performance.now();
  const wallBefore = history.wallSeconds;
  let tokens = 0;
  let stopped = false;
  while (trainer.steps < o.steps) {
    const step = trainer.steps + 1;
    const rand = stepRandom(o.seed, step);
    const batch = makeBatch(rand, randomWindows(o.train, o.batch, windowLen, rand));
    const r = await trainer.step(built.feeds(batch.ids, batch.targets, batch.weights));
    if (!Number.isFinite(r.loss)) throw new Error(`step ${step}: the loss is ${r.loss}; lower --lr (now ${o.lr}) and resume from the last checkpoint`);
    tokens += batch.tokens;
    const elapsed = (performance.now() - t0) / 1000;
    history.wallSeconds = wallBefore + elapsed;
    if (step % 10 === 0 || step === 1) history.trainLoss.push({ step, loss: r.loss });
    o.onStep?.({ step, steps: o.steps, loss: r.loss, gradNorm: r.gradNorm, lr: r.lr, tokensPerSecond: tokens / elapsed, elapsedSeconds: history.wallSeconds });
    if (step % o.validateEvery === 0 || step === o.steps) {
      const loss = await validate();
      history.validation.push({ step, loss });
      o.onValidate?.({ step, loss });
    }
    const timeUp = o.maxMinutes !== undefined && elapsed > o.maxMinutes * 60;
    if (o.shouldStop?.() || timeUp) stopped = true;
    if (step % o.checkpointEvery === 0 || step === o.steps || stopped) save();
    if (stopped) break;
  }
  if (trainer.steps >= o.steps && !existsSync(join(o.out, 'model.safetensors'))) save();
  const parameters = specs.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
  await trainer.release();
  return { steps: trainer.steps, finished: trainer.steps >= o.steps, ...history, parameters };
}
