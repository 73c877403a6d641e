// ModernBERT (answerdotai): a pre-LN encoder with rotary positions. Embeddings are tok_embeddings →
// LayerNorm (no position table). Each layer: attn_norm (an Identity in layer 0) → fused Wqkv →
// RoPE → attention → Wo → residual; mlp_norm → Wi split into (input, gate) → act(input)·gate → Wo →
// residual. Layers alternate between global attention (padding mask only, RoPE base
// global_rope_theta) and local attention (a symmetric window: |i - j| <= local_attention // 2, RoPE
// base local_rope_theta). After final_norm comes the MLM head dense → act → LayerNorm (the
// "hidden" output) and a decoder tied to tok_embeddings with its own bias.
//
// Config spellings: transformers <= 4.57 writes global_attn_every_n_layers, global_rope_theta and
// local_rope_theta; transformers 5 adds layer_types ("full_attention" / "sliding_attention") and
// moves the thetas into rope_parameters.{full_attention,sliding_attention}.rope_theta. Both are read.
import type { Graph, Tensor } from '../engine/graph.js';
import * as F from '../engine/ops.js';
import * as nn from '../engine/nn.js';
import { tokenIndices } from './bert.js';
import { HfConfig, ModelFolderError } from './config.js';
import { barePrefixAlias, type BaseConfig, type Init, type MaskedFamily, type MaskedInputs, type ParamSource, type ParamSpec } from './family.js';

/** What ModernBERT and its causal sibling (the Ettin decoder) read alike from config.json. */
export interface ModernBertShape extends BaseConfig {
  numHeads: number;
  headDim: number;
  intermediateSize: number;
  /** hidden_activation: the GLU's activation. */
  act: string;
  /** classifier_activation: the MLM head's activation. */
  headAct: string;
  normEps: number;
  normBias: boolean;
  attentionBias: boolean;
  mlpBias: boolean;
  /** classifier_bias: whether head.dense has a bias. */
  headBias: boolean;
  decoderBias: boolean;
  tieEmbeddings: boolean;
  initStd: number;
}

export interface ModernBertConfig extends ModernBertShape {
  /** Per layer: half-width of the local window (null = global attention) and the RoPE base. */
  layers: Array<{ window: number | null; theta: number }>;
}

const DEFAULT_GLOBAL_THETA = 160_000;
const DEFAULT_LOCAL_THETA = 10_000;

/** rope_parameters[layerType] when transformers 5 wrote it (nested per layer type), else null. */
function ropeParams(c: HfConfig, layerType: string): Record<string, unknown> | null {
  const rp = c.raw.rope_parameters;
  if (!rp || typeof rp !== 'object' || Array.isArray(rp)) return null;
  const v = (rp as Record<string, unknown>)[layerType];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw new ModelFolderError(`${c.file}: "rope_parameters.${layerType}" must be an object, got ${JSON.stringify(v)}`);
  const type = (v as Record<string, unknown>).rope_type ?? (v as Record<string, unknown>).type;
  if (type !== undefined && type !== 'default') {
    throw new ModelFolderError(`${c.file}: "rope_parameters.${layerType}" uses rope type "${String(type)}", which maria does not implement (only default RoPE)`);
  }
  return v as Record<string, unknown>;
}

/** The shared fields, with the defaults of transformers' ModernBertConfig (ModernBertDecoderConfig's are the same). */
export function readModernBertShape(c: HfConfig): ModernBertShape {
  const hiddenSize = c.int('hidden_size', 768);
  const numHeads = c.int('num_attention_heads', 12);
  if (numHeads === 0 || hiddenSize % numHeads !== 0) {
    throw new ModelFolderError(`${c.file}: "hidden_size" (${hiddenSize}) is not a multiple of "num_attention_heads" (${numHeads})`);
  }
  return {
    vocabSize: c.int('vocab_size', 50368),
    hiddenSize,
    numLayers: c.int('num_hidden_layers', 22),
    maxPositions: c.int('max_position_embeddings', 8192),
    numHeads,
    headDim: hiddenSize / numHeads,
    intermediateSize: c.int('intermediate_size', 1152),
    act: c.activation('hidden_activation', 'gelu'),
    headAct: c.activation('classifier_activation', 'gelu'),
    normEps: c.num('norm_eps', 1e-5),
    normBias: c.bool('norm_bias', false),
    attentionBias: c.bool('attention_bias', false),
    mlpBias: c.bool('mlp_bias', false),
    headBias: c.bool('classifier_bias', false),
    decoderBias: c.bool('decoder_bias', true),
    tieEmbeddings: c.tieWordEmbeddings(),
    initStd: c.num('initializer_range', 0.02),
  };
}

