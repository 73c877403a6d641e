// Exporting a Llama model folder to GGUF, so llama.cpp runs exactly the weights maria runs. The
// names, metadata and transforms follow llama.cpp's convert_hf_to_gguf.py (LlamaModel) and what
// src/llama-vocab.cpp accepts. One transform matters for numbers: HF's rotary embedding rotates
// the two halves of each head (rotate_half) while llama.cpp's LLM_ARCH_LLAMA rotates adjacent
// pairs, so the rows of q_proj and k_proj are permuted per head to turn one layout into the other.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { float32ToFloat16Bits, openCheckpoint, type WeightSource } from '../io/safetensors.js';
import { writeGguf, type GgufTensorToWrite, type GgufTensorType, type GgufValue } from '../io/gguf.js';
import { HfConfig, ModelFolderError } from '../models/config.js';
import { llamaFamily, type LlamaConfig } from '../models/llama.js';
import { TextTokenizer, type SpecialRole } from '../tokenizer/tokenizer.js';

export interface ExportGgufOptions {
  /** Element type of the 2-D weights (norm weights are always F32, as llama.cpp's converter does). Default F32. */
  dtype?: GgufTensorType;
  /** `general.name`; default the folder's name. */
  name?: string;
}

export interface ExportGgufResult {
  file: string;
  bytes: number;
  tensors: number;
  dtype: GgufTensorType;
  /** Embedding rows (the GGUF vocabulary, padded when the tokenizer has fewer tokens). */
  vocabSize: number;
  /**
   * The llama.cpp pre-tokenizer matching tokenizer.json (tokenizer.ggml.pre), or null for a folder
   * without tokenizer.json, whose GGUF has placeholder tokens and runs on token ids only.
   */
  preTokenizer: string | null;
}

/**
 * Writes a Llama (`model_type` "llama") folder as a GGUF v3 file that llama.cpp loads as
 * architecture "llama": same weights (F32, or F16 for the matrices), hyperparameters and
 * byte-level BPE vocabulary. The file is written atomically, one tensor at a time.
 *
 * @throws ModelFolderError for other model types and Llama features llama.cpp's "llama" graph
 *   would compute differently (RoPE scaling, biases, sliding windows, other activations).
 */
