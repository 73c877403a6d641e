// Creating a MARIA bundle from two model folders: check that the vocabularies align, work out the
// special tokens each model expects, and initialise the head as the product of experts.
import { mkdirSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { HfConfig } from '../models/config.js';
import { familyFor } from '../models/registry.js';
import { loadParams } from '../models/weights.js';
import { loadModelTokenizer } from '../models/load.js';
import { pairTokenizers } from '../tokenizer/pairing.js';
import { BUNDLE_FORMAT, BUNDLE_VERSION, BundleError, writeBundle, type BundleManifest } from './bundle.js';
import { expertHead, productOfExperts, type HeadWeights } from './head.js';

export interface PairedModels {
  manifest: BundleManifest;
  head: HeadWeights;
  /** AR id → MLM id, or null when ids are identical. */
  arToMlm: Int32Array | null;
  /** The MLM's unknown token (null when it has none). */
  mlmUnkId: number | null;
}

/**
 * Inspects an MLM folder and an AR folder and builds the manifest and the product-of-experts head
 * for a bundle at `outDir` (paths in the manifest are relative to it). Refuses pairs that do not
 * align, saying why.
 */
export function pairModels(mlmDir: string, arDir: string, outDir: string): PairedModels {
  const mlmHf = HfConfig.load(mlmDir);
  const arHf = HfConfig.load(arDir);
  const mlmFamily = familyFor(mlmHf);
  const arFamily = familyFor(arHf);
  if (mlmFamily.kind !== 'masked') throw new BundleError(`${mlmDir}: "${mlmHf.modelType()}" is not a masked LM; --mlm needs one (BERT, RoBERTa, ModernBERT)`);
  if (arFamily.kind !== 'causal') throw new BundleError(`${arDir}: "${arHf.modelType()}" is not a causal LM; --ar needs one (Llama, OLMo, Qwen2, GPT-2, …)`);
  const mlmConfig = mlmFamily.parseConfig(mlmHf);
  const arConfig = arFamily.parseConfig(arHf);
  const mlmTok = loadModelTokenizer(mlmDir, mlmConfig.vocabSize);
  const arTok = loadModelTokenizer(arDir, arConfig.vocabSize);
  const pairing = pairTokenizers(mlmTok, arTok, { mlmVocabSize: mlmConfig.vocabSize, arVocabSize: arConfig.vocabSize });
  if (pairing.kind === 'incompatible') throw new BundleError(`the MLM (${mlmDir}) and the AR (${arDir}) cannot be paired: ${pairing.reason}`);

  const mlmSp = mlmTok.specialTokens;
  const arSp = arTok.specialTokens;
  if (!mlmSp.mask) throw new BundleError(`${mlmDir}: the tokenizer has no mask token`);
  const bos = arSp.bos ?? arSp.eos;
  if (!bos) throw new BundleError(`${arDir}: the tokenizer has neither a BOS nor an EOS token to start the AR from`);
  const prefix = mlmSp.cls ?? mlmSp.bos;
  const suffix = mlmSp.sep ?? mlmSp.eos;

  const mlmParams = loadParams(mlmDir, mlmFamily.params(mlmConfig as never));
  const arParams = loadParams(arDir, arFamily.params(arConfig as never));
  const mlmHead = expertHead(mlmParams, mlmFamily.outputHead(mlmConfig as never));
  const arHead = expertHead(arParams, arFamily.outputHead(arConfig as never));
  const arToMlm = pairing.kind === 'id-map' ? pairing.arToMlm : null;
  const head = productOfExperts(mlmHead, arHead, arToMlm);

  const banned = new Set<number>();
  for (const s of Object.values(arSp)) if (s && s.id < arConfig.vocabSize) banned.add(s.id);
  // Rows past the AR tokenizer's vocabulary are padding: never produce them.
  for (let id = pairing.arTokenizerSize; id < arConfig.vocabSize; id++) banned.add(id);

  mkdirSync(outDir, { recursive: true });
  const rel = (p: string): string => relative(resolve(outDir), resolve(p)) || '.';
  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT,
    version: BUNDLE_VERSION,
    mlm: rel(mlmDir),
    ar: rel(arDir),
    alignment: pairing.kind,
    mlmMaskId: mlmSp.mask.id,
    mlmPrefixIds: prefix ? [prefix.id] : [],
    mlmSuffixIds: suffix ? [suffix.id] : [],
    arBosId: bos.id,
    bannedIds: [...banned].sort((a, b) => a - b),
    head: { file: 'head.safetensors', vocabSize: head.vocabSize, mlmHidden: head.mlmHidden, arHidden: head.arHidden, init: 'product-of-experts' },
  };
  return { manifest, head, arToMlm, mlmUnkId: mlmSp.unk?.id ?? null };
}

/** Writes a bundle whose head is the product-of-experts initialisation (no training). */
export function createPoeBundle(mlmDir: string, arDir: string, outDir: string): BundleManifest {
  const { manifest, head } = pairModels(mlmDir, arDir, outDir);
  writeBundle(outDir, manifest, head);
  return manifest;
}
