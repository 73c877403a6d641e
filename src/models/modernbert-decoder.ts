// The ModernBERT decoder (Ettin): ModernBERT's layers made causal. Embeddings are followed by a
// LayerNorm; layer 0 has no attention norm; q/k/v are separate projections; the MLP is a GLU whose
// Wi output splits into input | gate; layers alternate between full and sliding-window attention.
// After model.final_norm comes a prediction head (dense → act → LayerNorm) and only then the
// decoder matrix (tied to the embeddings by default) with its bias.
//
// Follows transformers 4.57.5 (ModernBertDecoderForCausalLM), which
//  - makes layer i full attention when i % global_attn_every_n_layers == 0 unless `layer_types` says otherwise,
//  - uses sliding_window = local_attention // 2 (local_attention defaulting to 128) and ignores a
//    `sliding_window` key: a query sees itself and the sliding_window - 1 keys before it,
//  - builds the rotary tables of every layer from global_rope_theta (local_rope_theta is ignored;
//    transformers 5 uses it for sliding layers). A transformers-5 config with per-layer-type
//    `rope_parameters` is read as transformers 5 reads it.
import type { Tensor } from '../engine/graph.js';
import * as F from '../engine/ops.js';
import * as nn from '../engine/nn.js';
import { HfConfig, ModelFolderError } from './config.js';
import type { CausalFamily, ParamSpec } from './family.js';
import { readGlobalLayers, readModernBertShape, type ModernBertShape } from './modernbert.js';

type LayerType = 'full_attention' | 'sliding_attention';

export interface ModernBertDecoderConfig extends ModernBertShape {
  layerTypes: LayerType[];
  /** Keys a sliding layer's query sees, itself included. */
  slidingWindow: number;
  ropeTheta: Record<LayerType, number>;
}

function ropeThetas(c: HfConfig): Record<LayerType, number> {
  const checkType = (key: string): void => {
    const v = c.raw[key] as Record<string, unknown> | null | undefined;
    if (!v || typeof v !== 'object') return;
    for (const entry of [v, v.full_attention, v.sliding_attention]) {
      if (!entry || typeof entry !== 'object') continue;
      const type = (entry as Record<string, unknown>).rope_type ?? (entry as Record<string, unknown>).type;
      if (type !== undefined && type !== 'default') {
        throw new ModelFolderError(`${c.file}: "${key}" uses rope type "${String(type)}", which maria does not implement (only default RoPE)`);
      }
    }
  };
  checkType('rope_scaling');
  checkType('rope_parameters');
  const global = c.num(['global_rope_theta', 'rope_theta'], 160000);
  const perType = c.has('rope_parameters.full_attention') || c.has('rope_parameters.sliding_attention');
  if (!perType) return { full_attention: global, sliding_attention: global };
  // Written by transformers 5: each layer type names its own base.
  const full = c.num('rope_parameters.full_attention.rope_theta', global);
  const sliding = c.num(['rope_parameters.sliding_attention.rope_theta', 'local_rope_theta'], 10000);
  return { full_attention: full, sliding_attention: sliding };
}

function parseConfig(c: HfConfig): ModernBertDecoderConfig {
  const shape = readModernBertShape(c);
  const layerTypes = readGlobalLayers(c, shape.numLayers).map((g): LayerType => (g ? 'full_attention' : 'sliding_attention'));
  const localAttention = c.int('local_attention', 128);
  const slidingWindow = Math.floor(localAttention / 2);
  if (slidingWindow < 1 && layerTypes.includes('sliding_attention')) {
    throw new ModelFolderError(`${c.file}: "local_attention" (${localAttention}) gives sliding layers an empty window`);
  }
  return { ...shape, layerTypes, slidingWindow, ropeTheta: ropeThetas(c) };
}

function params(c: ModernBertDecoderConfig): ParamSpec[] {
  const normal = { kind: 'normal', std: c.initStd } as const;
  const ones = { kind: 'ones' } as const;
  const zeros = { kind: 'zeros' } as const;
  const D = c.hiddenSize;
  const specs: ParamSpec[] = [{ name: 'model.embeddings.tok_embeddings.weight', shape: [c.vocabSize, D], init: normal }];
  const norm = (name: string): void => {
    specs.push({ name: `${name}.weight`, shape: [D], init: ones });
    if (c.normBias) specs.push({ name: `${name}.bias`, shape: [D], init: zeros });
  };
  const lin = (name: string, out: number, inp: number, bias: boolean): void => {
    specs.push({ name: `${name}.weight`, shape: [out, inp], init: normal });
    if (bias) specs.push({ name: `${name}.bias`, shape: [out], init: zeros });
  };
  norm('model.embeddings.norm');
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    if (i !== 0) norm(`${p}.attn_norm`);
    lin(`${p}.attn.q_proj`, D, D, c.attentionBias);
    lin(`${p}.attn.k_proj`, D, D, c.attentionBias);
    lin(`${p}.attn.v_proj`, D, D, c.attentionBias);
    lin(`${p}.attn.Wo`, D, D, c.attentionBias);
    norm(`${p}.mlp_norm`);
    lin(`${p}.mlp.Wi`, 2 * c.intermediateSize, D, c.mlpBias);
    lin(`${p}.mlp.Wo`, D, c.intermediateSize, c.mlpBias);
  }
  norm('model.final_norm');
  lin('lm_head.dense', D, D, c.headBias);
  norm('lm_head.norm');
  if (!c.tieEmbeddings) specs.push({ name: 'decoder.weight', shape: [c.vocabSize, D], init: normal });
  if (c.decoderBias) specs.push({ name: 'decoder.bias', shape: [c.vocabSize], init: zeros });
  return specs;
}

