// Running a masked LM: one bidirectional pass over a padded batch.
import type ort from 'onnxruntime-node';
import { Graph, type Tensor } from '../engine/graph.js';
import { compile, type CompiledModel } from '../engine/onnx.js';
import { Session, type SessionOptions, int64Tensor } from '../engine/runtime.js';
import { logitsAtRows, type BaseConfig, type MaskedFamily, type MaskedOutputs } from './family.js';
import { readFamilyConfig } from './registry.js';
import { loadParams, paramSource, type ParamMap } from './weights.js';

export interface MaskedOutput {
  /** [B, T, D] flattened: the vector the decoder matrix consumes. */
  hidden: Float32Array;
  /** [B, K, V] flattened: K = T, or the positions asked for by `logitsAt` (empty when the runner was built without logits). */
  logits: Float32Array;
  B: number;
  T: number;
  /** Logit rows per batch row (K). */
  logitRows: number;
  /** Outputs added by an EncoderExtension. */
  extra: Record<string, ort.Tensor>;
}

/**
 * Extra computation compiled into the encode graph, on top of the masked LM (MARIA's MLM half of
 * the head): it may declare more graph inputs and returns more outputs, all in the same ORT call.
 */
export interface EncoderExtension {
  build(g: Graph, out: MaskedOutputs): Record<string, Tensor>;
}

/** What the encode graph computes besides the hidden states. */
export interface EncoderOptions {
  /**
   * The LM's own logits at the rows of input logits_index (default true); false stops the graph at
   * the hidden state (features for MARIA), skipping the V×D output product.
   */
  logits?: boolean;
  extension?: EncoderExtension;
}

export class MaskedLM {
  /** Whether the graph computes the LM's logits (and so takes logits_index): fixed at compile time. */
  private readonly hasLogits: boolean;

  private constructor(
    readonly family: MaskedFamily,
    readonly config: BaseConfig,
    readonly params: ParamMap,
    private readonly session: Session,
    readonly dir: string,
  ) {
    this.hasLogits = session.inputNames.includes('logits_index');
  }

  /** Loads a Hugging Face masked-LM folder (config.json + safetensors). */
  static async load(dir: string, options: SessionOptions = {}, what: EncoderOptions = {}): Promise<MaskedLM> {
    const { family, config } = readFamilyConfig(dir, 'masked');
    return MaskedLM.fromParams(family, config, loadParams(dir, family.params(config)), options, dir, what);
  }

  /** Builds a runner from weights already in memory. */
  static async fromParams(
    family: MaskedFamily,
    config: BaseConfig,
    params: ParamMap,
    options: SessionOptions = {},
    dir = '<memory>',
    what: EncoderOptions = {},
  ): Promise<MaskedLM> {
    const session = await Session.create(MaskedLM.compileEncoder(family, config, params, dir, what), options);
    return new MaskedLM(family, config, params, session, dir);
  }

  /**
   * The encode graph as ONNX (weights as initializers), without a session: inputs input_ids,
   * position_ids, attention_mask [B, T]; outputs hidden [B, T, D] and (unless `what.logits` is
   * false) logits [B, K, V] at the flat rows b·T + t of input logits_index [B, K], plus the
   * extension's inputs and outputs. The in-browser runner uses it as is.
   */
  static compileEncoder(family: MaskedFamily, config: BaseConfig, params: ParamMap, dir = '<memory>', what: EncoderOptions = {}): CompiledModel {
    const g = new Graph();
    const ids = g.input('input_ids', ['B', 'T'], 'int64');
    const positions = g.input('position_ids', ['B', 'T'], 'int64');
    const attentionMask = g.input('attention_mask', ['B', 'T'], 'int64');
    const source = paramSource(g, params, dir);
    const out = family.forward(g, source, config, { ids, positions, attentionMask });
    const outputs: Record<string, Tensor> = { hidden: out.hidden };
    if (what.logits !== false) outputs.logits = logitsAtRows(family, config, source, out.hidden, g.input('logits_index', ['B', 'K'], 'int64'));
    if (what.extension) Object.assign(outputs, what.extension.build(g, out));
    return compile(g, { outputs, name: `${dir}:encode` });
  }

  /** Position ids of one row, by the family's rule (default 0..T-1). */
  positionIds(ids: number[], mask: number[]): number[] {
    return this.family.positionIds ? this.family.positionIds(this.config, ids, mask) : ids.map((_, i) => i);
  }

  /**
   * Encodes a batch of rows; shorter rows are right-padded with `padId` and masked out.
   * `masks` overrides the attention mask per row (1 = real token). `logitsAt` lists, per row, the
   * positions that need logits (rows may list different numbers; shorter lists are padded with
   * their last position): logits then come as [B, K, V] in that order, K the longest list.
   * `feeds` are the inputs an extension declared.
   */
  async forward(rows: number[][], options: { padId?: number; masks?: number[][]; logitsAt?: number[][]; feeds?: Record<string, ort.Tensor> } = {}): Promise<MaskedOutput> {
    const B = rows.length;
    const T = Math.max(...rows.map((r) => r.length));
    if (B === 0 || T === 0) throw new Error('forward: empty input');
    if (T > this.config.maxPositions) throw new Error(`sequence of ${T} tokens exceeds the model's context of ${this.config.maxPositions}`);
    const padId = options.padId ?? 0;
    const ids: number[] = [];
    const mask: number[] = [];
    const pos: number[] = [];
    rows.forEach((r, b) => {
      const rowIds = [...r, ...new Array(T - r.length).fill(padId)];
      const rowMask = options.masks?.[b] ? [...options.masks[b], ...new Array(T - options.masks[b].length).fill(0)] : rowIds.map((_, t) => (t < r.length ? 1 : 0));
      ids.push(...rowIds);
      mask.push(...rowMask);
      pos.push(...this.positionIds(rowIds, rowMask));
    });
    const feeds: Record<string, ort.Tensor> = {
      ...options.feeds,
      input_ids: int64Tensor(ids, [B, T]),
      position_ids: int64Tensor(pos, [B, T]),
      attention_mask: int64Tensor(mask, [B, T]),
    };
    let K = T;
    if (this.hasLogits) {
      const at = options.logitsAt;
      if (at && at.length !== B) throw new Error(`forward: logitsAt has ${at.length} rows for a batch of ${B}`);
      K = at ? Math.max(1, ...at.map((r) => r.length)) : T;
      const index: number[] = [];
      for (let b = 0; b < B; b++) {
        const want = at ? at[b] : null;
        for (let k = 0; k < K; k++) {
          const t = want ? (want[Math.min(k, want.length - 1)] ?? 0) : k;
          if (!Number.isInteger(t) || t < 0 || t >= T) throw new Error(`forward: logitsAt position ${t} is outside the ${T} tokens of row ${b}`);
          index.push(b * T + t);
        }
      }
      feeds.logits_index = int64Tensor(index, [B, K]);
    }
    const out = await this.session.run(feeds);
    const extra: Record<string, ort.Tensor> = {};
    for (const name of Object.keys(out)) if (name !== 'hidden' && name !== 'logits') extra[name] = out[name];
    return { hidden: out.hidden.data as Float32Array, logits: out.logits ? (out.logits.data as Float32Array) : new Float32Array(0), B, T, logitRows: K, extra };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
