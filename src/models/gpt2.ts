// GPT-2: learned absolute positions, pre-LN blocks, fused q|k|v projection, gelu_new MLP. Its
// projections are Conv1D layers stored [in, out] (the transpose of nn.Linear): y = x @ W + b.
// Checkpoints saved from GPT2LMHeadModel name tensors "transformer.h.0..."; ones saved from
// GPT2Model (among them the original Hub uploads) have no "transformer." prefix. Both load.
import type { Tensor } from '../engine/graph.js';
import * as F from '../engine/ops.js';
import * as nn from '../engine/nn.js';
import { HfConfig, ModelFolderError } from './config.js';
import { barePrefixAlias, type BaseConfig, type CausalFamily, type Init, type ParamSpec } from './family.js';

export interface Gpt2Config extends BaseConfig {
  numHeads: number;
  headDim: number;
  innerSize: number;
  act: string;
  normEps: number;
  scaleAttnWeights: boolean;
  scaleByInverseLayerIdx: boolean;
  tieEmbeddings: boolean;
  initStd: number;
}

function parseConfig(c: HfConfig): Gpt2Config {
  const hiddenSize = c.int(['n_embd', 'hidden_size']);
  const numHeads = c.int(['n_head', 'num_attention_heads']);
  if (numHeads === 0 || hiddenSize % numHeads !== 0) {
    throw new ModelFolderError(`${c.file}: "n_embd" (${hiddenSize}) is not a multiple of "n_head" (${numHeads})`);
  }
  const act = c.activation('activation_function', 'gelu_new');
  return {
    vocabSize: c.int('vocab_size'),
    hiddenSize,
    numLayers: c.int(['n_layer', 'num_hidden_layers']),
    maxPositions: c.int(['n_positions', 'max_position_embeddings'], 1024),
    numHeads,
    headDim: hiddenSize / numHeads,
    innerSize: c.int('n_inner', 4 * hiddenSize),
    act,
    normEps: c.num('layer_norm_epsilon', 1e-5),
    scaleAttnWeights: c.bool('scale_attn_weights', true),
    scaleByInverseLayerIdx: c.bool('scale_attn_by_inverse_layer_idx', false),
    // reorder_and_upcast_attn only changes the order of float32 operations: nothing to do here.
    tieEmbeddings: c.tieWordEmbeddings(),
    initStd: c.num('initializer_range', 0.02),
  };
}

function params(c: Gpt2Config): ParamSpec[] {
  const normal = { kind: 'normal', std: c.initStd } as const;
  const ones = { kind: 'ones' } as const;
  const zeros = { kind: 'zeros' } as const;
  const D = c.hiddenSize;
  const t = 'transformer.';
  const specs: ParamSpec[] = [];
  // GPT2Model (and old Hub uploads) save the base model's tensors without the "transformer." prefix.
  const spec = (name: string, shape: number[], init: Init): void => {
    specs.push({ name, shape, init, ...barePrefixAlias(name, t) });
  };
  spec(`${t}wte.weight`, [c.vocabSize, D], normal);
  spec(`${t}wpe.weight`, [c.maxPositions, D], normal);
  const ln = (name: string): void => {
    spec(`${name}.weight`, [D], ones);
    spec(`${name}.bias`, [D], zeros);
  };
  const conv = (name: string, inp: number, out: number): void => {
    spec(`${name}.weight`, [inp, out], normal);
    spec(`${name}.bias`, [out], zeros);
  };
  for (let i = 0; i < c.numLayers; i++) {
    const p = `${t}h.${i}`;
    ln(`${p}.ln_1`);
    conv(`${p}.attn.c_attn`, D, 3 * D);
    conv(`${p}.attn.c_proj`, D, D);
    ln(`${p}.ln_2`);
    conv(`${p}.mlp.c_fc`, D, c.innerSize);
    conv(`${p}.mlp.c_proj`, c.innerSize, D);
  }
  ln(`${t}ln_f`);
  if (!c.tieEmbeddings) spec('lm_head.weight', [c.vocabSize, D], normal);
  return specs;
}

const forward: CausalFamily<Gpt2Config>['forward'] = (_g, p, c, inputs) => {
  const D = c.hiddenSize;
  const act = nn.activation(c.act);
  const t = 'transformer.';
  const ln = (x: Tensor, name: string): Tensor => nn.layerNorm(x, p.get(`${name}.weight`, [D]), p.get(`${name}.bias`, [D]), c.normEps);
  const conv = (x: Tensor, name: string, inp: number, out: number): Tensor =>
    F.add(F.matmul(x, p.get(`${name}.weight`, [inp, out])), p.get(`${name}.bias`, [out]));

  const wte = p.get(`${t}wte.weight`, [c.vocabSize, D]);
  let h = F.add(F.gather(wte, inputs.ids), F.gather(p.get(`${t}wpe.weight`, [c.maxPositions, D]), inputs.positions));
  const mask = nn.attentionMask({ queryPositions: inputs.positions, keyPositions: inputs.keyPositions, keyValid: inputs.keyValid, causal: true });
  const present: Array<{ k: Tensor; v: Tensor }> = [];

  for (let i = 0; i < c.numLayers; i++) {
    const pre = `${t}h.${i}`;
    const qkv = conv(ln(h, `${pre}.ln_1`), `${pre}.attn.c_attn`, D, 3 * D);
    const q = nn.splitHeads(F.slice(qkv, -1, 0, D), c.numHeads, c.headDim);
    const kNew = nn.splitHeads(F.slice(qkv, -1, D, 2 * D), c.numHeads, c.headDim);
    const vNew = nn.splitHeads(F.slice(qkv, -1, 2 * D, 3 * D), c.numHeads, c.headDim);
    // The cache and the new tokens are attended to as two blocks (never concatenated); only the
    // new keys and values are returned, the runner writes them into its cache.
    const k = inputs.past.length ? [{ transposed: inputs.past[i].k }, kNew] : kNew;
    const v = inputs.past.length ? [inputs.past[i].v, vNew] : vNew;
    present.push({ k: F.transposeLast(kNew), v: vNew });
    let scale = c.scaleAttnWeights ? 1 / Math.sqrt(c.headDim) : 1;
    if (c.scaleByInverseLayerIdx) scale /= i + 1;
    h = F.add(h, conv(nn.mergeHeads(nn.attention(q, k, v, mask, scale)), `${pre}.attn.c_proj`, D, D));

    const y = act(conv(ln(h, `${pre}.ln_2`), `${pre}.mlp.c_fc`, D, c.innerSize));
    h = F.add(h, conv(y, `${pre}.mlp.c_proj`, c.innerSize, D));
  }
  const hidden = ln(h, `${t}ln_f`);
  const head = c.tieEmbeddings ? wte : p.get('lm_head.weight', [c.vocabSize, D]);
  return { hidden, logits: nn.linear(hidden, head), present };
};

export const gpt2Family: CausalFamily<Gpt2Config> = {
  kind: 'causal',
  modelTypes: ['gpt2'],
  parseConfig,
  params,
  cacheShape: (c) => ({ kvHeads: c.numHeads, headDim: c.headDim }),
  forward,
  outputHead: (c) => ({ weight: c.tieEmbeddings ? 'transformer.wte.weight' : 'lm_head.weight', bias: null }),
};
