// The Llama family: Llama (grouped-query attention, RMSNorm, SwiGLU, rotary), and the members that
// differ only in details — Qwen2 (q/k/v biases, optional sliding window), OLMo-1 (parameter-free
// LayerNorm, clip_qkv) and OLMo-2 (norms after each sub-block, q/k RMSNorm over whole projections).
import type { Graph, Tensor } from '../engine/graph.js';
import * as F from '../engine/ops.js';
import * as nn from '../engine/nn.js';
import { HfConfig, ModelFolderError } from './config.js';
import type { BaseConfig, CausalFamily, ParamSource, ParamSpec } from './family.js';

type Variant = 'llama' | 'qwen2' | 'olmo' | 'olmo2';

export interface LlamaConfig extends BaseConfig {
  variant: Variant;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  act: string;
  normEps: number;
  ropeTheta: number;
  qkvBias: boolean;
  outputBias: boolean;
  mlpBias: boolean;
  clipQkv: number | null;
  /** Non-default RoPE frequency scaling (`rope_scaling` / transformers 5 `rope_parameters`), or null. */
  ropeScaling: RopeScaling | null;
  tieEmbeddings: boolean;
  /** Per layer: sliding-window size, or null for full attention. */
  windows: Array<number | null>;
  initStd: number;
}

/**
 * RoPE scalings that only rescale the inverse frequencies (attention factor 1), as in
 * transformers' modeling_rope_utils: "linear" divides them all by `factor`; "llama3" (Llama 3.1+)
 * divides the low frequencies by `factor` and interpolates smoothly between the two bands.
 */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

function parseRopeScaling(c: HfConfig): RopeScaling | null {
  // transformers 4 writes `rope_scaling` (null for plain RoPE); transformers 5 folds it into `rope_parameters`.
  const key = c.raw.rope_scaling !== undefined && c.raw.rope_scaling !== null ? 'rope_scaling' : 'rope_parameters';
  const v = c.raw[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw new ModelFolderError(`${c.file}: "${key}" must be an object or null, got ${JSON.stringify(v)}`);
  const type = (v as Record<string, unknown>).rope_type ?? (v as Record<string, unknown>).type ?? 'default';
  const factor = (): number => {
    const f = c.num(`${key}.factor`);
    if (!(f > 0)) throw new ModelFolderError(`${c.file}: "${key}.factor" must be positive, got ${f}`);
    return f;
  };
  switch (type) {
    case 'default':
      return null;
    case 'linear':
      return { type: 'linear', factor: factor() };
    case 'llama3': {
      const s: RopeScaling = {
        type: 'llama3',
        factor: factor(),
        lowFreqFactor: c.num(`${key}.low_freq_factor`),
        highFreqFactor: c.num(`${key}.high_freq_factor`),
        originalMaxPositions: c.num(`${key}.original_max_position_embeddings`),
      };
      if (!(s.highFreqFactor > s.lowFreqFactor && s.lowFreqFactor > 0)) {
        throw new ModelFolderError(`${c.file}: "${key}" needs 0 < low_freq_factor < high_freq_factor, got ${s.lowFreqFactor} and ${s.highFreqFactor}`);
      }
      return s;
    }
    default:
      throw new ModelFolderError(`${c.file}: "${key}" uses rope type ${JSON.stringify(type)}, which maria does not implement (only default, linear and llama3)`);
  }
}

/** HF's float32 inverse frequencies θ^(-2i/dim), rescaled as `scaling` says. */
export function ropeInvFreq(dim: number, theta: number, scaling: RopeScaling | null): Float32Array {
  const base = nn.rotaryInvFreq(dim, theta);
  if (!scaling) return base;
  if (scaling.type === 'linear') return base.map((f) => f / scaling.factor);
  const { factor, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositions: ctx } = scaling;
  return base.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < ctx / hi) return f; // high frequencies: unchanged
    if (wavelen > ctx / lo) return f / factor; // low frequencies: interpolated
    const smooth = (ctx / wavelen - lo) / (hi - lo);
    return ((1 - smooth) * f) / factor + smooth * f;
  });
}

