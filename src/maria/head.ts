// MARIA's decoder head: logits_i = W3 · [h_mlm[i] ; h_ar[i-1]] + b3 over the AR's vocabulary.
// It is compiled into the AR's step graph, so one ORT call advances the KV cache and yields the
// infilling distribution. Initialised as the product of experts W3 = [W1/2, W2/2], b3 = (b1+b2)/2.
import type { Graph, Tensor } from '../engine/graph.js';
import * as F from '../engine/ops.js';
import * as nn from '../engine/nn.js';
import type { StepExtension } from '../models/causal-lm.js';
import type { CausalOutputs } from '../models/family.js';
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

/** Builds the head's logits from MLM features and AR features ([..., dM] and [..., dA]). */
export function headLogits(hMlm: Tensor, hAr: Tensor, weight: Tensor, bias: Tensor): Tensor {
  return nn.linear(F.concat([hMlm, hAr], -1), weight, bias);
}

/**
 * The step-graph extension: inputs `head_index` [K] (which of the T new positions to decode at)
 * and `mlm_hidden` [B, K, dM] (the MLM features of the tokens those positions predict); output
 * `maria_logits` [B, K, V].
 */
export function headExtension(head: HeadWeights, keepLogits = false): StepExtension {
  return {
    keepLogits,
    build(g: Graph, out: CausalOutputs): Record<string, Tensor> {
      const index = g.input('head_index', ['K'], 'int64');
      const mlmHidden = g.input('mlm_hidden', ['B', 'K', head.mlmHidden]);
      const weight = g.param('maria.head.weight', head.weight, [head.vocabSize, head.mlmHidden + head.arHidden]);
      const bias = g.param('maria.head.bias', head.bias, [head.vocabSize]);
      // Pick the K positions along the time axis: [B,T,D] → [T,B,D] → [K,B,D] → [B,K,D].
      const picked = F.transpose(F.gather(F.transpose(out.hidden, [1, 0, 2]), index), [1, 0, 2]);
      return { maria_logits: headLogits(mlmHidden, picked, weight, bias) };
    },
  };
}