export function exportGguf(modelDir: string, outFile: string, options: ExportGgufOptions = {}): ExportGgufResult {
  const dtype = options.dtype ?? 'F32';
  if (dtype !== 'F32' && dtype !== 'F16') throw new ModelFolderError(`GGUF export: dtype must be F32 or F16, got ${JSON.stringify(dtype)}`);
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('GGUF export needs a little-endian host');
  const hf = HfConfig.load(modelDir);
  const c = parseLlama(hf);
  let source: WeightSource;
  try {
    source = openCheckpoint(modelDir);
  } catch (err) {
    throw new ModelFolderError((err as Error).message);
  }
  for (const spec of llamaFamily.params(c)) {
    const info = source.has(spec.name) ? source.info(spec.name) : null;
    if (!info) throw new ModelFolderError(`${modelDir}: the weights have no tensor "${spec.name}" that config.json implies`);
    if (info.shape.join() !== spec.shape.join()) throw new ModelFolderError(`${modelDir}: tensor "${spec.name}" has shape [${info.shape}] but config.json implies [${spec.shape}]`);
  }

  const tensors: GgufTensorToWrite[] = [];
  const add = (hfName: string, name: string, shape: number[], permuteHeads = 0): void => {
    const type = shape.length === 1 ? 'F32' : dtype;
    tensors.push({ name, type, dims: [...shape].reverse(), data: () => tensorBytes(source, hfName, type, shape, permuteHeads) });
  };
  add('model.embed_tokens.weight', 'token_embd.weight', [c.vocabSize, c.hiddenSize]);
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    add(`${p}.input_layernorm.weight`, `blk.${i}.attn_norm.weight`, [c.hiddenSize]);
    add(`${p}.self_attn.q_proj.weight`, `blk.${i}.attn_q.weight`, [q, c.hiddenSize], c.numHeads);
    add(`${p}.self_attn.k_proj.weight`, `blk.${i}.attn_k.weight`, [kv, c.hiddenSize], c.numKvHeads);
    add(`${p}.self_attn.v_proj.weight`, `blk.${i}.attn_v.weight`, [kv, c.hiddenSize]);
    add(`${p}.self_attn.o_proj.weight`, `blk.${i}.attn_output.weight`, [c.hiddenSize, q]);
    add(`${p}.post_attention_layernorm.weight`, `blk.${i}.ffn_norm.weight`, [c.hiddenSize]);
    add(`${p}.mlp.gate_proj.weight`, `blk.${i}.ffn_gate.weight`, [c.intermediateSize, c.hiddenSize]);
    add(`${p}.mlp.up_proj.weight`, `blk.${i}.ffn_up.weight`, [c.intermediateSize, c.hiddenSize]);
    add(`${p}.mlp.down_proj.weight`, `blk.${i}.ffn_down.weight`, [c.hiddenSize, c.intermediateSize]);
  }
  add('model.norm.weight', 'output_norm.weight', [c.hiddenSize]);
  // Without output.weight llama.cpp reuses token_embd, which is what tied embeddings mean.
  if (!c.tieEmbeddings) add('lm_head.weight', 'output.weight', [c.vocabSize, c.hiddenSize]);

  const vocab = tokenizerMetadata(modelDir, hf, c.vocabSize);
  const u32 = (value: number): GgufValue => ({ type: 'uint32', value });
  const f32 = (value: number): GgufValue => ({ type: 'float32', value });
  const metadata: Record<string, GgufValue> = {
    'general.architecture': { type: 'string', value: 'llama' },
    'general.name': { type: 'string', value: options.name ?? basename(resolve(modelDir)) },
    'general.file_type': u32(dtype === 'F32' ? 0 : 1), // LLAMA_FTYPE_ALL_F32 / LLAMA_FTYPE_MOSTLY_F16
    'llama.context_length': u32(c.maxPositions),
    'llama.embedding_length': u32(c.hiddenSize),
    'llama.block_count': u32(c.numLayers),
    'llama.feed_forward_length': u32(c.intermediateSize),
    'llama.attention.head_count': u32(c.numHeads),
    'llama.attention.head_count_kv': u32(c.numKvHeads),
    'llama.rope.dimension_count': u32(c.headDim),
    'llama.rope.freq_base': f32(c.ropeTheta),
    'llama.attention.layer_norm_rms_epsilon': f32(c.normEps),
    'llama.vocab_size': u32(c.vocabSize),
    ...(c.headDim * c.numHeads !== c.hiddenSize ? { 'llama.attention.key_length': u32(c.headDim), 'llama.attention.value_length': u32(c.headDim) } : {}),
    ...vocab.metadata,
  };
  writeGguf(outFile, metadata, tensors);
  return { file: outFile, bytes: statSync(outFile).size, tensors: tensors.length, dtype, vocabSize: c.vocabSize, preTokenizer: vocab.pre };
}

function parseLlama(hf: HfConfig): LlamaConfig {
  const type = hf.modelType();
  if (type.toLowerCase() !== 'llama') throw new ModelFolderError(`${hf.file}: model_type "${type}" cannot be exported to GGUF (only "llama" is supported)`);
  const c = llamaFamily.parseConfig(hf);
  const unsupported = [
    c.ropeScaling && `RoPE scaling "${c.ropeScaling.type}"`,
    c.qkvBias && 'attention biases (attention_bias)',
    c.mlpBias && 'MLP biases (mlp_bias)',
    c.act !== 'silu' && `hidden_act "${c.act}" (llama.cpp's llama uses silu)`,
    c.windows.some((w) => w !== null) && 'sliding-window attention',
  ].filter((x): x is string => typeof x === 'string');
  if (unsupported.length) throw new ModelFolderError(`${hf.file}: GGUF export does not support ${unsupported.join(', ')}`);
  return c;
}

