// What every model family provides. A family is one short file: it reads its config.json into a
// typed config, lists its parameters (for random initialisation and shape checks) and builds its
// forward graph over the engine's ops. Runners (causal-lm.ts, masked-lm.ts) do the rest.
import type { Graph, Tensor } from '../engine/graph.js';
import * as F from '../engine/ops.js';
import * as nn from '../engine/nn.js';
import type { HfConfig } from './config.js';

/** Where a family's graph gets its weights: by HF tensor name, shape-checked. */
export interface ParamSource {
  /** The parameter `name` with `shape`; throws a clear error if absent or shaped differently. */
  get(name: string, shape: number[]): Tensor;
}

/** How a parameter is initialised for training from scratch. */
export type Init = { kind: 'normal'; std: number } | { kind: 'ones' } | { kind: 'zeros' };

export interface ParamSpec {
  name: string;
  shape: number[];
  init: Init;
  /**
   * Other names a checkpoint may give this tensor (older transformers versions, a bare base model
   * saved without its prefix), most likely first. Loading stores the tensor under `name`, so a
   * family's graph asks for one spelling only.
   */
  aliases?: string[];
}

/** Fields every family config shares. */
export interface BaseConfig {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  maxPositions: number;
}

export interface CausalInputs {
  /** [B, T] int64 token ids. */
  ids: Tensor;
  /** [B, T] int64 positions of those tokens. */
  positions: Tensor;
  /** [B, S] int64, S = P + T: 1 where a key (cache slot or new token) exists, 0 for padding or an unused slot. */
  keyValid: Tensor;
  /** [B, S] int64 positions of every key (cache slots, then the new tokens). */
  keyPositions: Tensor;
  /**
   * Per layer, the KV cache (P slots, some unused): keys transposed, [B, Hkv, headDim, P] (see
   * nn.TransposedKeys), values [B, Hkv, P, headDim]; empty for no cache (training).
   */
  past: Array<{ k: Tensor; v: Tensor }>;
}

export interface CausalOutputs {
  /** [B, T, D]: the vector the output matrix consumes (after the final norm / head transform). */
  hidden: Tensor;
  /** [B, T, V]. */
  logits: Tensor;
  /** Per layer, the new tokens' keys [B, Hkv, headDim, T] and values [B, Hkv, T, headDim] (the runner caches them). */
  present: Array<{ k: Tensor; v: Tensor }>;
}

export interface MaskedInputs {
  /** [B, T] int64. */
  ids: Tensor;
  /** [B, T] int64 positions (families with special position rules get them from `positionIds`). */
  positions: Tensor;
  /** [B, T] int64: 1 for real tokens, 0 for padding. */
  attentionMask: Tensor;
}

export interface MaskedOutputs {
  /** [B, T, D]: the vector the decoder matrix consumes (after the prediction-head transform). */
  hidden: Tensor;
  logits: Tensor;
}

interface FamilyBase<C extends BaseConfig> {
  /** Names under which HF config.json declares this family (`model_type`). */
  modelTypes: string[];
  parseConfig(config: HfConfig): C;
  params(config: C): ParamSpec[];
  /** The output matrix ([V, D]) and bias the hidden state feeds, by tensor name (for MARIA's head init). */
  outputHead(config: C): { weight: string; bias: string | null };
}

export interface CausalFamily<C extends BaseConfig = BaseConfig> extends FamilyBase<C> {
  kind: 'causal';
  /** KV cache geometry. */
  cacheShape(config: C): { kvHeads: number; headDim: number };
  forward(g: Graph, p: ParamSource, config: C, inputs: CausalInputs): CausalOutputs;
}

export interface MaskedFamily<C extends BaseConfig = BaseConfig> extends FamilyBase<C> {
  kind: 'masked';
  forward(g: Graph, p: ParamSource, config: C, inputs: MaskedInputs): MaskedOutputs;
  /** Position ids for a row of ids (default 0..T-1; RoBERTa offsets past padding). */
  positionIds?(config: C, ids: number[], mask: number[]): number[];
}

export type Family = CausalFamily | MaskedFamily;

/** The alias of a prefixed tensor name in a checkpoint saved from the bare base model, which drops `prefix`. */
export function barePrefixAlias(name: string, prefix: string): Pick<ParamSpec, 'aliases'> {
  return name.startsWith(prefix) ? { aliases: [name.slice(prefix.length)] } : {};
}

/**
 * The output product at chosen rows only: `rows` [B, K] int64 holds flat row indices b·T + t of
 * hidden [B, T, D]; returns logits [B, K, V]. Runners use it instead of the family's own [B, T, V]
 * logits (which then drop out of the compiled graph) when a call needs a few positions: the V×D
 * product is a large share of a small model's pass.
 */
export function logitsAtRows<C extends BaseConfig>(family: FamilyBase<C>, config: C, p: ParamSource, hidden: Tensor, rows: Tensor): Tensor {
  const picked = hiddenAtRows(hidden, rows, config.hiddenSize);
  const head = family.outputHead(config);
  return nn.linear(picked, p.get(head.weight, [config.vocabSize, config.hiddenSize]), head.bias ? p.get(head.bias, [config.vocabSize]) : null);
}

/** The rows of hidden [B, T, D] at flat indices `rows` [B, K] (b·T + t): [B, K, D]. */
export function hiddenAtRows(hidden: Tensor, rows: Tensor, dim: number): Tensor {
  return F.gather(F.reshape(hidden, [-1, dim]), rows);
}
