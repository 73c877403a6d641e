// Running a causal LM: one compiled "step" graph serves both prefill (T tokens, P cached) and
// single-token decode (T = 1); the KV cache is carried between calls as ORT tensors.
import type ort from 'onnxruntime-node';
import { Graph, type Tensor } from '../engine/graph.js';
import { compile, type CompiledModel } from '../engine/onnx.js';
import { Session, type SessionOptions, OrtTensorCtor, int64Tensor } from '../engine/runtime.js';
import { logitsAtRows, type BaseConfig, type CausalFamily, type CausalOutputs } from './family.js';
import { readFamilyConfig } from './registry.js';
import { cacheDims, commitStep, newKvCache, stepFeeds, type CacheShape, type KvCache } from './kv-cache.js';
import { loadParams, paramSource, type ParamMap } from './weights.js';

export type { KvCache } from './kv-cache.js';

/** Output rows of one call: per batch row, T rows of hidden and logits. */
export interface StepOutput {
  /** [B, T, D] flattened. */
  hidden: Float32Array;
  /** [B, logitRows, V] flattened (empty when the runner was built without the LM head). */
  logits: Float32Array;
  T: number;
  /** Outputs added by a StepExtension. */
  extra: Record<string, ort.Tensor>;
  /** Logit rows per batch row: T, or 1 for a step run with `logits: 'last'`. */
  logitRows: number;
}

/** Options of one step. */
export interface StepOptions {
  /**
   * Which positions get logits: 'all' (default; [B, T, V]) or 'last', only each row's last new
   * token ([B, 1, V]) — a prompt's prefill then skips T−1 of the V×D output products.
   */
  logits?: 'all' | 'last';
}

/**
 * Extra computation compiled into the step graph, on top of the causal LM (MARIA's decoder head):
 * it may declare more graph inputs and returns more outputs, all in the same ORT call.
 */
export interface StepExtension {
  build(g: Graph, out: CausalOutputs): Record<string, Tensor>;
  /** Whether to keep computing the LM's own logits (a V×D product per token). */
  keepLogits: boolean;
}

export class CausalLM {
  /** Whether the graph computes the LM's logits (and so takes logits_index): fixed at compile time. */
  private readonly hasLogits: boolean;

  private constructor(
    readonly family: CausalFamily,
    readonly config: BaseConfig,
    readonly params: ParamMap,
    private readonly session: Session,
    readonly dir: string,
  ) {
    this.hasLogits = session.inputNames.includes('logits_index');
  }

  /** Loads a Hugging Face causal-LM folder (config.json + safetensors). */
  static async load(dir: string, options: SessionOptions = {}, extension?: StepExtension): Promise<CausalLM> {
    const { family, config } = readFamilyConfig(dir, 'causal');
    return CausalLM.fromParams(family, config, loadParams(dir, family.params(config)), options, dir, extension);
  }

  /** Builds a runner from weights already in memory (random models, freshly trained ones). */
  static async fromParams(
    family: CausalFamily,
    config: BaseConfig,
    params: ParamMap,
    options: SessionOptions = {},
    dir = '<memory>',
    extension?: StepExtension,
  ): Promise<CausalLM> {
    const session = await Session.create(CausalLM.compileStep(family, config, params, dir, extension), options);
    return new CausalLM(family, config, params, session, dir);
  }

