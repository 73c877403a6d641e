// The model families maria knows, looked up by config.json's model_type.
import { HfConfig, ModelFolderError } from './config.js';
import type { BaseConfig, Family } from './family.js';
import { gpt2Family } from './gpt2.js';
import { bertFamily } from './bert.js';
import { llamaFamily } from './llama.js';
import { modernBertFamily } from './modernbert.js';
import { modernBertDecoderFamily } from './modernbert-decoder.js';

const families: Family[] = [
  llamaFamily as unknown as Family,
  gpt2Family as unknown as Family,
  modernBertDecoderFamily as unknown as Family,
  bertFamily as unknown as Family,
  modernBertFamily as unknown as Family,
];

/** Adds a family (each family module registers itself here). */
export function registerFamily(f: Family): void {
  families.push(f);
}

/** A model folder's config.json, its family and the family's typed config. */
export interface FamilyConfig<F extends Family = Family> {
  hf: HfConfig;
  family: F;
  config: BaseConfig;
}

/**
 * Reads `dir`/config.json into its family's typed config (cheap: no weights). With `kind`, a folder
 * holding the other kind of model is a clear error.
 */
export function readFamilyConfig(dir: string): FamilyConfig;
export function readFamilyConfig<K extends Family['kind']>(dir: string, kind: K): FamilyConfig<Extract<Family, { kind: K }>>;
export function readFamilyConfig(dir: string, kind?: Family['kind']): FamilyConfig {
  const hf = HfConfig.load(dir);
  const family = familyFor(hf);
  if (kind && family.kind !== kind) throw new ModelFolderError(`${hf.file}: model_type "${hf.modelType()}" is a ${family.kind} LM, not a ${kind} LM`);
  return { hf, family, config: family.parseConfig(hf) };
}

/** The family for a config, or a clear error listing the supported ones. */
export function familyFor(config: HfConfig): Family {
  const type = config.modelType();
  const f = families.find((fam) => fam.modelTypes.includes(type) || fam.modelTypes.includes(type.toLowerCase()));
  if (!f) {
    const known = families.flatMap((fam) => fam.modelTypes).join(', ');
    throw new ModelFolderError(`${config.file}: model_type "${type}" is not supported (supported: ${known})`);
  }
  return f;
}
