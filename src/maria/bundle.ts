// A MARIA bundle on disk: maria.json (which MLM and AR, how their tokens align, how the MLM input is
// wrapped, the head's shape and where it came from) and head.safetensors (W3, b3).
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import type { HeadWeights } from './head.js';

export const BUNDLE_FORMAT = 'maria-bundle';
export const BUNDLE_VERSION = 1;

export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  version: number;
  /** MLM and AR folders, relative to the bundle (or absolute). */
  mlm: string;
  ar: string;
  /** How AR ids map to MLM ids: equal ids, or a map built from token strings. */
  alignment: 'identical' | 'id-map';
  /** The MLM's mask token id. */
  mlmMaskId: number;
  /** Ids wrapped around the text for the MLM ([CLS] … [SEP] or BOS … EOS). */
  mlmPrefixIds: number[];
  mlmSuffixIds: number[];
  /** The token fed to the AR first, whose state predicts the first text token. */
  arBosId: number;
  /** AR ids never produced by infilling (special tokens). */
  bannedIds: number[];
  head: { file: string; vocabSize: number; mlmHidden: number; arHidden: number; init: 'product-of-experts' | 'trained' };
  /** How the head was trained: command, data, steps, losses, wall time. */
  training?: Record<string, unknown>;
}

export class BundleError extends Error {
  override name = 'BundleError';
}

/** Resolves a path recorded in a manifest against the bundle folder. */
export function bundlePath(dir: string, p: string): string {
  return isAbsolute(p) ? p : resolve(dir, p);
}

/** Reads and validates maria.json. */
export function readManifest(dir: string): BundleManifest {
  const file = join(dir, 'maria.json');
  if (!existsSync(file)) throw new BundleError(`${file}: not found (a MARIA bundle is a folder with maria.json and head.safetensors; create one with \`maria train-head\`)`);
  let m: BundleManifest;
  try {
    m = JSON.parse(readFileSync(file, 'utf8')) as BundleManifest;
  } catch (err) {
    throw new BundleError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (m.format !== BUNDLE_FORMAT) throw new BundleError(`${file}: "format" must be "${BUNDLE_FORMAT}"`);
  if (m.version !== BUNDLE_VERSION) throw new BundleError(`${file}: version ${m.version} is not supported (this maria reads version ${BUNDLE_VERSION})`);
  for (const key of ['mlm', 'ar'] as const) {
    if (typeof m[key] !== 'string') throw new BundleError(`${file}: "${key}" must be the path of a model folder`);
    if (!existsSync(bundlePath(dir, m[key]))) throw new BundleError(`${file}: "${key}" points to ${bundlePath(dir, m[key])}, which does not exist`);
  }
  if (m.alignment !== 'identical' && m.alignment !== 'id-map') throw new BundleError(`${file}: "alignment" must be "identical" or "id-map"`);
  for (const key of ['mlmMaskId', 'arBosId'] as const) {
    if (!Number.isInteger(m[key]) || m[key] < 0) throw new BundleError(`${file}: "${key}" must be a token id`);
  }
  if (!m.head || typeof m.head.file !== 'string' || !Number.isInteger(m.head.vocabSize) || !Number.isInteger(m.head.mlmHidden) || !Number.isInteger(m.head.arHidden)) {
    throw new BundleError(`${file}: "head" must give file, vocabSize, mlmHidden and arHidden`);
  }
  return m;
}

/** Reads head.safetensors and checks it against the manifest. */
export function readHead(dir: string, m: BundleManifest): HeadWeights {
  const file = bundlePath(dir, m.head.file);
  const st = readSafetensors(file);
  const { vocabSize: V, mlmHidden: dM, arHidden: dA } = m.head;
  const w = st.info('weight');
  const b = st.info('bias');
  if (w.shape.length !== 2 || w.shape[0] !== V || w.shape[1] !== dM + dA) {
    throw new BundleError(`${file}: "weight" has shape [${w.shape}] but maria.json says [${V}, ${dM + dA}]`);
  }
  if (b.shape.length !== 1 || b.shape[0] !== V) throw new BundleError(`${file}: "bias" has shape [${b.shape}] but maria.json says [${V}]`);
  return { weight: st.getFloat32('weight'), bias: st.getFloat32('bias'), vocabSize: V, mlmHidden: dM, arHidden: dA };
}

/**
 * Writes a bundle (head first, then the manifest, each atomically). The head may be stored as F16
 * (half the size; computation stays F32).
 */
export function writeBundle(dir: string, m: BundleManifest, head: HeadWeights, dtype: 'F32' | 'F16' = 'F32'): void {
  writeSafetensors(join(dir, m.head.file), {
    weight: { dtype, shape: [head.vocabSize, head.mlmHidden + head.arHidden], data: head.weight },
    bias: { dtype: 'F32', shape: [head.vocabSize], data: head.bias },
  });
  writeFileAtomic(join(dir, 'maria.json'), JSON.stringify(m, null, 2) + '\n');
}