/** A weight as GGUF bytes; F16 checkpoints exported as F16 keep their exact bits. */
function tensorBytes(source: WeightSource, name: string, type: GgufTensorType, shape: number[], permuteHeads: number): Uint8Array {
  let data: Float32Array | Uint16Array;
  if (type === 'F16' && source.info(name).dtype === 'F16') data = new Uint16Array(source.getRaw(name).slice().buffer);
  else data = source.getFloat32(name);
  if (type === 'F16' && data instanceof Float32Array) data = Uint16Array.from(data, float32ToFloat16Bits);
  if (permuteHeads) data = ropeRowsToInterleaved(data, permuteHeads, shape[1]!);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * convert_hf_to_gguf.py's permute: `w.reshape(heads, 2, d/2, in).swapaxes(1, 2)`. Within each head,
 * row 2i+j of the result is row j·d/2+i of HF's, so rotate_half's pair (i, i+d/2) becomes the
 * adjacent pair llama.cpp rotates.
 */
export function ropeRowsToInterleaved<T extends Float32Array | Uint16Array>(w: T, heads: number, cols: number): T {
  const out = w.slice() as T;
  const half = w.length / cols / heads / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const src = (h * 2 * half + j * half + i) * cols;
        out.set(w.subarray(src, src + cols), (h * 2 * half + 2 * i + j) * cols);
      }
    }
  }
  return out;
}

// --- the vocabulary -------------------------------------------------------------------------------

interface AddedToken {
  id: number;
  content: string;
  special?: boolean;
}

interface TokenizerJson {
  normalizer?: unknown;
  pre_tokenizer?: Record<string, unknown> | null;
  added_tokens?: AddedToken[];
  model?: { type?: string; vocab?: Record<string, number>; merges?: Array<string | [string, string]> };
}

// llama.cpp's LLAMA_TOKEN_TYPE_* values.
const NORMAL = 1;
const CONTROL = 3;
const USER_DEFINED = 4;
const UNUSED = 5;

const LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/**
 * The llama.cpp pre-tokenizer (tokenizer.ggml.pre) that splits text as this tokenizer.json does,
 * or null. "default" is not a safe fallback: it adds its own punctuation and digit splits.
 */
function preTokenizerName(pre: Record<string, unknown> | null | undefined): string | null {
  const byteLevel = (p: unknown, regex: boolean): boolean => {
    const o = p as Record<string, unknown> | null;
    return o?.type === 'ByteLevel' && (o.use_regex !== false) === regex && o.add_prefix_space !== true;
  };
  if (byteLevel(pre, true)) return 'gpt-2'; // GPT-2's regex, as llama.cpp's LLAMA_VOCAB_PRE_TYPE_GPT2
  const seq = pre?.type === 'Sequence' && Array.isArray(pre.pretokenizers) ? (pre.pretokenizers as Array<Record<string, unknown>>) : null;
  if (seq?.length === 2 && seq[0]?.type === 'Digits' && seq[0].individual_digits === true && byteLevel(seq[1], true)) return 'smollm';
  const split = seq?.[0] as { type?: string; pattern?: { Regex?: string } } | undefined;
  if (seq?.length === 2 && split?.type === 'Split' && split.pattern?.Regex === LLAMA3_REGEX && byteLevel(seq[1], false)) return 'llama-bpe';
  return null;
}

function readJson(file: string): Record<string, unknown> | null {
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new ModelFolderError(`${file}: not valid JSON (${(err as Error).message})`);
  }
}

