// Neural-network building blocks composed from the primitive ops. Their gradients come from the
// primitives' vjps; ORT's optimiser re-fuses the patterns (RMSNorm, GELU, FusedMatMul) at load.
import { Graph, Tensor } from './graph.js';
import * as F from './ops.js';

/** x @ Wᵀ + b with W in Hugging Face's [out, in] layout. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  const y = F.matmul(x, F.transposeLast(weight));
  return bias ? F.add(y, bias) : y;
}

/**
 * Several linear maps of the same input as one product, [..., Σ out_i]: the weights ([out_i, in],
 * HF layout) are concatenated in the graph — ORT folds that into one initializer at load — so a
 * decode step streams one matrix in one kernel call instead of several; a training graph
 * concatenates its parameters each step and gets their gradients back through the concat.
 */
export function fusedLinear(x: Tensor, parts: Array<{ weight: Tensor; bias?: Tensor | null }>): Tensor {
  if (parts.length === 1) return linear(x, parts[0].weight, parts[0].bias);
  const g = x.graph;
  const sizes = parts.map((p) => p.weight.dim(0) as number);
  const bias = parts.some((p) => p.bias) ? F.concat(parts.map((p, i) => p.bias ?? g.constant(new Float32Array(sizes[i]), [sizes[i]])), 0) : null;
  return linear(x, F.concat(parts.map((p) => p.weight), 0), bias);
}

/** fusedLinear split back into the maps' outputs. */
export function linears(x: Tensor, parts: Array<{ weight: Tensor; bias?: Tensor | null }>): Tensor[] {
  if (parts.length === 1) return [fusedLinear(x, parts)];
  return F.split(fusedLinear(x, parts), parts.map((p) => p.weight.dim(0) as number), -1);
}

/** RMS normalisation over the last axis, written in the exact pattern ORT fuses. */
export function rmsNorm(x: Tensor, weight: Tensor | null, eps: number): Tensor {
  const g = x.graph;
  const y = F.div(x, F.sqrt(F.add(F.mean(F.pow(x, 2), [-1], true), g.scalar(eps))));
  return weight ? F.mul(y, weight) : y;
}

/** Layer normalisation; a missing weight or bias means ones or zeros (OLMo-1 has neither). */
export function layerNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps: number): Tensor {
  const g = x.graph;
  const d = x.dim(-1);
  if (typeof d !== 'number') throw new Error(`layerNorm: the normalised axis must have a fixed size, got ${x}`);
  const w = weight ?? g.constant(new Float32Array(d).fill(1), [d]);
  const b = bias ?? g.constant(new Float32Array(d), [d]);
  return F.layerNorm(x, w, b, eps);
}

/** GELU with the exact erf form (BERT, ModernBERT "gelu"). */
export function gelu(x: Tensor): Tensor {
  const g = x.graph;
  return F.mul(F.mul(x, g.scalar(0.5)), F.add(g.scalar(1), F.erf(F.mul(x, g.scalar(Math.SQRT1_2)))));
}

/** GELU with the tanh approximation (GPT-2 "gelu_new", "gelu_pytorch_tanh"). */
export function geluTanh(x: Tensor): Tensor {
  const g = x.graph;
  const inner = F.mul(g.scalar(Math.sqrt(2 / Math.PI)), F.add(x, F.mul(g.scalar(0.044715), F.pow(x, 3))));
  return F.mul(F.mul(x, g.scalar(0.5)), F.add(g.scalar(1), F.tanh(inner)));
}

/** SiLU / swish: x · sigmoid(x). */
export function silu(x: Tensor): Tensor {
  return F.mul(x, F.sigmoid(x));
}