  /**
   * The step graph as ONNX (weights as initializers), without a session: inputs input_ids,
   * position_ids [B, T], key_valid, key_positions [B, P+T], past_key_i [B, Hkv, d, P] (keys
   * transposed), past_value_i [B, Hkv, P, d], and (unless the extension drops the LM's logits) logits_index [B, K], the
   * flat rows b·T + t of the positions to compute logits for; outputs hidden, logits [B, K, V],
   * the extension's outputs, present_key_i [B, Hkv, d, T], present_value_i [B, Hkv, T, d]. The in-browser
   * runner uses it as is.
   */
  static compileStep(family: CausalFamily, config: BaseConfig, params: ParamMap, dir = '<memory>', extension?: StepExtension): CompiledModel {
    const g = new Graph();
    const ids = g.input('input_ids', ['B', 'T'], 'int64');
    const positions = g.input('position_ids', ['B', 'T'], 'int64');
    const keyValid = g.input('key_valid', ['B', 'P+T'], 'int64');
    const keyPositions = g.input('key_positions', ['B', 'P+T'], 'int64');
    const { kvHeads, headDim } = family.cacheShape(config);
    const past = Array.from({ length: config.numLayers }, (_, i) => ({
      k: g.input(`past_key_${i}`, ['B', kvHeads, headDim, 'P']),
      v: g.input(`past_value_${i}`, ['B', kvHeads, 'P', headDim]),
    }));
    const source = paramSource(g, params, dir);
    const out = family.forward(g, source, config, { ids, positions, keyValid, keyPositions, past });
    const outputs: Record<string, Tensor> = { hidden: out.hidden };
    if (!extension || extension.keepLogits) {
      // The output product runs only at the requested rows (the family's own [B, T, V] logits are
      // left out of the graph), so a prefill that needs one row of logits pays for one.
      outputs.logits = logitsAtRows(family, config, source, out.hidden, g.input('logits_index', ['B', 'K'], 'int64'));
    }
    if (extension) Object.assign(outputs, extension.build(g, out));
    out.present.forEach((p, i) => {
      outputs[`present_key_${i}`] = p.k;
      outputs[`present_value_${i}`] = p.v;
    });
    return compile(g, { outputs, name: `${dir}:step` });
  }

  /** The KV cache geometry. */
  get cacheShape(): CacheShape {
    return { numLayers: this.config.numLayers, ...this.family.cacheShape(this.config) };
  }

  /**
   * An empty cache for `batch` rows. Every slot is fed to every step, so it starts with one and
   * grows to fit the first step (a prompt's prefill) instead of attending to empty ones.
   */
  newCache(batch: number, capacity = 1): KvCache {
    return newKvCache(this.cacheShape, batch, capacity);
  }

  /**
   * Appends tokens to every row of the cache and returns their hidden states and logits. Rows may
   * add different numbers of tokens (shorter rows are padded; the padding is masked out forever).
   */
  async step(cache: KvCache, rows: number[][], extraFeeds: Record<string, ort.Tensor> = {}, options: StepOptions = {}): Promise<StepOutput> {
    const shape = this.cacheShape;
    const f = stepFeeds(cache, rows, this.config.maxPositions);
    const { B, T, C } = f;
    const last = options.logits === 'last';
    const logitRows = last ? 1 : T;
    const feeds: Record<string, ort.Tensor> = {
      ...extraFeeds,
      input_ids: int64Tensor(f.ids, [B, T]),
      position_ids: int64Tensor(f.positions, [B, T]),
      key_valid: int64Tensor(f.keyValid, [B, C + T]),
      key_positions: int64Tensor(f.keyPositions, [B, C + T]),
    };
    if (this.hasLogits) {
      const index = new BigInt64Array(B * logitRows);
      for (let b = 0; b < B; b++) {
        if (last) index[b] = BigInt(b * T + Math.max(rows[b].length, 1) - 1);
        else for (let t = 0; t < T; t++) index[b * T + t] = BigInt(b * T + t);
      }
      feeds.logits_index = int64Tensor(index, [B, logitRows]);
    }
    const dims = cacheDims(shape, B, C);
    cache.layers.forEach((l, i) => {
      feeds[`past_key_${i}`] = new OrtTensorCtor('float32', l.k, dims.keys);
      feeds[`past_value_${i}`] = new OrtTensorCtor('float32', l.v, dims.values);
    });
    const out = await this.session.run(feeds);
    // Commit: the new tokens' keys and values go into the next free slots.
    commitStep(cache, shape, f, rows, (i) => ({ k: out[`present_key_${i}`].data as Float32Array, v: out[`present_value_${i}`].data as Float32Array }));
    const extra: Record<string, ort.Tensor> = {};
    for (const name of Object.keys(out)) {
      if (name !== 'hidden' && name !== 'logits' && !name.startsWith('present_')) extra[name] = out[name];
    }
    return { hidden: out.hidden.data as Float32Array, logits: out.logits ? (out.logits.data as Float32Array) : new Float32Array(0), T, extra, logitRows };
  }

  /** Full-sequence forward of one row (a fresh cache). */
  async forward(ids: number[]): Promise<StepOutput> {
    return this.step(this.newCache(1), [ids]);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
