// The BERT family: BERT and RoBERTa / XLM-RoBERTa (identical modelling code in HF). A post-LN
// encoder: word + absolute position + token-type (row 0) embeddings → LayerNorm, then per layer
// self-attention with a padding mask → dense → add & LayerNorm → intermediate act → dense → add &
// LayerNorm. The MLM head is dense → act → LayerNorm (the "hidden" output), then a decoder tied to
// the word embeddings plus a bias. RoBERTa differs only in names, in position ids (counted from
// padding_idx + 1, pad tokens get padding_idx) and in its head activation (always erf GELU).
//
// Checkpoints from different transformers versions spell some tensors differently (LayerNorm.gamma
// / .beta in TF-era files, no `bert.` prefix when saved from the bare encoder, the decoder bias under
// `cls.predictions.decoder.bias`): params() lists them as aliases of the canonical names, and
// loading stores every tensor under its canonical name.
import type { Graph, Tensor } from '../engine/graph.js';
import * as F from '../engine/ops.js';
import * as nn from '../engine/nn.js';
import { HfConfig, ModelFolderError } from './config.js';
import type { BaseConfig, Init, MaskedFamily, MaskedInputs, ParamSource, ParamSpec } from './family.js';

/** [B, T] int64 indices 0..T-1 of the tokens (HF masks go by index, not by position id; ModernBERT uses it too). */
export function tokenIndices(ids: Tensor): Tensor {
  const T = ids.dim(1);
  return F.expand(F.reshape(F.arange(ids.graph, T), [1, T]), [ids.dim(0), T]);
}

// --- BERT / RoBERTa --------------------------------------------------------------------------------

/** The size of a tensor's last axis when fixed. */
function lastDim(x: Tensor): number {
  const d = x.dim(-1);
  if (typeof d !== 'number') throw new Error(`expected a fixed last axis, got ${x}`);
  return d;
}

type Variant = 'bert' | 'roberta';

export interface BertConfig extends BaseConfig {
  variant: Variant;
  numHeads: number;
  headDim: number;
  intermediateSize: number;
  /** Rows of token_type_embeddings (row 0 is used). */
  typeVocabSize: number;
  /** Rows of position_embeddings (max_position_embeddings). */
  positionRows: number;
  /** hidden_act: the intermediate activation (and BERT's head transform's). */
  act: string;
  /** The head transform's activation: hidden_act for BERT, always erf GELU for RoBERTa. */
  headAct: string;
  normEps: number;
  /** pad_token_id: RoBERTa's padding_idx for position ids. */
  padId: number;
  /** is_decoder: HF then masks attention causally. */
  causal: boolean;
  tieEmbeddings: boolean;
  initStd: number;
}

const PREFIX: Record<Variant, string> = { bert: 'bert.', roberta: 'roberta.' };

/** Canonical (transformers 4.57 save_pretrained) names of the head tensors. */
function headNames(v: Variant): { dense: string; norm: string; bias: string; altBias: string; decoder: string } {
  return v === 'bert'
    ? {
        dense: 'cls.predictions.transform.dense',
        norm: 'cls.predictions.transform.LayerNorm',
        bias: 'cls.predictions.bias',
        altBias: 'cls.predictions.decoder.bias',
        decoder: 'cls.predictions.decoder.weight',
      }
    : { dense: 'lm_head.dense', norm: 'lm_head.layer_norm', bias: 'lm_head.bias', altBias: 'lm_head.decoder.bias', decoder: 'lm_head.decoder.weight' };
}

/** Other spellings of a canonical name, most likely first. */
function variantsOf(v: Variant): (name: string) => string[] {
  const prefix = PREFIX[v];
  const head = headNames(v);
  return (name) => {
    const base = [name];
    if (name.endsWith('LayerNorm.weight')) base.push(name.replace(/LayerNorm\.weight$/, 'LayerNorm.gamma'));
    if (name.endsWith('LayerNorm.bias')) base.push(name.replace(/LayerNorm\.bias$/, 'LayerNorm.beta'));
    if (name === head.bias) base.push(head.altBias);
    const out = [...base];
    for (const b of base) if (b.startsWith(prefix)) out.push(b.slice(prefix.length));
    return out.slice(1);
  };
}

