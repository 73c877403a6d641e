// Exports a loaded MARIA bundle for the in-browser runner (src/web/browser-maria.ts): the same
// graphs Node runs, compiled by the same builders, as ONNX files with the weights embedded as F32
// initializers, plus the AR's tokenizer files and web-manifest.json.
//
//   mlm.onnx          MaskedLM.compileEncoder with the head's MLM half (no MLM logits): input_ids,
//                     position_ids, attention_mask, head_rows → maria_mlm_logits (+ hidden)
//   ar-step.onnx      CausalLM.compileStep with the head's AR half (keepLogits false): the cached AR
//                     step, inputs head_index / mlm_logits, output maria_logits (+ hidden, present_*)
//   tokenizer.json, tokenizer_config.json, special_tokens_map.json   the AR's, as they are
//   web-manifest.json (last)                                         see manifest.ts
//
// An F16 checkpoint doubles in size here (initializers are F32): a ~7M-parameter model is a ~28 MB
// graph. `maria serve` exports on demand into a content-keyed cache folder (ensureWebExport).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { bundlePath } from '../maria/bundle.js';
import { bundleDigest } from '../maria/digest.js';
import { headExtension, mlmHeadExtension } from '../maria/head.js';
import type { Maria } from '../maria/maria.js';
import { CausalLM } from '../models/causal-lm.js';
import { MaskedLM } from '../models/masked-lm.js';
import { countParameters } from '../models/weights.js';
import { WEB_FORMAT, WEB_GRAPH_FILES, WEB_MANIFEST_FILE, WEB_TOKENIZER_FILES, WEB_VERSION, type WebManifest } from './manifest.js';

const MARIA_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** The AR folder's tokenizer files that exist. */
function tokenizerFiles(maria: Maria): Array<{ name: string; path: string }> {
  const arDir = bundlePath(maria.dir, maria.manifest.ar);
  return WEB_TOKENIZER_FILES.map((name) => ({ name, path: join(arDir, name) })).filter((f) => existsSync(f.path));
}

/**
 * The content key of an export: the bundle's content digest (every weight, both configs, the head,
 * the manifest, the tokenizer files) and the versions of maria and of the export format. The
 * cache it keys saves recompiling and rewriting the graphs.
 */
export function webExportKey(maria: Maria): string {
  return bundleDigest(maria, `${WEB_FORMAT}/${WEB_VERSION}/maria ${MARIA_VERSION}`);
}

/**
 * Writes the web export of `maria` into `outDir` (created if needed; files are replaced
 * atomically, the manifest last). Returns the manifest.
 */
export function exportWeb(maria: Maria, outDir: string, id = webExportKey(maria)): WebManifest {
  mkdirSync(outDir, { recursive: true });
  const files: Record<string, number> = {};
  const write = (name: string, data: Uint8Array): void => {
    writeFileAtomic(join(outDir, name), data);
    files[name] = data.byteLength;
  };
  const { mlm, ar, head, manifest: m } = maria;
  const encoder = MaskedLM.compileEncoder(mlm.family, mlm.config, mlm.params, mlm.dir, { logits: false, extension: mlmHeadExtension(head) });
  write(WEB_GRAPH_FILES.mlm, encoder.bytes);
  const step = CausalLM.compileStep(ar.family, ar.config, ar.params, ar.dir, headExtension(head));
  write(WEB_GRAPH_FILES.arStep, step.bytes);
  for (const f of tokenizerFiles(maria)) write(f.name, readFileSync(f.path));

  // Position ids of an unpadded row (every length is a prefix of the longest), by the family's rule.
  const longest = new Array<number>(mlm.config.maxPositions).fill(m.mlmMaskId);
  const positionIds = mlm.positionIds(longest, longest.map(() => 1));
  const describe = (x: typeof mlm | typeof ar) => ({
    family: x.family.modelTypes[0],
    layers: x.config.numLayers,
    hiddenSize: x.config.hiddenSize,
    vocabSize: x.config.vocabSize,
    maxPositions: x.config.maxPositions,
    parameters: countParameters(x.params),
  });
  const web: WebManifest = {
    format: WEB_FORMAT,
    version: WEB_VERSION,
    id,
    bundle: basename(maria.dir),
    maria: MARIA_VERSION,
    files,
    dtype: 'float32',
    alignment: m.alignment,
    arToMlm: maria.arToMlm ? Array.from(maria.arToMlm) : null,
    mlmMaskId: m.mlmMaskId,
    mlmUnkId: maria.runtime.spec.mlmUnkId,
    mlmPrefixIds: m.mlmPrefixIds,
    mlmSuffixIds: m.mlmSuffixIds,
    arBosId: m.arBosId,
    bannedIds: m.bannedIds,
    vocabSize: head.vocabSize,
    maxTokens: maria.maxTokens,
    mlm: { ...describe(mlm), positionIds },
    ar: { ...describe(ar), ...ar.family.cacheShape(ar.config) },
    head: {
      init: m.head.init,
      mlmHidden: head.mlmHidden,
      arHidden: head.arHidden,
      parameters: head.vocabSize * (head.mlmHidden + head.arHidden) + head.vocabSize,
      training: m.training ?? null,
    },
    graphs: {
      mlm: { inputs: encoder.inputNames, outputs: encoder.outputNames },
      arStep: { inputs: step.inputNames, outputs: step.outputNames },
    },
  };
  writeFileAtomic(join(outDir, WEB_MANIFEST_FILE), JSON.stringify(web, null, 2) + '\n');
  return web;
}

/** Reads a web export's manifest, or null when `dir` holds no complete export. */
export function readWebManifest(dir: string): WebManifest | null {
  const file = join(dir, WEB_MANIFEST_FILE);
  if (!existsSync(file)) return null;
  try {
    const m = JSON.parse(readFileSync(file, 'utf8')) as WebManifest;
    if (m.format !== WEB_FORMAT || m.version !== WEB_VERSION) return null;
    for (const [name, size] of Object.entries(m.files)) {
      if (!existsSync(join(dir, name)) || statSync(join(dir, name)).size !== size) return null;
    }
    return m;
  } catch {
    return null;
  }
}

/**
 * The web export of `maria` under `cacheRoot/<content key>/`, exported first if absent. Another
 * process exporting the same key at the same time is harmless: each writes its own temporary
 * folder and the first rename wins.
 */
export function ensureWebExport(maria: Maria, cacheRoot: string): { dir: string; manifest: WebManifest; exported: boolean } {
  const id = webExportKey(maria);
  const dir = join(cacheRoot, id);
  const existing = readWebManifest(dir);
  if (existing && existing.id === id) return { dir, manifest: existing, exported: false };
  mkdirSync(cacheRoot, { recursive: true });
  const tmp = join(cacheRoot, `.${id}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const manifest = exportWeb(maria, tmp, id);
    try {
      renameSync(tmp, dir);
    } catch (err) {
      // Another process renamed its copy first: use that one. Otherwise `dir` is an incomplete
      // leftover (a crash mid-copy): replace it.
      const theirs = readWebManifest(dir);
      if (theirs) return { dir, manifest: theirs, exported: false };
      if (!existsSync(dir)) throw err;
      rmSync(dir, { recursive: true, force: true });
      renameSync(tmp, dir);
    }
    return { dir, manifest, exported: true };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