/** HF's activations (transformers' ACT2FN names) that maria implements, by name. */
const ACTIVATIONS: Record<string, (x: Tensor) => Tensor> = {
  gelu,
  gelu_python: gelu,
  gelu_new: geluTanh,
  gelu_pytorch_tanh: geluTanh,
  gelu_fast: geluTanh,
  gelu_accurate: geluTanh,
  quick_gelu: (x) => F.mul(x, F.sigmoid(F.mul(x, x.graph.scalar(1.702)))),
  silu,
  swish: silu,
  relu: F.relu,
  tanh: F.tanh,
  sigmoid: F.sigmoid,
  linear: (x) => x,
};

/** Whether {@link activation} knows `name`. */
export function isActivation(name: string): boolean {
  return Object.hasOwn(ACTIVATIONS, name);
}

/** The names {@link activation} knows. */
export function supportedActivations(): string[] {
  return Object.keys(ACTIVATIONS);
}

/** The activation named by an HF config's `hidden_act` / `activation_function` / `hidden_activation`. */
export function activation(name: string): (x: Tensor) => Tensor {
  if (!isActivation(name)) throw new Error(`unsupported activation "${name}" (supported: ${supportedActivations().join(', ')})`);
  return ACTIVATIONS[name];
}

/** HF's rotary inverse frequencies θ^(-2i/dim), i < dim/2, rounded as HF computes them in float32. */
export function rotaryInvFreq(dim: number, theta: number): Float32Array {
  return Float32Array.from({ length: dim / 2 }, (_, i) => 1 / Math.fround(theta ** Math.fround((2 * i) / dim)));
}

/**
 * cos/sin tables for rotary embeddings at the given positions ([B, T] int64), shaped
 * [B, 1, T, dim] to broadcast over heads. Frequencies follow HF: θ^(-2i/dim), halves duplicated.
 * For applyRotary, whose plain ONNX ops every runtime loads (the exported MLM graphs use it).
 */
export function rotaryTables(positions: Tensor, dim: number, theta: number): { cos: Tensor; sin: Tensor } {
  const g = positions.graph;
  const invFreq = rotaryInvFreq(dim, theta);
  const freqs = F.mul(F.reshape(F.cast(positions, 'float32'), [positions.dim(0), 1, positions.dim(1), 1]), g.constant(invFreq, [dim / 2]));
  const emb = F.concat([freqs, freqs], -1);
  return { cos: F.cos(emb), sin: F.sin(emb) };
}

/** Applies rotary embeddings (rotate-half convention) to x [B, H, T, dim]. */
export function applyRotary(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const d = x.dim(-1) as number;
  const x1 = F.slice(x, -1, 0, d / 2);
  const x2 = F.slice(x, -1, d / 2, d);
  const rotated = F.concat([F.neg(x2), x1], -1);
  return F.add(F.mul(x, cos), F.mul(rotated, sin));
}

/**
 * The rotation angles of a graph's tokens for F.rotary: cos/sin [B·T, d/2] of each token's
 * position times the inverse frequencies, and `rows` [B, T] pointing token (b, t) at row b·T + t.
 * Computed per call from the positions rather than tabulated up to the model's context, which
 * for a 128k-context model would take 32 MB per table.
 */
export interface RotaryCache {
  cos: Tensor;
  sin: Tensor;
  rows: Tensor;
}

export function rotaryCache(positions: Tensor, invFreq: Float32Array): RotaryCache {
  const g = positions.graph;
  const flat = F.reshape(F.cast(positions, 'float32'), [-1, 1]);
  const angles = F.mul(flat, g.constant(invFreq, [invFreq.length]));
  const rows = F.reshape(F.arange(g, flat.dim(0)), [positions.dim(0), positions.dim(1)]);
  return { cos: F.cos(angles), sin: F.sin(angles), rows };
}

/**
 * The cache multiplied by `scale`: rotating the queries with it also applies attention's 1/√d,
 * once per call for all layers, and q·Kᵀ stays a plain product (a scaled one becomes ORT's
 * FusedMatMul, which lacks the matrix-vector kernel a decode step needs).
 */