function parseConfig(c: HfConfig): BertConfig {
  const modelType = c.modelType().toLowerCase();
  const variant: Variant = modelType.includes('roberta') ? 'roberta' : 'bert';
  const posType = c.str('position_embedding_type', 'absolute');
  if (posType !== 'absolute') {
    throw new ModelFolderError(`${c.file}: "position_embedding_type" is "${posType}", which maria does not implement (only "absolute")`);
  }
  const hiddenSize = c.int('hidden_size');
  const numHeads = c.int('num_attention_heads');
  if (numHeads === 0 || hiddenSize % numHeads !== 0) {
    throw new ModelFolderError(`${c.file}: hidden_size (${hiddenSize}) is not a multiple of num_attention_heads (${numHeads})`);
  }
  const typeVocabSize = c.int('type_vocab_size', 2);
  if (typeVocabSize < 1) throw new ModelFolderError(`${c.file}: "type_vocab_size" must be at least 1 (token type 0 is added to every token)`);
  const positionRows = c.int('max_position_embeddings', 512);
  const padId = c.int('pad_token_id', variant === 'roberta' ? 1 : 0);
  // RoBERTa positions run from padding_idx + 1, so the last usable one is rows - 1.
  const maxPositions = variant === 'roberta' ? positionRows - padId - 1 : positionRows;
  if (maxPositions < 1) {
    throw new ModelFolderError(`${c.file}: "max_position_embeddings" (${positionRows}) leaves no positions after pad_token_id ${padId} (RoBERTa counts positions from padding_idx + 1)`);
  }
  const act = c.activation('hidden_act', 'gelu');
  return {
    variant,
    vocabSize: c.int('vocab_size'),
    hiddenSize,
    numLayers: c.int('num_hidden_layers'),
    maxPositions,
    numHeads,
    headDim: hiddenSize / numHeads,
    intermediateSize: c.int('intermediate_size'),
    typeVocabSize,
    positionRows,
    act,
    headAct: variant === 'roberta' ? 'gelu' : act,
    normEps: c.num('layer_norm_eps', 1e-12),
    padId,
    causal: c.bool('is_decoder', false),
    tieEmbeddings: c.tieWordEmbeddings(),
    initStd: c.num('initializer_range', 0.02),
  };
}

function params(c: BertConfig): ParamSpec[] {
  const normal = { kind: 'normal', std: c.initStd } as const;
  const ones = { kind: 'ones' } as const;
  const zeros = { kind: 'zeros' } as const;
  const D = c.hiddenSize;
  const pre = PREFIX[c.variant];
  const aliases = variantsOf(c.variant);
  const specs: ParamSpec[] = [];
  const spec = (name: string, shape: number[], init: Init): void => {
    specs.push({ name, shape, init, aliases: aliases(name) });
  };
  const lin = (name: string, out: number, inp: number): void => {
    spec(`${name}.weight`, [out, inp], normal);
    spec(`${name}.bias`, [out], zeros);
  };
  const norm = (name: string): void => {
    spec(`${name}.weight`, [D], ones);
    spec(`${name}.bias`, [D], zeros);
  };
  spec(`${pre}embeddings.word_embeddings.weight`, [c.vocabSize, D], normal);
  spec(`${pre}embeddings.position_embeddings.weight`, [c.positionRows, D], normal);
  spec(`${pre}embeddings.token_type_embeddings.weight`, [c.typeVocabSize, D], normal);
  norm(`${pre}embeddings.LayerNorm`);
  for (let i = 0; i < c.numLayers; i++) {
    const p = `${pre}encoder.layer.${i}`;
    lin(`${p}.attention.self.query`, D, D);
    lin(`${p}.attention.self.key`, D, D);
    lin(`${p}.attention.self.value`, D, D);
    lin(`${p}.attention.output.dense`, D, D);
    norm(`${p}.attention.output.LayerNorm`);
    lin(`${p}.intermediate.dense`, c.intermediateSize, D);
    lin(`${p}.output.dense`, D, c.intermediateSize);
    norm(`${p}.output.LayerNorm`);
  }
  const head = headNames(c.variant);
  lin(head.dense, D, D);
  norm(head.norm);
  if (!c.tieEmbeddings) spec(head.decoder, [c.vocabSize, D], normal);
  spec(head.bias, [c.vocabSize], zeros);
  return specs;
}