function parseConfig(c: HfConfig): LlamaConfig {
  const modelType = c.modelType().toLowerCase();
  const variant: Variant = modelType.startsWith('qwen2') ? 'qwen2' : modelType.startsWith('olmo2') ? 'olmo2' : modelType.startsWith('olmo') ? 'olmo' : 'llama';
  const ropeScaling = parseRopeScaling(c);
  const act = c.activation('hidden_act', 'silu');
  const hiddenSize = c.int('hidden_size');
  const numHeads = c.int('num_attention_heads');
  const numKvHeads = c.int('num_key_value_heads', numHeads);
  const headDim = c.int('head_dim', Math.floor(hiddenSize / numHeads));
  if (numHeads % numKvHeads !== 0) {
    throw new ModelFolderError(`${c.file}: num_attention_heads (${numHeads}) is not a multiple of num_key_value_heads (${numKvHeads})`);
  }
  const numLayers = c.int('num_hidden_layers');
  const attentionBias = c.bool('attention_bias', false);
  // Qwen2 has q/k/v biases by construction; its config has no switch for them.
  const qkvBias = variant === 'qwen2' ? true : attentionBias;
  let windows: Array<number | null> = new Array(numLayers).fill(null);
  const layerTypes = c.raw.layer_types;
  const slidingWindow = c.optNum('sliding_window');
  if (Array.isArray(layerTypes)) {
    if (layerTypes.length !== numLayers) throw new ModelFolderError(`${c.file}: "layer_types" has ${layerTypes.length} entries for ${numLayers} layers`);
    windows = layerTypes.map((t) => (t === 'sliding_attention' ? slidingWindow : null));
  } else if (variant === 'qwen2' && c.bool('use_sliding_window', false) && slidingWindow) {
    const from = c.int('max_window_layers', numLayers);
    windows = windows.map((_, i) => (i >= from ? slidingWindow : null));
  }
  if (windows.some((w) => w !== null && !(w > 0))) throw new ModelFolderError(`${c.file}: sliding_attention layers need a positive "sliding_window"`);
  return {
    variant,
    vocabSize: c.int('vocab_size'),
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: c.int('intermediate_size'),
    maxPositions: c.int('max_position_embeddings', 2048),
    act,
    // OLMo-1's LayerNorm has a fixed epsilon and no config key for it.
    normEps: variant === 'olmo' ? 1e-5 : c.num('rms_norm_eps', 1e-6),
    ropeTheta: c.ropeTheta(),
    qkvBias,
    outputBias: variant === 'qwen2' ? false : attentionBias,
    mlpBias: c.bool('mlp_bias', false),
    clipQkv: variant === 'olmo' ? c.optNum('clip_qkv') : null,
    ropeScaling,
    tieEmbeddings: c.tieWordEmbeddings(),
    windows,
    initStd: c.num('initializer_range', 0.02),
  };
}

