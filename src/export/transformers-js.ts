// Exports a Hugging Face masked-LM folder as a model folder transformers.js loads the way it loads an
// Optimum export (AutoModelForMaskedLM.from_pretrained(dir, { dtype: 'fp32' })), so the two runtimes
// can be compared on exactly the same weights:
//
//   onnx/model.onnx    our encoder graph, weights as F32 initializers:
//                      input_ids, attention_mask [B, T] int64 → logits [B, T, V] float32
//   tokenizer.json, tokenizer_config.json, special_tokens_map.json   copied when present
//   config.json        the HF config as is, plus transformers.js_config.dtype "fp32"
//
// Why these names: transformers.js's encoder_forward feeds a session only the inputs the session
// lists, picked from what the caller passed (a tokenizer gives input_ids and attention_mask), and
// MaskedLMOutput reads `logits`. It never passes position_ids to an encoder, so the graph computes
// them as HF does when none are given. There is no token_type_ids input: transformers.js would feed
// zeros, and maria's BERT graph adds token type 0 already.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { Graph, type Tensor } from '../engine/graph.js';
import { compile, type CompiledModel } from '../engine/onnx.js';
import * as F from '../engine/ops.js';
import { replaceDirectory, uniqueTag, writeFileAtomic } from '../io/atomic.js';
import { bertFamily, tokenIndices, type BertConfig } from '../models/bert.js';
import { ModelFolderError } from '../models/config.js';
import type { BaseConfig, MaskedFamily } from '../models/family.js';
import { readModelInfo } from '../models/load.js';
import { modernBertFamily } from '../models/modernbert.js';
import { countParameters, loadParams, paramSource, type ParamMap } from '../models/weights.js';

/** The tokenizer files copied next to the graph (transformers.js's AutoTokenizer reads them). */
export const TRANSFORMERS_JS_TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'] as const;

/** Where the graph goes: transformers.js looks in `onnx/` for `model` + the dtype suffix ('' for fp32). */
export const TRANSFORMERS_JS_MODEL_FILE = 'onnx/model.onnx';

// ORT parses a model as one protobuf message, which cannot exceed 2 GiB; keep room for the graph.
const PROTOBUF_LIMIT = 2 ** 31 - 64 * 2 ** 20;

export interface ExportTransformersJsOptions {
  /** Replace `outDir` when it exists and is not empty (default: refuse). */
  overwrite?: boolean;
}

/** What {@link exportTransformersJs} wrote. */
export interface TransformersJsExport {
  dir: string;
  /** config.json's model_type (transformers.js picks its class from it). */
  modelType: string;
  inputNames: string[];
  outputNames: string[];
  /** How the graph derives position ids: 0..T-1, or RoBERTa's count past padding_idx. */
  positions: 'index' | 'roberta';
  parameters: number;
  /** Bytes of each file written, by path relative to `dir`. */
  files: Record<string, number>;
}

type PositionRule = TransformersJsExport['positions'];

/** The position rule for the families transformers.js and maria share, or a clear refusal. */
function positionRule(family: MaskedFamily, config: BaseConfig, file: string): PositionRule {
  if (family === (modernBertFamily as unknown as MaskedFamily)) return 'index';
  if (family === (bertFamily as unknown as MaskedFamily)) return (config as BertConfig).variant === 'roberta' ? 'roberta' : 'index';
  throw new ModelFolderError(`${file}: the transformers.js export supports ModernBERT, BERT and RoBERTa masked LMs, not model_type "${family.modelTypes[0]}"`);
}

/**
 * RoBERTa's position ids (HF create_position_ids_from_input_ids): padding_idx plus the running
 * count of non-pad tokens, padding_idx itself on pad tokens. The engine has no CumSum op, so the
 * running count is a product with an upper-triangular ones matrix (exact in float32 for any T a
 * position table allows).
 */
function robertaPositions(ids: Tensor, padId: number): Tensor {
  const g = ids.graph;
  const T = ids.dim(1);
  const real = F.cast(F.not(F.equal(ids, g.int64([padId]))), 'float32');
  const index = F.arange(g, T);
  const upper = F.cast(F.not(F.greater(F.reshape(index, [T, 1]), F.reshape(index, [1, T]))), 'float32');
  const count = F.cast(F.mul(F.matmul(real, upper), real), 'int64');
  return F.add(count, g.int64([padId]));
}