function forward(g: Graph, p: ParamSource, c: BertConfig, inputs: MaskedInputs) {
  const D = c.hiddenSize;
  const pre = PREFIX[c.variant];
  const get = (name: string, shape: number[]): Tensor => p.get(name, shape);
  const lin = (x: Tensor, name: string, out: number): Tensor => nn.linear(x, get(`${name}.weight`, [out, lastDim(x)]), get(`${name}.bias`, [out]));
  const norm = (x: Tensor, name: string): Tensor => nn.layerNorm(x, get(`${name}.weight`, [D]), get(`${name}.bias`, [D]), c.normEps);
  const act = nn.activation(c.act);

  const words = get(`${pre}embeddings.word_embeddings.weight`, [c.vocabSize, D]);
  const positions = get(`${pre}embeddings.position_embeddings.weight`, [c.positionRows, D]);
  const types = get(`${pre}embeddings.token_type_embeddings.weight`, [c.typeVocabSize, D]);
  // HF adds token type 0 to every token when no token_type_ids are given.
  let h = F.add(F.add(F.gather(words, inputs.ids), F.slice(types, 0, 0, 1)), F.gather(positions, inputs.positions));
  h = norm(h, `${pre}embeddings.LayerNorm`);

  const index = tokenIndices(inputs.ids);
  const mask = nn.attentionMask({ queryPositions: index, keyPositions: index, keyValid: inputs.attentionMask, causal: c.causal });
  const scale = 1 / Math.sqrt(c.headDim);
  for (let i = 0; i < c.numLayers; i++) {
    const l = `${pre}encoder.layer.${i}`;
    const q = nn.splitHeads(lin(h, `${l}.attention.self.query`, D), c.numHeads, c.headDim);
    const k = nn.splitHeads(lin(h, `${l}.attention.self.key`, D), c.numHeads, c.headDim);
    const v = nn.splitHeads(lin(h, `${l}.attention.self.value`, D), c.numHeads, c.headDim);
    const ctx = nn.mergeHeads(nn.attention(q, k, v, mask, scale));
    const a = norm(F.add(lin(ctx, `${l}.attention.output.dense`, D), h), `${l}.attention.output.LayerNorm`);
    const inter = act(lin(a, `${l}.intermediate.dense`, c.intermediateSize));
    h = norm(F.add(lin(inter, `${l}.output.dense`, D), a), `${l}.output.LayerNorm`);
  }

  const head = headNames(c.variant);
  const hidden = norm(nn.activation(c.headAct)(lin(h, head.dense, D)), head.norm);
  const decoder = c.tieEmbeddings ? words : get(head.decoder, [c.vocabSize, D]);
  const logits = nn.linear(hidden, decoder, get(head.bias, [c.vocabSize]));
  return { hidden, logits };
}

/** RoBERTa: padding_idx + running count of non-pad tokens; pad tokens get padding_idx (decided by id, not mask). */
function positionIds(c: BertConfig, ids: number[]): number[] {
  if (c.variant !== 'roberta') return ids.map((_, i) => i);
  let count = 0;
  return ids.map((id) => {
    if (id === c.padId) return c.padId;
    count += 1;
    return c.padId + count;
  });
}

export const bertFamily: MaskedFamily<BertConfig> = {
  kind: 'masked',
  modelTypes: ['bert', 'roberta', 'xlm-roberta'],
  parseConfig,
  params,
  forward,
  positionIds,
  outputHead: (c) => {
    const head = headNames(c.variant);
    return { weight: c.tieEmbeddings ? `${PREFIX[c.variant]}embeddings.word_embeddings.weight` : head.decoder, bias: head.bias };
  },
};
