// AdamW written in the graph. `adamw()` extends a model graph (forward + loss) with its backward
// pass (autodiff), global-norm gradient clipping and the AdamW update, so that one compiled ONNX
// model is one whole training step. The learning rate and the step count are scalar inputs, so a
// schedule lives in JS (see the schedules below) and never forces a recompilation.
//
// Semantics follow torch.optim.AdamW (non-amsgrad) after torch.nn.utils.clip_grad_norm_:
//   norm  = sqrt(Σ_p Σ g²);  c = min(1, maxNorm / (norm + 1e-6));  g ← c·g
//   m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g²
//   p ← p·(1 - lr·wd)                                  (decoupled decay, masked per parameter)
//   p ← p - (lr / (1-β1ᵗ)) · m / (sqrt(v) / sqrt(1-β2ᵗ) + ε)
// The clipping factor is folded into the moment coefficients (c·(1-β1) and c²·(1-β2)), which
// saves a pass over every gradient.
import { Graph, Tensor, type OpDef } from './graph.js';
import { grad } from './autodiff.js';
import * as F from './ops.js';

export interface AdamWOptions {
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay coefficient (multiplied by the learning rate); default 0.01. */
  weightDecay?: number;
  /** Clip the global gradient norm to this; null or Infinity = no clipping. Default 1.0. */
  maxGradNorm?: number | null;
  /** Which parameters decay; default {@link defaultDecayMask}. */
  decay?: (name: string, param: Tensor) => boolean;
}

/**
 * The default weight-decay mask: matrices decay; biases, norm weights and embeddings do not.
 * Decided by name, so that it also works for 2-D embedding tables.
 */
export function defaultDecayMask(name: string, param?: Tensor): boolean {
  if (/(^|[._])(bias|b)$/i.test(name)) return false;
  if (/(norm|^ln|[._]ln|layernorm|rmsnorm)/i.test(name)) return false;
  if (/(^|[._])(emb|embed\w*|embedding\w*|wte|wpe|tok_emb|pos_emb|shared)([._]|$)/i.test(name)) return false;
  if (param && param.rank < 2) return false;
  return true;
}

/** Input and output names of a training-step model (params keep their own names as inputs). */
export const TRAIN_NAMES = {
  lr: 'optim.lr',
  step: 'optim.step',
  loss: 'loss',
  gradNorm: 'grad_norm',
  m: (param: string): string => `optim.m.${param}`,
  v: (param: string): string => `optim.v.${param}`,
  newParam: (param: string): string => `updated.${param}`,
  newM: (param: string): string => `updated.optim.m.${param}`,
  newV: (param: string): string => `updated.optim.v.${param}`,
} as const;

/** What {@link adamw} added to the graph. */
export interface TrainGraph {
  /** Outputs to compile (with paramsAsInputs: true): loss, grad_norm and the updated state. */
  outputs: Record<string, Tensor>;
  /** The trained parameters, in order. */
  params: Tensor[];
  /** Parameter names that get weight decay. */
  decayed: Set<string>;
  /** Scalar inputs: learning rate and the 1-based step number t (float32). */
  lr: Tensor;
  step: Tensor;
  /** First and second moment inputs, one per parameter (same order). */
  m: Tensor[];
  v: Tensor[];
  options: Required<Omit<AdamWOptions, 'decay' | 'maxGradNorm'>> & { maxGradNorm: number | null };
}

/**
 * 1 - βᵗ for a run-time t, computed in float64 inside the model: in float32, 1 - 0.999ᵗ near t = 1
 * would lose four digits to cancellation. β and ln β enter as float32 hi + lo pairs so that the
 * float64 constants are exact to ~48 bits.
 */
const BIAS_CORRECTION: OpDef<{ beta: number }> = {
  name: 'adamBiasCorrection',
  infer: ([t]) => {
    if (t.dtype !== 'float32' || t.rank !== 0) throw new Error(`adamBiasCorrection: expects a float32 scalar step, got ${t}`);
    return [{ shape: [], dtype: 'float32' }];
  },
  emit: (e, [t], [y], { beta }) => {
    const F64 = 11;
    const F32 = 1;
    const f64 = (x: number): string => {
      const hi = Math.fround(x);
      const lo = Math.fround(x - hi);
      const a = e.fresh('hi');
      const b = e.fresh('lo');
      const s = e.fresh('c64');
      e.node('Cast', [e.float(hi)], [a], { to: F64 });
      e.node('Cast', [e.float(lo)], [b], { to: F64 });
      e.node('Add', [a, b], [s]);
      return s;
    };
    const t64 = e.fresh('t64');
    const x = e.fresh('x');
    const p = e.fresh('pow');
    const one = e.fresh('one');
    const r = e.fresh('bc64');
    e.node('Cast', [t], [t64], { to: F64 });
    e.node('Mul', [t64, f64(Math.log(beta))], [x]);
    e.node('Exp', [x], [p]);
    e.node('Cast', [e.float(1)], [one], { to: F64 });
    e.node('Sub', [one, p], [r]);
    e.node('Cast', [r], [y], { to: F32 });
  },
};

function biasCorrection(t: Tensor, beta: number): Tensor {
  return t.graph.apply(BIAS_CORRECTION, [t], { beta })[0];
}