function params(c: LlamaConfig): ParamSpec[] {
  const normal = { kind: 'normal', std: c.initStd } as const;
  const ones = { kind: 'ones' } as const;
  const zeros = { kind: 'zeros' } as const;
  const specs: ParamSpec[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, c.hiddenSize], init: normal }];
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    const lin = (name: string, out: number, inp: number, bias: boolean): void => {
      specs.push({ name: `${p}.${name}.weight`, shape: [out, inp], init: normal });
      if (bias) specs.push({ name: `${p}.${name}.bias`, shape: [out], init: zeros });
    };
    if (c.variant === 'llama' || c.variant === 'qwen2') {
      specs.push({ name: `${p}.input_layernorm.weight`, shape: [c.hiddenSize], init: ones });
    }
    lin('self_attn.q_proj', q, c.hiddenSize, c.qkvBias);
    lin('self_attn.k_proj', kv, c.hiddenSize, c.qkvBias);
    lin('self_attn.v_proj', kv, c.hiddenSize, c.qkvBias);
    lin('self_attn.o_proj', c.hiddenSize, q, c.outputBias);
    if (c.variant === 'olmo2') {
      specs.push({ name: `${p}.self_attn.q_norm.weight`, shape: [q], init: ones });
      specs.push({ name: `${p}.self_attn.k_norm.weight`, shape: [kv], init: ones });
      specs.push({ name: `${p}.post_feedforward_layernorm.weight`, shape: [c.hiddenSize], init: ones });
    }
    if (c.variant !== 'olmo') specs.push({ name: `${p}.post_attention_layernorm.weight`, shape: [c.hiddenSize], init: ones });
    lin('mlp.gate_proj', c.intermediateSize, c.hiddenSize, c.mlpBias);
    lin('mlp.up_proj', c.intermediateSize, c.hiddenSize, c.mlpBias);
    lin('mlp.down_proj', c.hiddenSize, c.intermediateSize, c.mlpBias);
  }
  if (c.variant !== 'olmo') specs.push({ name: 'model.norm.weight', shape: [c.hiddenSize], init: ones });
  if (!c.tieEmbeddings) specs.push({ name: 'lm_head.weight', shape: [c.vocabSize, c.hiddenSize], init: normal });
  return specs;
}

