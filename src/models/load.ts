// Loading whatever a model folder holds: the family's kind (from config.json's model_type) picks
// the runner, so callers that accept either kind (the `forward` command, MARIA's pair loader) need
// not know it in advance.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { SessionOptions } from '../engine/runtime.js';
import { TextTokenizer } from '../tokenizer/tokenizer.js';
import { CausalLM } from './causal-lm.js';
import { HfConfig, ModelFolderError } from './config.js';
import type { BaseConfig, Family } from './family.js';
import { MaskedLM } from './masked-lm.js';
import { readFamilyConfig } from './registry.js';

export type LoadedModel = { kind: 'causal'; model: CausalLM } | { kind: 'masked'; model: MaskedLM };

/** What config.json says, without reading the weights. */
export interface ModelInfo {
  hf: HfConfig;
  family: Family;
  kind: 'causal' | 'masked';
  modelType: string;
  config: BaseConfig;
}

/** Throws a clear error unless `dir` is an existing folder. */
export function assertFolder(dir: string): void {
  if (!existsSync(dir)) throw new ModelFolderError(`${dir}: no such folder`);
  if (!statSync(dir).isDirectory()) throw new ModelFolderError(`${dir}: not a folder (expected a Hugging Face model folder)`);
}

/** Reads config.json and its family's typed config (cheap: no weights). */
export function readModelInfo(dir: string): ModelInfo {
  assertFolder(dir);
  const { hf, family, config } = readFamilyConfig(dir);
  return { hf, family, kind: family.kind, modelType: hf.modelType(), config };
}

/** Loads a causal or masked LM, whichever the folder's model_type names. */
export async function loadModel(dir: string, options: SessionOptions = {}): Promise<LoadedModel> {
  const info = readModelInfo(dir);
  return info.kind === 'causal' ? { kind: 'causal', model: await CausalLM.load(dir, options) } : { kind: 'masked', model: await MaskedLM.load(dir, options) };
}

/**
 * The folder's tokenizer, or null when it has none (a present but broken one is an error). Looks for
 * `<dir>/tokenizer.json`, then `<dir>/tokenizer/tokenizer.json` (this project's models/<name>/ layout).
 */
export function loadTokenizerIfPresent(dir: string): TextTokenizer | null {
  assertFolder(dir);
  if (TextTokenizer.existsIn(dir)) return TextTokenizer.load(dir);
  const sub = join(dir, 'tokenizer');
  if (existsSync(sub) && statSync(sub).isDirectory() && TextTokenizer.existsIn(sub)) return TextTokenizer.load(sub);
  return null;
}

/**
 * Loads the folder's tokenizer and checks it fits the model: every token id must have an embedding
 * row (the model may have more rows than tokens: padding).
 */
export function loadModelTokenizer(dir: string, vocabSize: number): TextTokenizer {
  return checkTokenizerFits(dir, TextTokenizer.load(dir), vocabSize);
}

/** Throws unless every id of `tok` (loaded from `dir`) has an embedding row among `vocabSize`. */
export function checkTokenizerFits(dir: string, tok: TextTokenizer, vocabSize: number): TextTokenizer {
  if (tok.vocabSize > vocabSize) {
    throw new ModelFolderError(
      `${join(dir, 'tokenizer.json')}: the tokenizer has ${tok.vocabSize} tokens but config.json's "vocab_size" is ${vocabSize}, so ids ≥ ${vocabSize} have no embedding row (tokenizer and weights come from different models?)`,
    );
  }
  return tok;
}