/**
 * Extends `graph` with the backward pass and an AdamW update of `params` (default: all of the
 * graph's parameters) minimising the scalar `loss`. Compile `outputs` with `paramsAsInputs: true`.
 *
 * Compile any model that should not take the optimiser's inputs (an evaluation model) before
 * calling this: every input declared on a graph becomes an input of every model compiled from it.
 */
export function adamw(graph: Graph, loss: Tensor, params: Tensor[] = graph.params(), options: AdamWOptions = {}): TrainGraph {
  if (loss.graph !== graph) throw new Error('adamw: the loss belongs to another graph');
  if (loss.rank !== 0) throw new Error(`adamw: the loss must be a scalar, got ${loss}`);
  for (const p of params) {
    if (p.leaf?.kind !== 'param') throw new Error(`adamw: ${p} is not a parameter`);
  }
  const opts = {
    beta1: options.beta1 ?? 0.9,
    beta2: options.beta2 ?? 0.999,
    eps: options.eps ?? 1e-8,
    weightDecay: options.weightDecay ?? 0.01,
    maxGradNorm: options.maxGradNorm === undefined ? 1.0 : options.maxGradNorm,
  };
  const decayFn = options.decay ?? defaultDecayMask;
  const { beta1, beta2, eps, weightDecay } = opts;
  const clipping = opts.maxGradNorm !== null && Number.isFinite(opts.maxGradNorm);

  const grads = grad(loss, params);

  const lr = graph.input(TRAIN_NAMES.lr, [], 'float32');
  const step = graph.input(TRAIN_NAMES.step, [], 'float32');
  const ms = params.map((p) => graph.input(TRAIN_NAMES.m(p.leaf!.name), p.shape, 'float32'));
  const vs = params.map((p) => graph.input(TRAIN_NAMES.v(p.leaf!.name), p.shape, 'float32'));

  // Global norm of the gradients (before clipping).
  const squares = grads.map((gr) => F.mul(gr, gr));
  const partial = squares.map((sq) => (sq.rank === 0 ? sq : F.sum(sq, sq.shape.map((_, i) => i))));
  const total = partial.reduce((a, b) => F.add(a, b));
  const norm = F.sqrt(total);

  // Scalars shared by every parameter.
  const s = (x: number): Tensor => graph.scalar(x);
  let c1 = s(1 - beta1);
  let c2 = s(1 - beta2);
  if (clipping) {
    const coef = F.clip(F.div(s(opts.maxGradNorm!), F.add(norm, s(1e-6))), 0, 1);
    c1 = F.mul(coef, c1);
    c2 = F.mul(F.mul(coef, coef), c2);
  }
  const stepSize = F.div(lr, biasCorrection(step, beta1));
  const invSqrtBc2 = F.reciprocal(F.sqrt(biasCorrection(step, beta2)));
  const decayFactor = F.sub(s(1), F.mul(lr, s(weightDecay)));

  const outputs: Record<string, Tensor> = { [TRAIN_NAMES.loss]: loss, [TRAIN_NAMES.gradNorm]: norm };
  const decayed = new Set<string>();
  params.forEach((p, i) => {
    const name = p.leaf!.name;
    const g = grads[i];
    const m = F.add(F.mul(ms[i], s(beta1)), F.mul(g, c1));
    const v = F.add(F.mul(vs[i], s(beta2)), F.mul(squares[i], c2));
    const denom = F.add(F.mul(F.sqrt(v), invSqrtBc2), s(eps));
    const doDecay = weightDecay !== 0 && decayFn(name, p);
    if (doDecay) decayed.add(name);
    const base = doDecay ? F.mul(p, decayFactor) : p;
    const updated = F.sub(base, F.mul(F.div(m, denom), stepSize));
    outputs[TRAIN_NAMES.newParam(name)] = updated;
    outputs[TRAIN_NAMES.newM(name)] = m;
    outputs[TRAIN_NAMES.newV(name)] = v;
  });
  return { outputs, params, decayed, lr, step, m: ms, v: vs, options: opts };
}

// ---------------------------------------------------------------------------------------------
// Learning-rate schedules (JS side: the step graph takes the rate as an input)

/** Learning rate for the 1-based step t. */
export type LrSchedule = (step: number) => number;

/** The same rate at every step. */
export function constantLr(lr: number): LrSchedule {
  return () => lr;
}

/**
 * Linear warmup from ~0 to `peak` over `warmup` steps, then cosine decay to `floor` at
 * `total` steps (held at `floor` after that).
 */
export function warmupCosine(peak: number, warmup: number, total: number, floor = 0): LrSchedule {
  return (t) => {
    if (warmup > 0 && t <= warmup) return (peak * t) / warmup;
    if (t >= total) return floor;
    const progress = (t - warmup) / Math.max(1, total - warmup);
    return floor + (peak - floor) * 0.5 * (1 + Math.cos(Math.PI * progress));
  };
}

/** Linear warmup to `peak` over `warmup` steps, then linear decay to `floor` at `total` steps. */
export function warmupLinear(peak: number, warmup: number, total: number, floor = 0): LrSchedule {
  return (t) => {
    if (warmup > 0 && t <= warmup) return (peak * t) / warmup;
    if (t >= total) return floor;
    const progress = (t - warmup) / Math.max(1, total - warmup);
    return peak + (floor - peak) * progress;
  };
}