/** Per layer, whether it attends globally: `layer_types` (transformers 5) or every n-th layer from 0. */
export function readGlobalLayers(c: HfConfig, numLayers: number): boolean[] {
  const layerTypes = c.raw.layer_types;
  if (layerTypes !== undefined && layerTypes !== null) {
    if (!Array.isArray(layerTypes) || layerTypes.length !== numLayers) {
      throw new ModelFolderError(`${c.file}: "layer_types" must list one entry per layer (${numLayers}), got ${JSON.stringify(layerTypes)}`);
    }
    return layerTypes.map((t, i) => {
      if (t === 'full_attention') return true;
      if (t === 'sliding_attention') return false;
      throw new ModelFolderError(`${c.file}: "layer_types[${i}]" is ${JSON.stringify(t)}; ModernBERT layers are "full_attention" or "sliding_attention"`);
    });
  }
  const every = c.int('global_attn_every_n_layers', 3);
  if (every < 1) throw new ModelFolderError(`${c.file}: "global_attn_every_n_layers" must be at least 1, got ${every}`);
  return Array.from({ length: numLayers }, (_, i) => i % every === 0);
}

function parseConfig(c: HfConfig): ModernBertConfig {
  c.checkRopeScaling();
  const shape = readModernBertShape(c);
  const global = readGlobalLayers(c, shape.numLayers);

  // The window: local_attention is the full width; transformers 5 also accepts sliding_window (= half).
  let localAttention = c.optNum('local_attention');
  const slidingWindow = c.optNum('sliding_window');
  if (localAttention === null) localAttention = slidingWindow !== null ? 2 * slidingWindow : 128;
  else if (slidingWindow !== null && slidingWindow !== Math.floor(localAttention / 2)) {
    throw new ModelFolderError(`${c.file}: "sliding_window" (${slidingWindow}) disagrees with "local_attention" (${localAttention}; its half-width is ${Math.floor(localAttention / 2)})`);
  }
  if (!Number.isInteger(localAttention) || localAttention < 0) {
    throw new ModelFolderError(`${c.file}: "local_attention" must be a non-negative integer, got ${localAttention}`);
  }
  const halfWindow = Math.floor(localAttention / 2);

  // RoPE bases. transformers 4.57: local layers use local_rope_theta unless it is null (then the
  // global base); transformers 5: rope_parameters per layer type, falling back to the old keys.
  const fullRope = ropeParams(c, 'full_attention');
  const slidingRope = ropeParams(c, 'sliding_attention');
  const num = (v: unknown, key: string): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ModelFolderError(`${c.file}: "${key}" must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  };
  const globalTheta =
    fullRope?.rope_theta !== undefined ? num(fullRope.rope_theta, 'rope_parameters.full_attention.rope_theta') : num(c.optNum('global_rope_theta') ?? DEFAULT_GLOBAL_THETA, 'global_rope_theta');
  let localTheta: number;
  if (slidingRope?.rope_theta !== undefined) localTheta = num(slidingRope.rope_theta, 'rope_parameters.sliding_attention.rope_theta');
  else if ('local_rope_theta' in c.raw) localTheta = c.optNum('local_rope_theta') ?? globalTheta;
  else localTheta = DEFAULT_LOCAL_THETA;
  localTheta = num(localTheta, 'local_rope_theta');

  return { ...shape, layers: global.map((g) => (g ? { window: null, theta: globalTheta } : { window: halfWindow, theta: localTheta })) };
}

function params(c: ModernBertConfig): ParamSpec[] {
  const D = c.hiddenSize;
  const std = c.initStd;
  const outStd = std / Math.sqrt(2 * c.numLayers);
  const ones = { kind: 'ones' } as const;
  const zeros = { kind: 'zeros' } as const;
  const specs: ParamSpec[] = [];
  // A checkpoint saved from the bare ModernBertModel has no "model." prefix.
  const spec = (name: string, shape: number[], init: Init): void => {
    specs.push({ name, shape, init, ...barePrefixAlias(name, 'model.') });
  };
  const lin = (name: string, out: number, inp: number, bias: boolean, s: number): void => {
    spec(`${name}.weight`, [out, inp], { kind: 'normal', std: s });
    if (bias) spec(`${name}.bias`, [out], zeros);
  };
  const norm = (name: string): void => {
    spec(`${name}.weight`, [D], ones);
    if (c.normBias) spec(`${name}.bias`, [D], zeros);
  };
  spec('model.embeddings.tok_embeddings.weight', [c.vocabSize, D], { kind: 'normal', std });
  norm('model.embeddings.norm');
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    if (i > 0) norm(`${p}.attn_norm`);
    lin(`${p}.attn.Wqkv`, 3 * D, D, c.attentionBias, std);
    lin(`${p}.attn.Wo`, D, D, c.attentionBias, outStd);
    norm(`${p}.mlp_norm`);
    lin(`${p}.mlp.Wi`, 2 * c.intermediateSize, D, c.mlpBias, std);
    lin(`${p}.mlp.Wo`, D, c.intermediateSize, c.mlpBias, outStd);
  }
  norm('model.final_norm');
  lin('head.dense', D, D, c.headBias, outStd);
  norm('head.norm');
  if (!c.tieEmbeddings) spec('decoder.weight', [c.vocabSize, D], { kind: 'normal', std: outStd });
  if (c.decoderBias) spec('decoder.bias', [c.vocabSize], zeros);
  return specs;
}

function forward(g: Graph, p: ParamSource, c: ModernBertConfig, inputs: MaskedInputs) {
  const D = c.hiddenSize;
  const get = (name: string, shape: number[]): Tensor => p.get(name, shape);
  const lin = (x: Tensor, name: string, out: number, inp: number, bias: boolean): Tensor =>
    nn.linear(x, get(`${name}.weight`, [out, inp]), bias ? get(`${name}.bias`, [out]) : null);
  const norm = (x: Tensor, name: string): Tensor => nn.layerNorm(x, get(`${name}.weight`, [D]), c.normBias ? get(`${name}.bias`, [D]) : null, c.normEps);
  const act = nn.activation(c.act);

  const embed = get('model.embeddings.tok_embeddings.weight', [c.vocabSize, D]);
  let h = norm(F.gather(embed, inputs.ids), 'model.embeddings.norm');

  // Masks go by token index (HF: arange over the sequence); RoPE by position id.
  const index = tokenIndices(inputs.ids);
  const masks = new Map<number | null, Tensor>();
  const maskFor = (window: number | null): Tensor => {
    let m = masks.get(window);
    if (!m) {
      m = nn.attentionMask({
        queryPositions: index,
        keyPositions: index,
        keyValid: inputs.attentionMask,
        window: window === null ? null : { left: window, right: window },
      });
      masks.set(window, m);
    }
    return m;
  };
  const tables = new Map<number, { cos: Tensor; sin: Tensor }>();
  const ropeFor = (theta: number): { cos: Tensor; sin: Tensor } => {
    let t = tables.get(theta);
    if (!t) {
      t = nn.rotaryTables(inputs.positions, c.headDim, theta);
      tables.set(theta, t);
    }
    return t;
  };

  const scale = 1 / Math.sqrt(c.headDim);
  for (let i = 0; i < c.numLayers; i++) {
    const pre = `model.layers.${i}`;
    const { window, theta } = c.layers[i];
    const x = i === 0 ? h : norm(h, `${pre}.attn_norm`);
    const qkv = lin(x, `${pre}.attn.Wqkv`, 3 * D, D, c.attentionBias);
    const { cos, sin } = ropeFor(theta);
    const q = nn.applyRotary(nn.splitHeads(F.slice(qkv, -1, 0, D), c.numHeads, c.headDim), cos, sin);
    const k = nn.applyRotary(nn.splitHeads(F.slice(qkv, -1, D, 2 * D), c.numHeads, c.headDim), cos, sin);
    const v = nn.splitHeads(F.slice(qkv, -1, 2 * D, 3 * D), c.numHeads, c.headDim);
    const attn = nn.mergeHeads(nn.attention(q, k, v, maskFor(window), scale));
    h = F.add(h, lin(attn, `${pre}.attn.Wo`, D, D, c.attentionBias));

    const wi = lin(norm(h, `${pre}.mlp_norm`), `${pre}.mlp.Wi`, 2 * c.intermediateSize, D, c.mlpBias);
    const glu = F.mul(act(F.slice(wi, -1, 0, c.intermediateSize)), F.slice(wi, -1, c.intermediateSize, 2 * c.intermediateSize));
    h = F.add(h, lin(glu, `${pre}.mlp.Wo`, D, c.intermediateSize, c.mlpBias));
  }
  h = norm(h, 'model.final_norm');

  const hidden = norm(nn.activation(c.headAct)(lin(h, 'head.dense', D, D, c.headBias)), 'head.norm');
  const decoder = c.tieEmbeddings ? embed : get('decoder.weight', [c.vocabSize, D]);
  const logits = nn.linear(hidden, decoder, c.decoderBias ? get('decoder.bias', [c.vocabSize]) : null);
  return { hidden, logits };
}

export const modernBertFamily: MaskedFamily<ModernBertConfig> = {
  kind: 'masked',
  modelTypes: ['modernbert'],
  parseConfig,
  params,
  forward,
  outputHead: (c) => ({ weight: c.tieEmbeddings ? 'model.embeddings.tok_embeddings.weight' : 'decoder.weight', bias: c.decoderBias ? 'decoder.bias' : null }),
};