/**
 * The encoder graph transformers.js runs: input_ids and attention_mask [B, T] int64 in, logits
 * [B, T, V] out, positions computed inside. Also usable with maria's own Session, to time the same
 * graph without transformers.js around it.
 */
export function compileTransformersJsModel(family: MaskedFamily, config: BaseConfig, params: ParamMap, positions: PositionRule, dir = '<memory>'): CompiledModel {
  const g = new Graph();
  const ids = g.input('input_ids', ['B', 'T'], 'int64');
  const attentionMask = g.input('attention_mask', ['B', 'T'], 'int64');
  const pos = positions === 'roberta' ? robertaPositions(ids, (config as BertConfig).padId) : tokenIndices(ids);
  const out = family.forward(g, paramSource(g, params, dir), config, { ids, positions: pos, attentionMask });
  return compile(g, { outputs: { logits: out.logits }, name: `${dir}:transformers.js` });
}

/** An empty (or absent) folder, or an error unless `overwrite`. */
function checkTarget(out: string, overwrite: boolean): void {
  if (!existsSync(out)) return;
  if (!statSync(out).isDirectory()) throw new ModelFolderError(`${out}: exists and is not a folder`);
  if (!overwrite && readdirSync(out).length > 0) throw new ModelFolderError(`${out}: folder exists and is not empty (pass overwrite / --force to replace it)`);
}

/**
 * Writes a transformers.js model folder for the masked LM in `modelDir` (ModernBERT, BERT, RoBERTa,
 * XLM-RoBERTa) to `outDir`. Everything is written into a temporary sibling folder (config.json
 * last) that is then renamed into place, so a crash leaves either no export or a complete one.
 */
export function exportTransformersJs(modelDir: string, outDir: string, options: ExportTransformersJsOptions = {}): TransformersJsExport {
  const info = readModelInfo(modelDir);
  if (info.kind !== 'masked') throw new ModelFolderError(`${info.hf.file}: model_type "${info.modelType}" is a causal LM; the transformers.js export is for masked LMs`);
  const family = info.family as MaskedFamily;
  const positions = positionRule(family, info.config, info.hf.file);
  const out = resolve(outDir);
  checkTarget(out, options.overwrite ?? false);

  const params = loadParams(modelDir, family.params(info.config));
  const parameters = countParameters(params);
  if (parameters * 4 > PROTOBUF_LIMIT) {
    throw new ModelFolderError(`${modelDir}: ${parameters} parameters make a ${(parameters * 4 / 2 ** 30).toFixed(1)} GiB F32 graph, over ONNX's 2 GiB protobuf limit`);
  }
  const model = compileTransformersJsModel(family, info.config, params, positions, modelDir);

  mkdirSync(dirname(out), { recursive: true });
  const tmp = join(dirname(out), `.${basename(out)}.tmp-${uniqueTag()}`);
  const files: Record<string, number> = {};
  const write = (name: string, data: Uint8Array | string): void => {
    writeFileAtomic(join(tmp, name), data);
    files[name] = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
  };
  try {
    mkdirSync(dirname(join(tmp, TRANSFORMERS_JS_MODEL_FILE)), { recursive: true });
    write(TRANSFORMERS_JS_MODEL_FILE, model.bytes);
    for (const name of TRANSFORMERS_JS_TOKENIZER_FILES) {
      if (existsSync(join(modelDir, name))) write(name, readFileSync(join(modelDir, name)));
    }
    // model_type may have been inferred from architectures; transformers.js needs it spelled out.
    // Its dtype default is fp32 on CPU but q8 on wasm: name the one file there is. A source's own
    // transformers.js_config (external data, other dtypes) describes files this folder lacks.
    const jsConfig = { dtype: 'fp32' };
    write('config.json', JSON.stringify({ ...info.hf.raw, model_type: info.modelType, 'transformers.js_config': jsConfig }, null, 2) + '\n');
    replaceDirectory(tmp, out);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return { dir: out, modelType: info.modelType, inputNames: model.inputNames, outputNames: model.outputNames, positions, parameters, files };
}
