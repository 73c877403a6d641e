// Running a causal LM: one compiled "step" graph serves both prefill (T tokens, P cached) and
// single-token decode (T = 1); the KV cache is carried between calls as ORT tensors.
import type ort from 'onnxruntime-node';
import { Graph, type Tensor } from '../engine/graph.js';
import { compile } from '../engine/onnx.js';
import { Session, type SessionOptions, OrtTensorCtor, int64Tensor } from '../engine/runtime.js';
import { HfConfig, ModelFolderError } from './config.js';
import type { BaseConfig, CausalFamily, CausalOutputs } from './family.js';
import { familyFor } from './registry.js';
import { loadParams, paramSource, type ParamMap } from './weights.js';

/**
 * Per-row state of an incremental decode. Keys and values live in preallocated buffers of
 * `capacity` slots per layer, [B, Hkv, capacity, d], fed to every step as they are; a step returns
 * only the new tokens' keys and values, which are written into the next free slots. So a decode
 * step never copies the cache; the capacity doubles (one copy) when it runs out.
 */
export interface KvCache {
  batch: number;
  /** Slots per row and layer. */
  capacity: number;
  /** Per layer, the key and value buffers [B, Hkv, capacity, d]. */
  layers: Array<{ k: Float32Array; v: Float32Array }>;
  /** [B][used slots]: whether each cached key is real (1) or padding (0). */
  valid: number[][];
  /** [B][used slots]: the position of each cached key. */
  positions: number[][];
  /** Per row: the position the next token gets. */
  next: number[];
}

/** Output rows of one call: per batch row, T rows of hidden and logits. */
export interface StepOutput {
  /** [B, T, D] flattened. */
  hidden: Float32Array;
  /** [B, T, V] flattened (empty when the runner was built without the LM head). */
  logits: Float32Array;
  T: number;
  /** Outputs added by a StepExtension. */
  extra: Record<string, ort.Tensor>;
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
  private constructor(
    readonly family: CausalFamily,
    readonly config: BaseConfig,
    readonly params: ParamMap,
    private readonly session: Session,
    readonly dir: string,
  ) {}

  /** Loads a Hugging Face causal-LM folder (config.json + safetensors). */
  static async load(dir: string, options: SessionOptions = {}, extension?: StepExtension): Promise<CausalLM> {
    const hf = HfConfig.load(dir);
    const family = familyFor(hf);
    if (family.kind !== 'causal') throw new ModelFolderError(`${hf.file}: model_type "${hf.modelType()}" is a masked LM, not a causal LM`);
    const config = family.parseConfig(hf);
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
    const g = new Graph();
    const ids = g.input('input_ids', ['B', 'T'], 'int64');
    const positions = g.input('position_ids', ['B', 'T'], 'int64');
    const keyValid = g.input('key_valid', ['B', 'P+T'], 'int64');
    const keyPositions = g.input('key_positions', ['B', 'P+T'], 'int64');
    const { kvHeads, headDim } = family.cacheShape(config);
    const past = Array.from({ length: config.numLayers }, (_, i) => ({
      k: g.input(`past_key_${i}`, ['B', kvHeads, 'P', headDim]),
      v: g.input(`past_value_${i}`, ['B', kvHeads, 'P', headDim]),
    }));
    const out = family.forward(g, paramSource(g, params, dir), config, { ids, positions, keyValid, keyPositions, past });
    const outputs: Record<string, Tensor> = { hidden: out.hidden };
    if (!extension || extension.keepLogits) outputs.logits = out.logits;
    if (extension) Object.assign(outputs, extension.build(g, out));
    out.present.forEach((p, i) => {
      outputs[`present_key_${i}`] = p.k;
      outputs[`present_value_${i}`] = p.v;
    });
    const session = await Session.create(compile(g, { outputs, name: `${dir}:step` }), options);
    return new CausalLM(family, config, params, session, dir);
  }

  /** An empty cache for `batch` rows. */
  newCache(batch: number, capacity = 64): KvCache {
    const { kvHeads, headDim } = this.family.cacheShape(this.config);
    const size = batch * kvHeads * capacity * headDim;
    return {
      batch,
      capacity,
      layers: Array.from({ length: this.config.numLayers }, () => ({ k: new Float32Array(size), v: new Float32Array(size) })),
      valid: Array.from({ length: batch }, () => []),
      positions: Array.from({ length: batch }, () => []),
      next: new Array(batch).fill(0),
    };
  }