export function scaledRotaryCache(c: RotaryCache, scale: number): RotaryCache {
  const s = c.cos.graph.scalar(scale);
  return { cos: F.mul(c.cos, s), sin: F.mul(c.sin, s), rows: c.rows };
}

/** Rotary embedding of x [B, T, H·d] (before splitHeads) or [B, H, T, d] with a RotaryCache. */
export function rotate(x: Tensor, c: RotaryCache): Tensor {
  return F.rotary(x, c.rows, c.cos, c.sin);
}

export interface MaskSpec {
  /** Positions of the queries, [B, T] int64. */
  queryPositions: Tensor;
  /** Positions of the keys, [B, S] int64. */
  keyPositions: Tensor;
  /** Which keys exist (1) or are padding (0), [B, S] int64 or bool. */
  keyValid?: Tensor | null;
  /** Keys may not lie after the query. */
  causal?: boolean;
  /** Sliding window: keys at most `left` positions before and `right` after the query. */
  window?: { left: number; right: number } | null;
}

/** A boolean attention mask [B, 1, T, S]: true where the query may attend to the key. */
export function attentionMask(spec: MaskSpec): Tensor {
  const { queryPositions: qp, keyPositions: kp } = spec;
  const g = qp.graph;
  const q = F.reshape(qp, [qp.dim(0), 1, qp.dim(1), 1]);
  const k = F.reshape(kp, [kp.dim(0), 1, 1, kp.dim(1)]);
  let mask: Tensor | null = null;
  const both = (m: Tensor): void => {
    mask = mask ? F.and(mask, m) : m;
  };
  if (spec.causal) both(F.not(F.greater(k, q)));
  if (spec.window) {
    const delta = F.sub(q, k); // how far the key lies before the query
    both(F.not(F.greater(delta, g.int64([spec.window.left]))));
    both(F.not(F.less(delta, g.int64([-spec.window.right]))));
  }
  if (spec.keyValid) {
    const valid = spec.keyValid.dtype === 'bool' ? spec.keyValid : F.greater(spec.keyValid, g.int64([0]));
    both(F.reshape(valid, [kp.dim(0), 1, 1, kp.dim(1)]));
  }
  if (!mask) mask = F.equal(q, q);
  return mask;
}

/**
 * A block of keys stored transposed, [B, Hkv, d, S]: the KV cache keeps its keys this way because
 * a decode step's q·Kᵀ is then a plain product, which ORT runs as a matrix-vector kernel, while a
 * product with a transposed operand first repacks (copies) the whole cache block.
 */
export interface TransposedKeys {
  transposed: Tensor;
}

export type KeyBlock = Tensor | TransposedKeys;

/**
 * Scaled dot-product attention. q: [B, H, T, d]; k: [B, Hkv, S, d] (or TransposedKeys), v:
 * [B, Hkv, S, d] with H a multiple of Hkv (grouped-query attention: each KV head serves H/Hkv
 * query heads through broadcasting, without copying K or V); mask: bool [B, 1, T, ΣS]. Keys and
 * values may come in several blocks (the KV cache and the new tokens): each block gets its own
 * score product and the softmax runs over all of them, so the cache is never concatenated
 * (copied). Returns [B, H, T, d].
 */