function forward(g: Graph, p: ParamSource, c: LlamaConfig, inputs: Parameters<CausalFamily['forward']>[3]) {
  const act = nn.activation(c.act);
  const norm = (x: Tensor, name: string, size = c.hiddenSize): Tensor =>
    c.variant === 'olmo' ? nn.layerNorm(x, null, null, c.normEps) : nn.rmsNorm(x, p.get(name, [size]), c.normEps);
  const lin = (x: Tensor, name: string, out: number, inp: number, bias: boolean): Tensor =>
    nn.linear(x, p.get(`${name}.weight`, [out, inp]), bias ? p.get(`${name}.bias`, [out]) : null);
  const clip = (x: Tensor): Tensor => (c.clipQkv === null ? x : F.clip(x, -c.clipQkv, c.clipQkv));

  // The residual step h + delta and the norm `name` of the sum, which the next sub-block reads:
  // an RMSNorm runs fused with the add (one kernel returns both). Returns [sum, normed].
  const addNorm = (h: Tensor, delta: Tensor, name: string): [Tensor, Tensor] => {
    if (c.variant === 'olmo') {
      const sum = F.add(h, delta);
      return [sum, norm(sum, name)];
    }
    const [normed, sum] = F.addRmsNorm(h, delta, p.get(name, [c.hiddenSize]), c.normEps);
    return [sum, normed];
  };

  const embed = p.get('model.embed_tokens.weight', [c.vocabSize, c.hiddenSize]);
  let h = F.gather(embed, inputs.ids);
  const rope = nn.rotaryCache(inputs.positions, ropeInvFreq(c.headDim, c.ropeTheta, c.ropeScaling));
  const ropeQ = nn.scaledRotaryCache(rope, 1 / Math.sqrt(c.headDim));
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const present: Array<{ k: Tensor; v: Tensor }> = [];
  // The input of the next sub-block (OLMo-2 normalises outputs, not inputs).
  let x = c.numLayers === 0 ? norm(h, 'model.norm.weight') : c.variant === 'olmo2' ? h : norm(h, 'model.layers.0.input_layernorm.weight');

  for (let i = 0; i < c.numLayers; i++) {
    const pre = `model.layers.${i}`;
    const last = i === c.numLayers - 1;
    const mask = nn.attentionMask({
      queryPositions: inputs.positions,
      keyPositions: inputs.keyPositions,
      keyValid: inputs.keyValid,
      causal: true,
      // HF's sliding window keeps the last `window` keys, the query included.
      window: c.windows[i] === null ? null : { left: c.windows[i]! - 1, right: 0 },
    });

    // q, k and v from one product; their heads split apart in one go (OLMo-2 first normalises
    // q and k over whole projections).
    const proj = (name: string, out: number) => ({ weight: p.get(`${pre}.${name}.weight`, [out, c.hiddenSize]), bias: c.qkvBias ? p.get(`${pre}.${name}.bias`, [out]) : null });
    const qkv = [proj('self_attn.q_proj', q), proj('self_attn.k_proj', kv), proj('self_attn.v_proj', kv)];
    let heads: Tensor[];
    if (c.variant === 'olmo2') {
      const [qs, ks, vs] = nn.linears(x, qkv);
      heads = [
        nn.splitHeads(norm(qs, `${pre}.self_attn.q_norm.weight`, q), c.numHeads, c.headDim),
        nn.splitHeads(norm(ks, `${pre}.self_attn.k_norm.weight`, kv), c.numKvHeads, c.headDim),
        nn.splitHeads(vs, c.numKvHeads, c.headDim),
      ];
    } else heads = nn.splitHeadGroups(clip(nn.fusedLinear(x, qkv)), [c.numHeads, c.numKvHeads, c.numKvHeads], c.headDim);
    const qh = nn.rotate(heads[0], ropeQ);
    // The new keys in the cache's transposed layout [B, Hkv, d, T]; the scores use them so too.
    const kNew = { transposed: F.transposeLast(nn.rotate(heads[1], rope)) };
    const vNew = heads[2];
    // The cache and the new tokens are attended to as two blocks (never concatenated); only the
    // new keys and values are returned, the runner writes them into its cache.
    const k = inputs.past.length ? [{ transposed: inputs.past[i].k }, kNew] : kNew;
    const v = inputs.past.length ? [inputs.past[i].v, vNew] : vNew;
    present.push({ k: kNew.transposed, v: vNew });
    const attn = lin(nn.mergeHeads(nn.attention(qh, k, v, mask, 1)), `${pre}.self_attn.o_proj`, c.hiddenSize, q, c.outputBias);
    let y: Tensor;
    if (c.variant === 'olmo2') y = h = F.add(h, norm(attn, `${pre}.post_attention_layernorm.weight`));
    else [h, y] = addNorm(h, attn, `${pre}.post_attention_layernorm.weight`);

    const mlpProj = (name: string) => ({ weight: p.get(`${pre}.mlp.${name}.weight`, [c.intermediateSize, c.hiddenSize]), bias: c.mlpBias ? p.get(`${pre}.mlp.${name}.bias`, [c.intermediateSize]) : null });
    const [gate, up] = nn.linears(y, [mlpProj('gate_proj'), mlpProj('up_proj')]);
    const mlp = lin(F.mul(act(gate), up), `${pre}.mlp.down_proj`, c.hiddenSize, c.intermediateSize, c.mlpBias);
    const next = last ? 'model.norm.weight' : `model.layers.${i + 1}.input_layernorm.weight`;
    if (c.variant !== 'olmo2') [h, x] = addNorm(h, mlp, next);
    else if (!last) x = h = F.add(h, norm(mlp, `${pre}.post_feedforward_layernorm.weight`));
    else [h, x] = addNorm(h, norm(mlp, `${pre}.post_feedforward_layernorm.weight`), next);
  }
  const hidden = x;
  const head = c.tieEmbeddings ? embed : p.get('lm_head.weight', [c.vocabSize, c.hiddenSize]);
  return { hidden, logits: nn.linear(hidden, head), present };
}

export const llamaFamily: CausalFamily<LlamaConfig> = {
  kind: 'causal',
  modelTypes: ['llama', 'qwen2', 'olmo', 'olmo2'],
  parseConfig,
  params,
  cacheShape: (c) => ({ kvHeads: c.numKvHeads, headDim: c.headDim }),
  forward,
  outputHead: (c) => ({ weight: c.tieEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight', bias: null }),
};