  /** Grows the buffers to hold at least `needed` slots (doubling), copying each row's slots. */
  private reserve(cache: KvCache, needed: number): void {
    if (needed <= cache.capacity) return;
    let capacity = cache.capacity;
    while (capacity < needed) capacity *= 2;
    const { kvHeads, headDim } = this.family.cacheShape(this.config);
    const rows = cache.batch * kvHeads;
    const used = cache.valid[0].length;
    const grow = (old: Float32Array): Float32Array => {
      const out = new Float32Array(rows * capacity * headDim);
      for (let r = 0; r < rows; r++) out.set(old.subarray(r * cache.capacity * headDim, (r * cache.capacity + used) * headDim), r * capacity * headDim);
      return out;
    };
    cache.layers = cache.layers.map((l) => ({ k: grow(l.k), v: grow(l.v) }));
    cache.capacity = capacity;
  }

  /**
   * Appends tokens to every row of the cache and returns their hidden states and logits. Rows may
   * add different numbers of tokens (shorter rows are padded; the padding is masked out forever).
   */
  async step(cache: KvCache, rows: number[][], extraFeeds: Record<string, ort.Tensor> = {}): Promise<StepOutput> {
    if (rows.length !== cache.batch) throw new Error(`step: ${rows.length} rows for a cache of batch ${cache.batch}`);
    const T = Math.max(...rows.map((r) => r.length));
    if (T === 0) throw new Error('step: no tokens to add');
    const B = cache.batch;
    const limit = this.config.maxPositions;
    rows.forEach((r, b) => {
      if (cache.next[b] + r.length > limit) throw new Error(`sequence of ${cache.next[b] + r.length} tokens exceeds the model's context of ${limit}`);
    });
    const used = cache.valid[0].length;
    const C = cache.capacity;
    const { kvHeads, headDim } = this.family.cacheShape(this.config);
    const ids = new Array<number>(B * T);
    const pos = new Array<number>(B * T);
    const keyValid = new Array<number>(B * (C + T)).fill(0);
    const keyPositions = new Array<number>(B * (C + T)).fill(0);
    for (let b = 0; b < B; b++) {
      for (let s = 0; s < used; s++) {
        keyValid[b * (C + T) + s] = cache.valid[b][s];
        keyPositions[b * (C + T) + s] = cache.positions[b][s];
      }
      for (let t = 0; t < T; t++) {
        const real = t < rows[b].length;
        ids[b * T + t] = real ? rows[b][t] : 0;
        pos[b * T + t] = cache.next[b] + (real ? t : 0);
        keyValid[b * (C + T) + C + t] = real ? 1 : 0;
        keyPositions[b * (C + T) + C + t] = pos[b * T + t];
      }
    }
    const feeds: Record<string, ort.Tensor> = {
      ...extraFeeds,
      input_ids: int64Tensor(ids, [B, T]),
      position_ids: int64Tensor(pos, [B, T]),
      key_valid: int64Tensor(keyValid, [B, C + T]),
      key_positions: int64Tensor(keyPositions, [B, C + T]),
    };
    cache.layers.forEach((l, i) => {
      feeds[`past_key_${i}`] = new OrtTensorCtor('float32', l.k, [B, kvHeads, C, headDim]);
      feeds[`past_value_${i}`] = new OrtTensorCtor('float32', l.v, [B, kvHeads, C, headDim]);
    });
    const out = await this.session.run(feeds);

    // Commit: the new tokens' keys and values go into the next free slots.
    this.reserve(cache, used + T);
    const Cn = cache.capacity;
    cache.layers.forEach((l, i) => {
      const k = out[`present_key_${i}`].data as Float32Array;
      const v = out[`present_value_${i}`].data as Float32Array;
      for (let r = 0; r < B * kvHeads; r++) {
        l.k.set(k.subarray(r * T * headDim, (r + 1) * T * headDim), (r * Cn + used) * headDim);
        l.v.set(v.subarray(r * T * headDim, (r + 1) * T * headDim), (r * Cn + used) * headDim);
      }
    });
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        cache.valid[b].push(keyValid[b * (C + T) + C + t]);
        cache.positions[b].push(pos[b * T + t]);
      }
      cache.next[b] += rows[b].length;
    }
    const extra: Record<string, ort.Tensor> = {};
    for (const name of Object.keys(out)) {
      if (name !== 'hidden' && name !== 'logits' && !name.startsWith('present_')) extra[name] = out[name];
    }
    return { hidden: out.hidden.data as Float32Array, logits: out.logits ? (out.logits.data as Float32Array) : new Float32Array(0), T, extra };
  }

  /** Full-sequence forward of one row (a fresh cache). */
  async forward(ids: number[]): Promise<StepOutput> {
    return this.step(this.newCache(1), [ids]);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
