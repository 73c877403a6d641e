// web-manifest.json: what the in-browser runner needs to know about an exported bundle (written by
// src/web/export.ts in Node, read by src/web/browser-maria.ts in the browser). Types and constants
// only, so the browser bundle can import it.

export const WEB_FORMAT = 'maria-web';
// 2: mlmUnkId (what an AR token the MLM lacks becomes).
// 3: the step graph takes its cached keys transposed, [B, Hkv, d, P].
// 4: the head is split: mlm.onnx adds W_M·h + b3 at head_rows (maria_mlm_logits), the step graph
//    takes that as mlm_logits [B, K, V] instead of mlm_hidden.
// 5: the step graph uses com.microsoft RotaryEmbedding and SkipSimplifiedLayerNormalization and
//    fused q/k/v and gate/up products (same inputs and outputs; exports of 4 are stale, not wrong).
export const WEB_VERSION = 5;

/** The exported graphs. */
export const WEB_GRAPH_FILES = { mlm: 'mlm.onnx', arStep: 'ar-step.onnx' } as const;
/** The AR's tokenizer files, copied as they are (the last two when present). */
export const WEB_TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'] as const;
export const WEB_MANIFEST_FILE = 'web-manifest.json';

/** One model of the pair, as /v1/model describes it. */
export interface WebModelInfo {
  /** The family's model_type (e.g. "modernbert", "llama"). */
  family: string;
  layers: number;
  hiddenSize: number;
  vocabSize: number;
  maxPositions: number;
  parameters: number;
}

export interface WebManifest {
  format: typeof WEB_FORMAT;
  version: number;
  /** Content key of the export (bundle weights, configs, tokenizer, maria version): changes with any of them. */
  id: string;
  /** The bundle folder's name. */
  bundle: string;
  /** The maria version that exported it. */
  maria: string;
  /** Every file of the export but this manifest, with its size in bytes. */
  files: Record<string, number>;
  /** Weights are embedded in the graphs as initializers of this type (F16 checkpoints are widened). */
  dtype: 'float32';
  alignment: 'identical' | 'id-map';
  /** AR id → MLM id when alignment is "id-map" (null when the ids are identical). */
  arToMlm: number[] | null;
  mlmMaskId: number;
  /** The MLM's unknown token (null when it has none). */
  mlmUnkId: number | null;
  mlmPrefixIds: number[];
  mlmSuffixIds: number[];
  arBosId: number;
  bannedIds: number[];
  /** The head's (the AR's) vocabulary. */
  vocabSize: number;
  /** The longest text in decoder tokens. */
  maxTokens: number;
  mlm: WebModelInfo & {
    /**
     * The MLM's position ids for an unpadded row of each length (the first T entries), by the
     * family's rule: 0..T-1 for most, offset past padding_idx for RoBERTa.
     */
    positionIds: number[];
  };
  ar: WebModelInfo & { kvHeads: number; headDim: number };
  head: { init: string; mlmHidden: number; arHidden: number; parameters: number; training: Record<string, unknown> | null };
  /** Inputs and outputs of each graph. */
  graphs: { mlm: { inputs: string[]; outputs: string[] }; arStep: { inputs: string[]; outputs: string[] } };
}
