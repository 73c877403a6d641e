// Content digests of loaded models: what a cache key, or the fingerprint of a resumable run, must
// change with. Hashing ~100 MB of weights takes a fraction of a second. The parsed config is hashed
// as the family builds it, so a code change to a family's config object (a field added, dropped or
// moved) also changes the digest: resumable runs and web caches from the older code are then
// refused or rebuilt rather than mixed with the new code's results.
import { createHash, type Hash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BaseConfig } from '../models/family.js';
import type { ParamMap } from '../models/weights.js';
import { WEB_TOKENIZER_FILES } from '../web/manifest.js';
import { bundlePath } from './bundle.js';
import type { Maria } from './maria.js';


function text(h: Hash, s: string): void {
  h.update(s);
  h.update('\0');
}

/** Feeds a model's type, config and every weight (in name order) into `h`. */
export function hashModel(h: Hash, m: { family: { modelTypes: string[] }; config: BaseConfig; params: ParamMap }): void {
  text(h, m.family.modelTypes[0]);
  text(h, JSON.stringify(m.config));
  for (const name of [...m.params.keys()].sort()) {
    const p = m.params.get(name)!;
    text(h, `${name}:${p.shape.join('x')}`);
    h.update(new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength));
  }
}

/** A model's content digest (hex, 20 characters). */
export function modelDigest(m: Parameters<typeof hashModel>[1]): string {
  const h = createHash('sha256');
  hashModel(h, m);
  return h.digest('hex').slice(0, 20);
}

/**
 * A bundle's content digest (hex, 20 characters): the manifest (less its training record), both
 * models' configs and weights, the head, the id map and the AR's tokenizer files, after `salt`.
 */
export function bundleDigest(maria: Maria, salt = ''): string {
  const h = createHash('sha256');
  text(h, salt);
  const { training: _training, ...manifest } = maria.manifest;
  text(h, JSON.stringify(manifest));
  hashModel(h, maria.mlm);
  hashModel(h, maria.ar);
  for (const a of [maria.head.weight, maria.head.bias]) h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  if (maria.arToMlm) h.update(new Uint8Array(maria.arToMlm.buffer, maria.arToMlm.byteOffset, maria.arToMlm.byteLength));
  const arDir = bundlePath(maria.dir, maria.manifest.ar);
  for (const name of WEB_TOKENIZER_FILES) {
    const path = join(arDir, name);
    if (!existsSync(path)) continue;
    text(h, name);
    h.update(readFileSync(path));
  }
  return h.digest('hex').slice(0, 20);
}
