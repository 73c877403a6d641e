// MARIA: a frozen masked LM and a frozen causal LM joined by one linear head. Infilling runs left to
// right over the AR's KV cache: one MLM pass over the masked text, AR prefill of each unmasked run,
// one cached AR step per masked token. Scoring is one MLM pass plus one teacher-forced AR pass.
import { floatTensor, int64Tensor, type SessionOptions } from '../engine/runtime.js';
import { CausalLM } from '../models/causal-lm.js';
import type { KvCache } from '../models/kv-cache.js';
import { MaskedLM } from '../models/masked-lm.js';
import type { TextTokenizer } from '../tokenizer/tokenizer.js';
import { loadModelTokenizer } from '../models/load.js';
import { pairTokenizers } from '../tokenizer/pairing.js';
import { BundleError, bundlePath, readHead, readManifest, type BundleManifest } from './bundle.js';
import {
  infillAll,
  infillLoop,
  maxTokensOf,
  parseInput,
  scoreMasked,
  type InfillEvent,
  type InfillInput,
  type InfillOptions,
  type InfillResult,
  type MariaRuntime,
  type MariaSpec,
  type ScoreResult,
} from './core.js';
import { releaseBaselines } from './baselines.js';
import { pairModels } from './create.js';
import { headExtension, mlmHeadExtension, type HeadWeights } from './head.js';
import type { MaskedSequence } from './masks.js';

// The loop and its types live in core.ts (shared with the in-browser runner).
export { InfillTimeout } from './core.js';
export type { FilledToken, InfillEvent, InfillInput, InfillOptions, InfillResult, InfillSample, ScoreResult } from './core.js';

export class Maria {
  private constructor(
    readonly manifest: BundleManifest,
    /**
     * The MLM's encoder with the head's MLM half (mlmHeadExtension) instead of the MLM's own logits
     * (MARIA never uses them; the baselines build their own session with logits).
     */
    readonly mlm: MaskedLM,
    /** The AR with the head's AR half compiled into its step graph. */
    readonly ar: CausalLM,
    readonly tokenizer: TextTokenizer,
    /** AR id → MLM id (null when the ids are identical). */
    readonly arToMlm: Int32Array | null,
    readonly head: HeadWeights,
    readonly dir: string,
    /** The MLM's unknown token (null when it has none). */
    mlmUnkId: number | null,
    /** The options the sessions were made with (the baselines' sessions use them too). */
    readonly sessionOptions: SessionOptions,
  ) {
    const m = manifest;
    const spec: MariaSpec = {
      mlmMaskId: m.mlmMaskId,
      mlmPrefixIds: m.mlmPrefixIds,
      mlmSuffixIds: m.mlmSuffixIds,
      arBosId: m.arBosId,
      bannedIds: m.bannedIds,
      vocabSize: head.vocabSize,
      maxTokens: maxTokensOf(mlm.config.maxPositions, ar.config.maxPositions, m.mlmPrefixIds.length, m.mlmSuffixIds.length),
      arToMlm,
      mlmVocabSize: mlm.config.vocabSize,
      mlmUnkId,
    };
    this.runtime = {
      spec,
      tokenizer,
      encodeMlm: async (ids: number[], at: number[]) => {
        const out = await mlm.forward([ids], { feeds: { head_rows: int64Tensor(at, [1, at.length]) } });
        return out.extra.maria_mlm_logits.data as Float32Array;
      },
      newCache: (batch: number) => ar.newCache(batch),
      headStep: async (cache: KvCache, rows: number[][], headIndex: number[], mlmLogits: Float32Array) => {
        const out = await ar.step(cache, rows, {
          head_index: int64Tensor(headIndex, [headIndex.length]),
          mlm_logits: floatTensor(mlmLogits, [rows.length, headIndex.length, head.vocabSize]),
        });
        return out.extra.maria_logits.data as Float32Array;
      },
    };
  }

  /** The loop's view of this bundle (core.ts). */
  readonly runtime: MariaRuntime;

  /**
   * Loads a bundle folder (maria.json + head.safetensors + the two model folders). With
   * `head: 'product-of-experts'` the trained head is ignored and the untrained PoE head is used.
   */
  static async load(dir: string, options: SessionOptions = {}, which: { head?: 'trained' | 'product-of-experts' } = {}): Promise<Maria> {
    const manifest = readManifest(dir);
    const head = which.head === 'product-of-experts' ? pairModels(bundlePath(dir, manifest.mlm), bundlePath(dir, manifest.ar), dir).head : readHead(dir, manifest);
    const mlmDir = bundlePath(dir, manifest.mlm);
    const arDir = bundlePath(dir, manifest.ar);
    const mlm = await MaskedLM.load(mlmDir, options, { logits: false, extension: mlmHeadExtension(head) });
    const ar = await CausalLM.load(arDir, options, headExtension(head));
    const arTok = loadModelTokenizer(arDir, ar.config.vocabSize);
    const mlmTok = loadModelTokenizer(mlmDir, mlm.config.vocabSize);
    const pairing = pairTokenizers(mlmTok, arTok, { mlmVocabSize: mlm.config.vocabSize, arVocabSize: ar.config.vocabSize });
    if (pairing.kind === 'incompatible') throw new BundleError(`${dir}: the MLM and AR vocabularies do not align: ${pairing.reason}`);
    if (pairing.kind !== manifest.alignment) throw new BundleError(`${dir}: maria.json says alignment "${manifest.alignment}" but the tokenizers align as "${pairing.kind}"`);
    if (head.vocabSize !== ar.config.vocabSize) throw new BundleError(`${dir}: the head has ${head.vocabSize} rows but the AR's vocabulary has ${ar.config.vocabSize}`);
    if (head.mlmHidden !== mlm.config.hiddenSize || head.arHidden !== ar.config.hiddenSize) {
      throw new BundleError(`${dir}: the head expects hidden sizes ${head.mlmHidden}+${head.arHidden}, the models have ${mlm.config.hiddenSize}+${ar.config.hiddenSize}`);
    }
    return new Maria(manifest, mlm, ar, arTok, pairing.kind === 'id-map' ? pairing.arToMlm : null, head, dir, mlmTok.specialTokens.unk?.id ?? null, options);
  }

  /** The longest text (in decoder tokens) both models can take. */
  get maxTokens(): number {
    return this.runtime.spec.maxTokens;
  }

  /**
   * Tokenizes text with mask markers (or checks ids and a mask); with `scoring`, the ids at the
   * masked positions are checked too (they are the tokens scored).
   */
  parse(input: InfillInput, scoring = false): MaskedSequence {
    return parseInput(this.runtime, input, scoring);
  }

  /** Fills the masked positions; the samples run as one batch. */
  async infill(input: InfillInput, options: InfillOptions = {}): Promise<InfillResult> {
    return infillAll(this.runtime, input, options);
  }

  /** The same as infill, yielding each token as it is chosen. */
  async *infillStream(input: InfillInput, options: InfillOptions = {}): AsyncGenerator<InfillEvent, InfillResult> {
    let result: InfillResult | null = null;
    yield* infillLoop(this.runtime, input, options, (r) => (result = r));
    return result!;
  }

  /**
   * Exact log p(x_M | x_¬M) of the true tokens at the masked positions: one MLM pass on the masked
   * text and one teacher-forced AR pass.
   */
  async score(ids: number[], masked: boolean[]): Promise<ScoreResult> {
    return scoreMasked(this.runtime, ids, masked);
  }

  /** Releases the sessions, the baselines' included. */
  async release(): Promise<void> {
    await Promise.all([releaseBaselines(this), this.mlm.release(), this.ar.release()]);
  }
}