function tokenizerMetadata(dir: string, hf: HfConfig, vocabSize: number): { metadata: Record<string, GgufValue>; pre: string | null } {
  const file = join(dir, 'tokenizer.json');
  const tj = readJson(file) as TokenizerJson | null;
  const model = tj?.model ?? { vocab: {}, merges: [] };
  let pre: string | null = null;
  if (tj) {
    if (model.type !== 'BPE' || !model.vocab || !Array.isArray(model.merges)) throw new ModelFolderError(`${file}: GGUF export needs a BPE tokenizer model, found ${JSON.stringify(model.type)}`);
    if (tj.normalizer) throw new ModelFolderError(`${file}: GGUF export does not support a tokenizer normalizer (llama.cpp's byte-level BPE has none)`);
    pre = preTokenizerName(tj.pre_tokenizer);
    if (!pre) throw new ModelFolderError(`${file}: GGUF export supports byte-level BPE pre-tokenizers (GPT-2, SmolLM, Llama 3), not ${JSON.stringify(tj.pre_tokenizer)}`);
  }
  // Without tokenizer.json every id becomes a placeholder token and llama.cpp runs on token ids.
  // (llama.cpp's own vocabulary-less mode, "none", aborts in node-llama-cpp, which tokenizes at load.)
  const tokens: Array<string | undefined> = new Array(vocabSize);
  const types = new Array<number>(vocabSize).fill(NORMAL);
  const place = (id: number, token: string, type: number): void => {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new ModelFolderError(`${file}: token ${JSON.stringify(token)} has id ${id}, outside the model's ${vocabSize} embedding rows`);
    tokens[id] = token;
    types[id] = type;
  };
  for (const [token, id] of Object.entries(model.vocab ?? {})) place(id, token, NORMAL);
  for (const t of tj?.added_tokens ?? []) place(t.id, t.content, t.special ? CONTROL : USER_DEFINED);
  // Ids the tokenizer never produces still need a unique string each (llama.cpp asserts uniqueness).
  const taken = new Set(tokens.filter((t): t is string => t !== undefined));
  for (let i = 0; i < vocabSize; i++) {
    if (tokens[i] !== undefined) continue;
    let pad = `[PAD${i}]`;
    while (taken.has(pad)) pad = `[${pad}]`;
    taken.add(pad);
    place(i, pad, UNUSED);
  }
  if (taken.size !== vocabSize) throw new ModelFolderError(`${file}: two ids share one token string, which llama.cpp cannot load`);
  // llama.cpp reads merges as "a b"; a space inside a pair's part becomes U+0120, as convert_hf_to_gguf.py writes it.
  const merges = (model.merges ?? []).map((m) => (typeof m === 'string' ? m : m.map((part) => part.replace(/ /g, '\u0120')).join(' ')));

  const metadata: Record<string, GgufValue> = {
    'tokenizer.ggml.model': { type: 'string', value: 'gpt2' },
    'tokenizer.ggml.pre': { type: 'string', value: pre ?? 'gpt-2' },
    'tokenizer.ggml.tokens': { type: 'array', itemType: 'string', value: tokens as string[] },
    'tokenizer.ggml.token_type': { type: 'array', itemType: 'int32', value: types },
    'tokenizer.ggml.merges': { type: 'array', itemType: 'string', value: merges },
  };
  // maria's own special-token resolution, so llama.cpp adds and stops on the tokens maria does.
  const tokenizer = tj ? TextTokenizer.load(dir) : null;
  for (const [key, id] of Object.entries(specialTokenIds(tokenizer, hf))) {
    if (id >= 0 && id < vocabSize) metadata[`tokenizer.ggml.${key}_token_id`] = { type: 'uint32', value: id };
  }
  for (const flag of ['add_bos_token', 'add_eos_token'] as const) {
    const value = tokenizer?.config[flag];
    if (typeof value === 'boolean') metadata[`tokenizer.ggml.${flag}`] = { type: 'bool', value };
  }
  return { metadata, pre };
}

/**
 * bos/eos/unknown/padding ids: the tokenizer's (config files, post-processor, conventions; see
 * TextTokenizer), else config.json's ids, the only source for a folder without tokenizer.json.
 */
function specialTokenIds(tokenizer: TextTokenizer | null, hf: HfConfig): Record<string, number> {
  const resolved = (role: SpecialRole): number | undefined => tokenizer?.specialTokens[role]?.id;
  const fromConfig = (key: string): number | undefined => {
    const v = hf.raw[key];
    const first = Array.isArray(v) ? v[0] : v;
    return typeof first === 'number' && Number.isInteger(first) ? first : undefined;
  };
  const out: Record<string, number> = {};
  const set = (key: string, id: number | undefined): void => {
    if (id !== undefined) out[key] = id;
  };
  set('bos', resolved('bos') ?? fromConfig('bos_token_id'));
  set('eos', resolved('eos') ?? fromConfig('eos_token_id'));
  set('unknown', resolved('unk'));
  set('padding', resolved('pad') ?? fromConfig('pad_token_id'));
  return out;
}
