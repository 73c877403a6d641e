// A small GPT-style causal transformer written over the engine's ops, for tests and benchmarks:
// token embedding, pre-norm blocks (causal multi-head attention with rotary positions, GELU
// MLP), a final norm and an output projection tied to the embedding.
import { Graph, Tensor } from './graph.js';
import * as F from './ops.js';
import * as nn from './nn.js';
import { mulberry32, normal } from './random.js';

export interface ToyConfig {
  vocab: number;
  d: number;
  heads: number;
  layers: number;
  /** MLP hidden size; default 4·d. */
  mlp?: number;
  /** Initialisation seed; default 0. */
  seed?: number;
  /** Rotary base; default 10000. */
  theta?: number;
}

export interface ToyModel {
  graph: Graph;
  /** [B, T] int64 token ids. */
  ids: Tensor;
  /** [B, T] int64 next-token targets (negative = ignored). */
  targets: Tensor;
  /** [B, T, vocab]. */
  logits: Tensor;
  /** Mean cross-entropy, scalar. */
  loss: Tensor;
  /** Number of trained values. */
  paramCount: number;
}

interface KvCache {
  /** Past keys and values per layer, [B, heads, P, headDim], already rotated. */
  past: Array<{ k: Tensor; v: Tensor }>;
  /** Filled with the present keys and values (past + new) per layer. */
  present: Array<{ k: Tensor; v: Tensor }>;
}

/**
 * The shared body: parameters are created in the same order with the same names whatever the
 * variant, so weights trained with one graph load into the other.
 */
function toyBody(g: Graph, cfg: ToyConfig, ids: Tensor, positions: Tensor, cache: KvCache | null): { logits: Tensor; paramCount: number } {
  const { vocab, d, heads, layers } = cfg;
  const hidden = cfg.mlp ?? 4 * d;
  const headDim = d / heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new Error(`toy: d=${d} must split into ${heads} heads of even size`);
  const randn = normal(mulberry32(cfg.seed ?? 0));
  let count = 0;
  const param = (name: string, shape: number[], init: 'normal' | 'ones' | 'zeros', std = 0.02): Tensor => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (init === 'ones') data.fill(1);
    else if (init === 'normal') for (let i = 0; i < n; i++) data[i] = randn() * std;
    count += n;
    return g.param(name, data, shape);
  };
  const norm = (prefix: string, x: Tensor): Tensor =>
    nn.layerNorm(x, param(`${prefix}.weight`, [d], 'ones'), param(`${prefix}.bias`, [d], 'zeros'), 1e-5);

  const wte = param('wte', [vocab, d], 'normal');
  const { cos, sin } = nn.rotaryTables(positions, headDim, cfg.theta ?? 10000);
  const residStd = 0.02 / Math.sqrt(2 * layers);
  let mask: Tensor | null = cache ? null : nn.attentionMask({ queryPositions: positions, keyPositions: positions, causal: true });

  let x = F.gather(wte, ids);
  for (let l = 0; l < layers; l++) {
    const p = `blocks.${l}`;
    const h = norm(`${p}.ln1`, x);
    const q = nn.applyRotary(nn.splitHeads(nn.linear(h, param(`${p}.attn.q.weight`, [d, d], 'normal')), heads, headDim), cos, sin);
    let k = nn.applyRotary(nn.splitHeads(nn.linear(h, param(`${p}.attn.k.weight`, [d, d], 'normal')), heads, headDim), cos, sin);
    let v = nn.splitHeads(nn.linear(h, param(`${p}.attn.v.weight`, [d, d], 'normal')), heads, headDim);
    if (cache) {
      k = F.concat([cache.past[l].k, k], 2);
      v = F.concat([cache.past[l].v, v], 2);
      cache.present.push({ k, v });
      if (!mask) {
        const keyPositions = F.reshape(F.arange(g, k.dim(2)), [1, k.dim(2)]);
        mask = nn.attentionMask({ queryPositions: positions, keyPositions, causal: true });
      }
    }
    const att = nn.mergeHeads(nn.attention(q, k, v, mask!, 1 / Math.sqrt(headDim)));
    x = F.add(x, nn.linear(att, param(`${p}.attn.o.weight`, [d, d], 'normal', residStd)));
    const h2 = norm(`${p}.ln2`, x);
    const up = nn.gelu(nn.linear(h2, param(`${p}.mlp.up.weight`, [hidden, d], 'normal')));
    x = F.add(x, nn.linear(up, param(`${p}.mlp.down.weight`, [d, hidden], 'normal', residStd)));
  }
  return { logits: nn.linear(norm('ln_f', x), wte), paramCount: count };
}

/** Builds the training/scoring model in a fresh graph with seeded GPT-2-style initialisation. */
export function buildToyLM(cfg: ToyConfig): ToyModel {
  const g = new Graph();
  const ids = g.input('input_ids', ['B', 'T'], 'int64');
  const targets = g.input('targets', ['B', 'T'], 'int64');
  const positions = F.reshape(F.arange(g, 'T'), [1, 'T']);
  const { logits, paramCount } = toyBody(g, cfg, ids, positions, null);
  const loss = nn.crossEntropy(logits, targets);
  return { graph: g, ids, targets, logits, loss, paramCount };
}

export interface ToyDecoder {
  graph: Graph;
  /** Outputs to compile: logits [B, T, vocab] and present.{l}.key / present.{l}.value. */
  outputs: Record<string, Tensor>;
  /** Inputs: input_ids, position_ids [B, T] and past.{l}.key / past.{l}.value [B, heads, P, headDim]. */
  inputNames: string[];
}

/**
 * The same model as an incremental decoder with a KV cache: new tokens at `position_ids`
 * attend to the cached keys and values (passed in) and their own; the extended cache is output.
 * The past length P must equal the first new position.
 */
export function buildToyDecoder(cfg: ToyConfig): ToyDecoder {
  const g = new Graph();
  const headDim = cfg.d / cfg.heads;
  const ids = g.input('input_ids', ['B', 'T'], 'int64');
  const positions = g.input('position_ids', ['B', 'T'], 'int64');
  const past = Array.from({ length: cfg.layers }, (_, l) => ({
    k: g.input(`past.${l}.key`, ['B', cfg.heads, 'P', headDim]),
    v: g.input(`past.${l}.value`, ['B', cfg.heads, 'P', headDim]),
  }));
  const cache: KvCache = { past, present: [] };
  const { logits } = toyBody(g, cfg, ids, positions, cache);
  const outputs: Record<string, Tensor> = { logits };
  cache.present.forEach(({ k, v }, l) => {
    outputs[`present.${l}.key`] = k;
    outputs[`present.${l}.value`] = v;
  });
  return { graph: g, outputs, inputNames: g.inputs().map((t) => t.leaf!.name) };
}

/**
 * Training FLOPs of one step of the toy model over `batch` sequences of `seq` tokens:
 * 6·N·tokens for the matrix products of every parameter (forward 2, backward 4; N counts the
 * tied embedding once, as the output projection; the embedding lookup is free) plus
 * 12·layers·seq²·d per sequence for attention scores and weighted values (forward 4·T²·d,
 * backward 8·T²·d, without causal savings).
 */
export function toyTrainFlops(cfg: ToyConfig, batch: number, seq: number): number {
  const hidden = cfg.mlp ?? 4 * cfg.d;
  const matrixParams = cfg.vocab * cfg.d + cfg.layers * (4 * cfg.d * cfg.d + 2 * cfg.d * hidden);
  return 6 * matrixParams * batch * seq + 12 * cfg.layers * seq * seq * cfg.d * batch;
}
