// MARIA's decoder head: logits_i = W3 · [h_mlm[i] ; h_ar[i-1]] + b3 over the AR's vocabulary.
// Inference runs it split, W3 = [W_M, W_A]: the MLM half (W_M·h_mlm + b3) in the MLM's graph, once
// per text for every masked position, the AR half in the AR's step graph, so one ORT call advances
// the KV cache and yields the infilling distribution. Training (train-head.ts) uses the whole W3.
// Initialised as the product of experts W3 = [W1/2, W2/2], b3 = (b1+b2)/2.
import type { Graph, Tensor } from '../engine/graph.js';
import * as F from '../engine/ops.js';
import * as nn from '../engine/nn.js';
import type { StepExtension } from '../models/causal-lm.js';
import { hiddenAtRows, type CausalOutputs, type MaskedOutputs } from '../models/family.js';
import type { EncoderExtension } from '../models/masked-lm.js';
import type { ParamMap } from '../models/weights.js';

/** The head's weights: W3 [V, dMlm + dAr] (MLM columns first), b3 [V]. */
export interface HeadWeights {
  weight: Float32Array;
  bias: Float32Array;
  vocabSize: number;
  mlmHidden: number;
  arHidden: number;
}

/** An output matrix and bias read from a model's parameters. */
export interface ExpertHead {
  weight: Float32Array;
  bias: Float32Array | null;
  rows: number;
  dim: number;
}

/** The output matrix [rows, dim] and bias a model's hidden state feeds. */
export function expertHead(params: ParamMap, names: { weight: string; bias: string | null }): ExpertHead {
  const w = params.get(names.weight);
  if (!w) throw new Error(`output matrix "${names.weight}" not found in the model's weights`);
  const b = names.bias ? params.get(names.bias) : undefined;
  return { weight: w.data, bias: b ? b.data : null, rows: w.shape[0], dim: w.shape[1] };
}

/**
 * The product-of-experts initialisation. `arToMlm[v]` is the MLM row of AR token v (−1 when the MLM
 * lacks it: that token then gets only the AR's half, so the MLM expert is uniform over it).
 */
export function productOfExperts(mlm: ExpertHead, ar: ExpertHead, arToMlm: Int32Array | null): HeadWeights {
  const V = ar.rows;
  const dM = mlm.dim;
  const dA = ar.dim;
  const d = dM + dA;
  const weight = new Float32Array(V * d);
  const bias = new Float32Array(V);
  for (let v = 0; v < V; v++) {
    const m = arToMlm ? arToMlm[v] : v;
    if (m >= 0 && m < mlm.rows) {
      for (let j = 0; j < dM; j++) weight[v * d + j] = mlm.weight[m * dM + j] / 2;
      bias[v] += (mlm.bias ? mlm.bias[m] : 0) / 2;
    }
    for (let j = 0; j < dA; j++) weight[v * d + dM + j] = ar.weight[v * dA + j] / 2;
    bias[v] += (ar.bias ? ar.bias[v] : 0) / 2;
  }
  return { weight, bias, vocabSize: V, mlmHidden: dM, arHidden: dA };
}

/** Builds the head's logits from MLM features and AR features ([..., dM] and [..., dA]) (training). */
export function headLogits(hMlm: Tensor, hAr: Tensor, weight: Tensor, bias: Tensor): Tensor {
  return nn.linear(F.concat([hMlm, hAr], -1), weight, bias);
}

/** Columns [from, from + n) of W3 as a [V, n] matrix. */
function headColumns(head: HeadWeights, from: number, n: number): Float32Array {
  const d = head.mlmHidden + head.arHidden;
  const out = new Float32Array(head.vocabSize * n);
  for (let v = 0; v < head.vocabSize; v++) out.set(head.weight.subarray(v * d + from, v * d + from + n), v * n);
  return out;
}

/**
 * The head is split W3 = [W_M, W_A] so that its MLM half runs once per text, in the MLM's graph,
 * as one [K, dM]×[dM, V] product over every masked position: each AR step then reads only W_A.
 * This encoder extension takes input `head_rows` [B, K] (flat rows b·T + t of the MLM's row, the
 * masked positions) and outputs `maria_mlm_logits` [B, K, V] = W_M·h_mlm + b3 there.
 */
export function mlmHeadExtension(head: HeadWeights): EncoderExtension {
  return {
    build(g: Graph, out: MaskedOutputs): Record<string, Tensor> {
      const rows = g.input('head_rows', ['B', 'K'], 'int64');
      const weight = g.param('maria.head.mlm_weight', headColumns(head, 0, head.mlmHidden), [head.vocabSize, head.mlmHidden]);
      const bias = g.param('maria.head.bias', head.bias, [head.vocabSize]);
      return { maria_mlm_logits: nn.linear(hiddenAtRows(out.hidden, rows, head.mlmHidden), weight, bias) };
    },
  };
}

/**
 * The step-graph extension, the head's AR half: inputs `head_index` [K] (which of the T new
 * positions to decode at) and `mlm_logits` [B, K, V] (mlmHeadExtension's output for the tokens
 * those positions predict); output `maria_logits` [B, K, V] = mlm_logits + W_A·h_ar.
 */
export function headExtension(head: HeadWeights, keepLogits = false): StepExtension {
  return {
    keepLogits,
    build(g: Graph, out: CausalOutputs): Record<string, Tensor> {
      const index = g.input('head_index', ['K'], 'int64');
      const mlmLogits = g.input('mlm_logits', ['B', 'K', head.vocabSize]);
      const weight = g.param('maria.head.ar_weight', headColumns(head, head.mlmHidden, head.arHidden), [head.vocabSize, head.arHidden]);
      // Pick the K positions along the time axis: [B,T,D] → [T,B,D] → [K,B,D] → [B,K,D].
      const picked = F.transpose(F.gather(F.transpose(out.hidden, [1, 0, 2]), index), [1, 0, 2]);
      return { maria_logits: F.add(mlmLogits, nn.linear(picked, weight)) };
    },
  };
}
