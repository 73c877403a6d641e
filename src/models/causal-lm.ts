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

/** Per-row state of an incremental decode. */
export interface KvCache {
  batch: number;
  /** Per layer, [B, Hkv, P, d]. */
  layers: Array<{ k: ort.Tensor; v: ort.Tensor }>;
  /** [B][P]: whether each cached key is real (1) or padding (0). */
  valid: number[][];
  /** [B][P]: the position of each cached key. */
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
  newCache(batch: number): KvCache {
    const { kvHeads, headDim } = this.family.cacheShape(this.config);
    const empty = (): ort.Tensor => new OrtTensorCtor('float32', new Float32Array(0), [batch, kvHeads, 0, headDim]);
    return {
      batch,
      layers: Array.from({ length: this.config.numLayers }, () => ({ k: empty(), v: empty() })),
      valid: Array.from({ length: batch }, () => []),
      positions: Array.from({ length: batch }, () => []),
      next: new Array(batch).fill(0),
    };
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
    const P = cache.valid[0].length;
    const ids: number[] = [];
    const pos: number[] = [];
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const real = t < rows[b].length;
        ids.push(real ? rows[b][t] : 0);
        pos.push(cache.next[b] + (real ? t : 0));
        cache.valid[b].push(real ? 1 : 0);
        cache.positions[b].push(cache.next[b] + (real ? t : 0));
      }
      cache.next[b] += rows[b].length;
      const limit = this.config.maxPositions;
      if (cache.next[b] > limit) throw new Error(`sequence of ${cache.next[b]} tokens exceeds the model's context of ${limit}`);
    }
    const feeds: Record<string, ort.Tensor> = {
      ...extraFeeds,
      input_ids: int64Tensor(ids, [B, T]),
      position_ids: int64Tensor(pos, [B, T]),
      key_valid: int64Tensor(cache.valid.flat(), [B, P + T]),
      key_positions: int64Tensor(cache.positions.flat(), [B, P + T]),
    };
    cache.layers.forEach((l, i) => {
      feeds[`past_key_${i}`] = l.k;
      feeds[`past_value_${i}`] = l.v;
    });
    const out = await this.session.run(feeds);
    cache.layers = cache.layers.map((_, i) => ({ k: out[`present_key_${i}`], v: out[`present_value_${i}`] }));
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
