// Reading Hugging Face config.json files. Real checkpoints come from many transformers versions:
// keys move (rope_theta → rope_parameters.rope_theta, torch_dtype → dtype) and GPT-2-era configs use
// n_embd/n_layer. Every read names the file and the key when something is missing or wrong.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isActivation, supportedActivations } from '../engine/nn.js';

/** A clear, user-facing error about a model folder. */
export class ModelFolderError extends Error {
  override name = 'ModelFolderError';
}

/** Typed access to a config.json with key aliases and clear errors. */
export class HfConfig {
  constructor(
    readonly raw: Record<string, unknown>,
    /** Path of the file, for messages. */
    readonly file: string,
  ) {}

  /** Reads `<dir>/config.json`. */
  static load(dir: string): HfConfig {
    const file = join(dir, 'config.json');
    if (!existsSync(file)) throw new ModelFolderError(`${file}: not found (a Hugging Face model folder needs config.json)`);
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new ModelFolderError(`${file}: not valid JSON (${(err as Error).message})`);
    }
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ModelFolderError(`${file}: expected a JSON object`);
    return new HfConfig(raw as Record<string, unknown>, file);
  }

  /** The first of `keys` present (dotted paths allowed: "rope_parameters.rope_theta"). */
  private lookup(keys: string[]): { key: string; value: unknown } | null {
    for (const key of keys) {
      let v: unknown = this.raw;
      for (const part of key.split('.')) {
        v = v && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined;
      }
      if (v !== undefined && v !== null) return { key, value: v };
    }
    return null;
  }

  has(...keys: string[]): boolean {
    return this.lookup(keys) !== null;
  }

  /** A number under any of `keys`; `fallback` when absent, an error when absent without fallback. */
  num(keys: string | string[], fallback?: number): number {
    const ks = Array.isArray(keys) ? keys : [keys];
    const hit = this.lookup(ks);
    if (!hit) {
      if (fallback !== undefined) return fallback;
      throw new ModelFolderError(`${this.file}: missing "${ks[0]}"${ks.length > 1 ? ` (also looked for ${ks.slice(1).join(', ')})` : ''}`);
    }
    if (typeof hit.value !== 'number' || !Number.isFinite(hit.value)) {
      throw new ModelFolderError(`${this.file}: "${hit.key}" must be a number, got ${JSON.stringify(hit.value)}`);
    }
    return hit.value;
  }

  /** A positive integer under any of `keys`. */
  int(keys: string | string[], fallback?: number): number {
    const v = this.num(keys, fallback);
    const key = Array.isArray(keys) ? keys[0] : keys;
    if (!Number.isInteger(v) || v < 0) throw new ModelFolderError(`${this.file}: "${key}" must be a non-negative integer, got ${v}`);
    return v;
  }

  /** An optional number (null when absent or null). */
  optNum(keys: string | string[]): number | null {
    const hit = this.lookup(Array.isArray(keys) ? keys : [keys]);
    if (!hit) return null;
    if (typeof hit.value !== 'number') throw new ModelFolderError(`${this.file}: "${hit.key}" must be a number or null, got ${JSON.stringify(hit.value)}`);
    return hit.value;
  }

  bool(keys: string | string[], fallback: boolean): boolean {
    const hit = this.lookup(Array.isArray(keys) ? keys : [keys]);
    if (!hit) return fallback;
    if (typeof hit.value !== 'boolean') throw new ModelFolderError(`${this.file}: "${hit.key}" must be true or false, got ${JSON.stringify(hit.value)}`);
    return hit.value;
  }

  str(keys: string | string[], fallback?: string): string {
    const ks = Array.isArray(keys) ? keys : [keys];
    const hit = this.lookup(ks);
    if (!hit) {
      if (fallback !== undefined) return fallback;
      throw new ModelFolderError(`${this.file}: missing "${ks[0]}"`);
    }
    if (typeof hit.value !== 'string') throw new ModelFolderError(`${this.file}: "${hit.key}" must be a string, got ${JSON.stringify(hit.value)}`);
    return hit.value;
  }

  /** An activation name (transformers' ACT2FN), refused with a clear error unless maria implements it. */
  activation(keys: string | string[], fallback: string): string {
    const ks = Array.isArray(keys) ? keys : [keys];
    const name = this.str(ks, fallback);
    if (!isActivation(name)) {
      const key = ks.find((k) => this.has(k)) ?? ks[0];
      throw new ModelFolderError(`${this.file}: "${key}" is "${name}", which maria does not implement (supported: ${supportedActivations().join(', ')})`);
    }
    return name;
  }

  /** `model_type`, or the family guessed from `architectures`. */
  modelType(): string {
    if (typeof this.raw.model_type === 'string') return this.raw.model_type;
    const arch = this.raw.architectures;
    if (Array.isArray(arch) && typeof arch[0] === 'string') return arch[0];
    throw new ModelFolderError(`${this.file}: has neither "model_type" nor "architectures", so the model family is unknown`);
  }

  /** HF's default for a missing tie_word_embeddings is true (PretrainedConfig). */
  tieWordEmbeddings(): boolean {
    return this.bool('tie_word_embeddings', true);
  }

  /** rope_theta under either the old top-level key or transformers 5's rope_parameters. */
  ropeTheta(fallback = 10000): number {
    return this.num(['rope_theta', 'rope_parameters.rope_theta'], fallback);
  }

  /** Refuses rope scaling types we do not implement rather than computing something else. */
  checkRopeScaling(): void {
    const hit = this.lookup(['rope_scaling', 'rope_parameters']);
    if (!hit || typeof hit.value !== 'object') return;
    const type = (hit.value as Record<string, unknown>).rope_type ?? (hit.value as Record<string, unknown>).type;
    if (type !== undefined && type !== 'default') {
      throw new ModelFolderError(`${this.file}: "${hit.key}" uses rope type "${String(type)}", which maria does not implement (only default RoPE)`);
    }
  }
}