export function attention(q: Tensor, k: KeyBlock | KeyBlock[], v: Tensor | Tensor[], mask: Tensor, scale: number): Tensor {
  const g = q.graph;
  const kTs = (Array.isArray(k) ? k : [k]).map((kb) => ('transposed' in kb ? kb.transposed : F.transposeLast(kb)));
  const vs = Array.isArray(v) ? v : [v];
  const [B, H, T, d] = q.shape;
  const Hkv = kTs[0].dim(1) as number;
  const group = (H as number) / Hkv;
  if (!Number.isInteger(group)) throw new Error(`attention: ${H} query heads do not divide into ${Hkv} KV heads`);
  // GQA: [B, Hkv, group, T, d] queries against [B, Hkv, 1, ·, ·] keys and values broadcast over the group.
  const grouped = (x: Tensor): Tensor => (group === 1 ? x : F.reshape(x, [x.dim(0), Hkv, 1, x.dim(2), x.dim(3)]));
  const qg = group === 1 ? q : F.reshape(q, [B, Hkv, group, T, d]);
  // scale 1: the caller folded it into q (a scaled product becomes ORT's FusedMatMul, which lacks
  // the matrix-vector kernel a decode step's q·Kᵀ needs).
  const scores = kTs.map((kT) => (scale === 1 ? F.matmul(qg, grouped(kT)) : F.mul(F.matmul(qg, grouped(kT)), g.scalar(scale))));
  const all = F.concat(scores, -1);
  const m = group === 1 ? mask : F.reshape(mask, [mask.dim(0), 1, 1, T, all.dim(-1)]);
  // An additive bias (0 or -1e30, computed once on the small mask) rather than where(): the
  // broadcast add is cheaper, and its gradient passes through to the scores without any op. A
  // masked score becomes exactly -1e30 in float32 and gets weight 0 (uniform weights over a row
  // with no allowed key).
  const probs = F.softmax(F.add(all, F.where(m, g.scalar(0), g.scalar(-1e30))));
  const pieces = scores.length === 1 ? [probs] : F.splitLike(probs, scores, -1);
  let out = F.matmul(pieces[0], grouped(vs[0]));
  for (let i = 1; i < pieces.length; i++) out = F.add(out, F.matmul(pieces[i], grouped(vs[i])));
  return group === 1 ? out : F.reshape(out, [B, H, T, d]);
}

/** [B, T, H·d] → [B, H, T, d]. */
export function splitHeads(x: Tensor, heads: number, headDim: number): Tensor {
  return F.transpose(F.reshape(x, [x.dim(0), x.dim(1), heads, headDim]), [0, 2, 1, 3]);
}

/**
 * [B, T, (H₁ + H₂ + …)·d] → [B, Hᵢ, T, d] for each group: the heads of a fused q/k/v projection
 * with one Reshape, one Transpose and one Split, instead of a split and then a Reshape and a
 * Transpose per group.
 */
export function splitHeadGroups(x: Tensor, groups: number[], headDim: number): Tensor[] {
  const all = splitHeads(x, groups.reduce((a, b) => a + b, 0), headDim);
  return groups.length === 1 ? [all] : F.split(all, groups, 1);
}

/** [B, H, T, d] → [B, T, H·d]. */
export function mergeHeads(x: Tensor): Tensor {
  const [B, H, T, d] = x.shape;
  return F.reshape(F.transpose(x, [0, 2, 1, 3]), [B, T, (H as number) * (d as number)]);
}

/** Negative log-likelihood of each target ([...] int64) under logits [..., V]. */
export function tokenNll(logits: Tensor, targets: Tensor): Tensor {
  return F.neg(F.logSoftmaxPick(logits, targets));
}

/**
 * Mean cross-entropy over targets ≥ 0; negative targets (e.g. -100) are ignored, as in PyTorch.
 * Returns a scalar (0 when no target counts).
 */
export function crossEntropy(logits: Tensor, targets: Tensor): Tensor {
  const g = logits.graph;
  const valid = F.not(F.less(targets, g.int64([0])));
  const safeTargets = F.where(valid, targets, g.int64([0]));
  const validF = F.cast(valid, 'float32');
  const nll = F.mul(tokenNll(logits, safeTargets), validF);
  const axes = targets.shape.map((_, i) => i);
  return F.div(F.sum(nll, axes), F.clip(F.sum(validF, axes), 1, 3.4e38));
}

/** Convenience for graphs: a [B, T] int64 input pair of ids and positions. */
export function tokenInputs(g: Graph): { ids: Tensor; positions: Tensor } {
  return { ids: g.input('input_ids', ['B', 'T'], 'int64'), positions: g.input('position_ids', ['B', 'T'], 'int64') };
}