const forward: CausalFamily<ModernBertDecoderConfig>['forward'] = (_g, p, c, inputs) => {
  const D = c.hiddenSize;
  const I = c.intermediateSize;
  const act = nn.activation(c.act);
  const norm = (x: Tensor, name: string): Tensor =>
    nn.layerNorm(x, p.get(`${name}.weight`, [D]), c.normBias ? p.get(`${name}.bias`, [D]) : null, c.normEps);
  const lin = (x: Tensor, name: string, out: number, inp: number, bias: boolean): Tensor =>
    nn.linear(x, p.get(`${name}.weight`, [out, inp]), bias ? p.get(`${name}.bias`, [out]) : null);

  const embed = p.get('model.embeddings.tok_embeddings.weight', [c.vocabSize, D]);
  let h = norm(F.gather(embed, inputs.ids), 'model.embeddings.norm');
  // Per RoPE base: the keys' rotary cache and the queries', which also carries attention's 1/√d.
  const caches = new Map<number, { k: nn.RotaryCache; q: nn.RotaryCache }>();
  const rotary = (theta: number): { k: nn.RotaryCache; q: nn.RotaryCache } => {
    let t = caches.get(theta);
    if (!t) {
      const k = nn.rotaryCache(inputs.positions, nn.rotaryInvFreq(c.headDim, theta));
      caches.set(theta, (t = { k, q: nn.scaledRotaryCache(k, 1 / Math.sqrt(c.headDim)) }));
    }
    return t;
  };
  const masks = new Map<LayerType, Tensor>();
  const maskFor = (type: LayerType): Tensor => {
    let m = masks.get(type);
    if (!m) {
      m = nn.attentionMask({
        queryPositions: inputs.positions,
        keyPositions: inputs.keyPositions,
        keyValid: inputs.keyValid,
        causal: true,
        window: type === 'sliding_attention' ? { left: c.slidingWindow - 1, right: 0 } : null,
      });
      masks.set(type, m);
    }
    return m;
  };
  const present: Array<{ k: Tensor; v: Tensor }> = [];

  for (let i = 0; i < c.numLayers; i++) {
    const pre = `model.layers.${i}`;
    const type = c.layerTypes[i];
    const rope = rotary(c.ropeTheta[type]);
    const x = i === 0 ? h : norm(h, `${pre}.attn_norm`);
    const proj = (name: string) => ({ weight: p.get(`${pre}.attn.${name}.weight`, [D, D]), bias: c.attentionBias ? p.get(`${pre}.attn.${name}.bias`, [D]) : null });
    const [qh, kh, vNew] = nn.splitHeadGroups(nn.fusedLinear(x, [proj('q_proj'), proj('k_proj'), proj('v_proj')]), [c.numHeads, c.numHeads, c.numHeads], c.headDim);
    const q = nn.rotate(qh, rope.q);
    // New keys in the cache's transposed layout [B, H, d, T], used so by the scores too.
    const kNew = { transposed: F.transposeLast(nn.rotate(kh, rope.k)) };
    // The cache and the new tokens are attended to as two blocks (never concatenated); only the
    // new keys and values are returned, the runner writes them into its cache.
    const k = inputs.past.length ? [{ transposed: inputs.past[i].k }, kNew] : kNew;
    const v = inputs.past.length ? [inputs.past[i].v, vNew] : vNew;
    present.push({ k: kNew.transposed, v: vNew });
    const attn = nn.mergeHeads(nn.attention(q, k, v, maskFor(type), 1));
    h = F.add(h, lin(attn, `${pre}.attn.Wo`, D, D, c.attentionBias));

    const wi = lin(norm(h, `${pre}.mlp_norm`), `${pre}.mlp.Wi`, 2 * I, D, c.mlpBias);
    const glu = F.mul(act(F.slice(wi, -1, 0, I)), F.slice(wi, -1, I, 2 * I));
    h = F.add(h, lin(glu, `${pre}.mlp.Wo`, D, I, c.mlpBias));
  }
  const last = norm(h, 'model.final_norm');
  const hidden = norm(nn.activation(c.headAct)(lin(last, 'lm_head.dense', D, D, c.headBias)), 'lm_head.norm');
  const decoder = c.tieEmbeddings ? embed : p.get('decoder.weight', [c.vocabSize, D]);
  const logits = nn.linear(hidden, decoder, c.decoderBias ? p.get('decoder.bias', [c.vocabSize]) : null);
  return { hidden, logits, present };
};

export const modernBertDecoderFamily: CausalFamily<ModernBertDecoderConfig> = {
  kind: 'causal',
  modelTypes: ['modernbert-decoder'],
  parseConfig,
  params,
  cacheShape: (c) => ({ kvHeads: c.numHeads, headDim: c.headDim }),
  forward,
  outputHead: (c) => ({
    weight: c.tieEmbeddings ? 'model.embeddings.tok_embeddings.weight' : 'decoder.weight',
    bias: c.decoderBias ? 'decoder.bias' : null,
  }),
};
