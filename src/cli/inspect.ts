// Inspection commands (their output format is a contract used by outside checks; keep it exactly):
//   maria forward MODEL_DIR --ids 5,17,42 [--attention-mask 1,1,0] [--incremental K] [--json]
//     → {"hidden": number[][], "logits": number[][]} (rows = positions)
//   maria tokenize MODEL_DIR --text "..." [--special] [--json]   → {"ids": number[], "tokens": string[]}
//   maria pair MLM_DIR AR_DIR [--json]   (exit 1 when the pair is incompatible)
// User errors: one line on stderr, exit code 2.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { CausalLM } from '../models/causal-lm.js';
import { HfConfig } from '../models/config.js';
import { checkTokenizerFits, loadModel, loadTokenizerIfPresent, readModelInfo, assertFolder } from '../models/load.js';
import type { MaskedLM } from '../models/masked-lm.js';
import { familyFor } from '../models/registry.js';
import { pairTokenizers, type Pairing } from '../tokenizer/pairing.js';
import type { TextTokenizer } from '../tokenizer/tokenizer.js';
import { action, fail, parseInteger, parseIntList, usageErrorsExit2 } from './util.js';

export interface ForwardRows {
  /** Per position, the vector the output matrix consumes. */
  hidden: number[][];
  /** Per position, the logits. */
  logits: number[][];
}

function rowsOf(flat: Float32Array, T: number): number[][] {
  const width = flat.length / T;
  return Array.from({ length: T }, (_, t) => Array.from(flat.subarray(t * width, (t + 1) * width)));
}

/**
 * A causal forward pass over one sequence. Without a mask and without `incremental`, one call over
 * the whole sequence. With `incremental` K, the first K ids are prefilled and the rest fed one at a
 * time through the KV cache. With a mask, positions stay 0..T-1 (as in a plain HF forward) and keys
 * with mask 0 are hidden from every later query: each padding token is fed on its own and its
 * cache entry then marked invalid, so real tokens never attend to it.
 */
export async function causalForward(lm: CausalLM, ids: number[], mask: number[] | null, incremental: number | null): Promise<ForwardRows> {
  const n = ids.length;
  const chunks: Array<[number, number]> = [];
  const pushSplitAtPads = (s: number, e: number): void => {
    let start = s;
    for (let i = s; i < e; i++) {
      if (mask && mask[i] === 0) {
        if (i > start) chunks.push([start, i]);
        chunks.push([i, i + 1]);
        start = i + 1;
      }
    }
    if (e > start) chunks.push([start, e]);
  };
  if (incremental === null) pushSplitAtPads(0, n);
  else {
    if (incremental > 0) pushSplitAtPads(0, incremental);
    for (let i = incremental; i < n; i++) chunks.push([i, i + 1]);
  }
  const cache = lm.newCache(1);
  const hidden: number[][] = [];
  const logits: number[][] = [];
  for (const [s, e] of chunks) {
    const out = await lm.step(cache, [ids.slice(s, e)]);
    hidden.push(...rowsOf(out.hidden, out.T));
    logits.push(...rowsOf(out.logits, out.T));
    if (mask) for (let i = s; i < e; i++) if (mask[i] === 0) cache.valid[i] = 0n; // row 0, slot i
  }
  return { hidden, logits };
}

/** One bidirectional pass of a masked LM over one sequence with an attention mask. */
export async function maskedForward(lm: MaskedLM, ids: number[], mask: number[] | null): Promise<ForwardRows> {
  const out = await lm.forward([ids], mask ? { masks: [mask] } : {});
  return { hidden: rowsOf(out.hidden, out.T), logits: rowsOf(out.logits, out.T) };
}

interface ForwardOptions {
  ids: string;
  attentionMask?: string;
  incremental?: string;
  threads?: string;
  json?: boolean;
}

async function forwardCommand(dir: string, opts: ForwardOptions): Promise<void> {
  assertFolder(dir);
  const ids = parseIntList('--ids', opts.ids, { min: 0 });
  const info = readModelInfo(dir);
  const { vocabSize, maxPositions } = info.config;
  ids.forEach((id, i) => {
    if (id >= vocabSize) fail(`--ids: item ${i + 1} is ${id}, but the model's vocabulary has ${vocabSize} ids (0..${vocabSize - 1})`);
  });
  if (ids.length > maxPositions) fail(`--ids: ${ids.length} ids exceed the model's context of ${maxPositions} positions`);
  let mask: number[] | null = null;
  if (opts.attentionMask !== undefined) {
    mask = parseIntList('--attention-mask', opts.attentionMask, { min: 0, max: 1 });
    if (mask.length !== ids.length) fail(`--attention-mask: ${mask.length} values for ${ids.length} ids (need one 0/1 per id)`);
    if (!mask.includes(1)) fail('--attention-mask: every position is masked out (need at least one 1)');
  }
  let incremental: number | null = null;
  if (opts.incremental !== undefined) {
    if (info.kind !== 'causal') fail(`--incremental: ${dir} is a masked LM (model_type "${info.modelType}"); incremental decoding needs a causal LM`);
    incremental = parseInteger('--incremental', opts.incremental, { min: 0, max: ids.length });
  }
  const threads = opts.threads !== undefined ? parseInteger('--threads', opts.threads, { min: 1 }) : undefined;

  const loaded = await loadModel(dir, threads ? { threads } : {});
  const rows = loaded.kind === 'causal' ? await causalForward(loaded.model, ids, mask, incremental) : await maskedForward(loaded.model, ids, mask);
  await loaded.model.release();

  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ hidden: rows.hidden, logits: rows.logits })}\n`);
    return;
  }
  const name = basename(resolve(dir));
  const mode = loaded.kind === 'masked' ? 'one bidirectional pass' : incremental === null ? 'full sequence' : `prefill ${incremental}, then ${ids.length - incremental} single-token steps through the KV cache`;
  const lines = [
    `${name}: ${info.modelType} (${loaded.kind} LM), ${mode}`,
    `hidden: ${rows.hidden.length} × ${rows.hidden[0]?.length ?? 0}   logits: ${rows.logits.length} × ${rows.logits[0]?.length ?? 0}`,
    ['pos', 'id', ...(mask ? ['mask'] : []), 'argmax', 'max logit', 'hidden[0..3]'].join('\t'),
  ];
  rows.logits.forEach((l, t) => {
    let best = 0;
    for (let v = 1; v < l.length; v++) if (l[v] > l[best]) best = v;
    const h = rows.hidden[t].slice(0, 4).map((x) => x.toFixed(5)).join(', ');
    lines.push([t, ids[t], ...(mask ? [mask[t]] : []), best, l[best].toFixed(5), `[${h}${rows.hidden[t].length > 4 ? ', …' : ''}]`].join('\t'));
  });
  process.stdout.write(`${lines.join('\n')}\n`);
}

interface TokenizeOptions {
  text?: string;
  special?: boolean;
  json?: boolean;
}

function requireTokenizer(dir: string): TextTokenizer {
  const tok = loadTokenizerIfPresent(dir);
  if (!tok) fail(`${dir}: no tokenizer.json in this folder (maria needs a Hugging Face tokenizer.json)`);
  // In a model folder the tokenizer must fit the embedding (a tokenizer-only folder has no config).
  if (existsSync(join(dir, 'config.json'))) {
    const config = HfConfig.load(dir);
    if (config.has('vocab_size', 'n_vocab')) checkTokenizerFits(dir, tok, config.int(['vocab_size', 'n_vocab']));
  }
  return tok;
}

function tokenizeCommand(dir: string, opts: TokenizeOptions): void {
  if (opts.text === undefined) fail('tokenize: --text is required');
  const tok = requireTokenizer(dir);
  const { ids, tokens } = tok.encode(opts.text, { addSpecialTokens: opts.special === true });
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ ids, tokens })}\n`);
    return;
  }
  const lines = [`${ids.length} tokens (${opts.special ? 'with' : 'without'} special tokens)`];
  ids.forEach((id, i) => lines.push(`${id}\t${JSON.stringify(tokens[i])}`));
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** The embedding rows of a folder's model (config vocab_size), or the tokenizer's size without config.json. */
function modelVocabSize(dir: string, tok: TextTokenizer): { size: number; from: string } {
  let hf: HfConfig;
  try {
    hf = HfConfig.load(dir);
  } catch {
    return { size: tok.vocabSize, from: 'tokenizer (no usable config.json)' };
  }
  try {
    return { size: familyFor(hf).parseConfig(hf).vocabSize, from: 'config.json' };
  } catch {
    // A family maria cannot run yet still has a vocabulary size.
    return { size: hf.int(['vocab_size', 'n_vocab', 'padded_vocab_size']), from: 'config.json' };
  }
}

interface PairOptions {
  json?: boolean;
}

function pairCommand(mlmDir: string, arDir: string, opts: PairOptions): void {
  const mlm = requireTokenizer(mlmDir);
  const ar = requireTokenizer(arDir);
  const mlmSize = modelVocabSize(mlmDir, mlm);
  const arSize = modelVocabSize(arDir, ar);
  const p: Pairing = pairTokenizers(mlm, ar, { mlmVocabSize: mlmSize.size, arVocabSize: arSize.size });
  if (opts.json) {
    const { arToMlm: _map, ...rest } = p;
    const examples: Array<{ arId: number; arToken: string | null; mlmId: number }> = [];
    if (p.kind !== 'incompatible') {
      for (const id of [0, 1, 2, 100, 1000, 10000, p.arVocabSize - 1]) {
        if (id < p.arVocabSize && !examples.some((e) => e.arId === id)) examples.push({ arId: id, arToken: ar.idToToken(id), mlmId: p.arToMlm[id] });
      }
    }
    const mapped = p.arToMlm.reduce((n, v) => n + (v >= 0 ? 1 : 0), 0);
    process.stdout.write(`${JSON.stringify({ ...rest, mlmDir, arDir, mapped, mapExamples: examples, mlmScheme: mlm.scheme, arScheme: ar.scheme })}\n`);
  } else {
    const lines = [
      `kind: ${p.kind}`,
      `coverage: ${(100 * p.coverage).toFixed(2)}% of the AR's tokens are in the MLM vocabulary`,
      `MLM ${mlmDir}: ${p.mlmTokenizerSize} tokenizer ids, ${p.mlmVocabSize} embedding rows (${mlmSize.from}), ${mlm.scheme}, mask ${mlm.specialTokens.mask ? JSON.stringify(mlm.specialTokens.mask.token) + ' = ' + mlm.specialTokens.mask.id : 'none'}`,
      `AR  ${arDir}: ${p.arTokenizerSize} tokenizer ids, ${p.arVocabSize} embedding rows (${arSize.from}), ${ar.scheme}`,
      `reason: ${p.reason}`,
    ];
    if (p.mismatches.length) {
      lines.push('examples:');
      for (const m of p.mismatches) {
        lines.push(`  AR ${m.arId} ${JSON.stringify(m.arToken)} → ${m.mlmId === null ? 'missing in the MLM' : `MLM ${m.mlmId} ${JSON.stringify(m.mlmToken)}`} (${m.kind})`);
      }
    }
    if (p.segmentation) {
      lines.push(`segmentation differs on ${JSON.stringify(p.segmentation.text)} at token ${p.segmentation.at}:`);
      lines.push(`  MLM ${JSON.stringify(p.segmentation.mlm)}`);
      lines.push(`  AR  ${JSON.stringify(p.segmentation.ar)}`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  if (p.kind === 'incompatible') process.exitCode = 1;
}

export function register(program: Command): void {
  usageErrorsExit2(
    program
      .command('forward')
      .description('run a model folder on token ids and print hidden states and logits per position')
      .argument('<model-dir>', 'Hugging Face model folder (config.json + safetensors)')
      .requiredOption('--ids <list>', 'comma-separated token ids, e.g. 5,17,42')
      .option('--attention-mask <list>', 'comma-separated 0/1 per id (0 = padding, hidden from every query)')
      .option('--incremental <K>', 'causal LMs: prefill the first K ids, then feed the rest one at a time through the KV cache')
      .option('--threads <n>', 'ONNX Runtime threads (default: MARIA_THREADS or all cores)')
      .option('--json', 'print {"hidden": [[...]], "logits": [[...]]}')
      .action(action(forwardCommand)),
  );
  usageErrorsExit2(
    program
      .command('tokenize')
      .description("encode text with a model folder's tokenizer.json")
      .argument('<model-dir>', 'folder holding tokenizer.json')
      .requiredOption('--text <text>', 'the text to encode')
      .option('--special', "add the tokenizer's special tokens (e.g. [CLS] … [SEP], BOS)")
      .option('--json', 'print {"ids": [...], "tokens": [...]}')
      .action(action(tokenizeCommand)),
  );
  usageErrorsExit2(
    program
      .command('pair')
      .description("check whether an MLM's and an AR model's tokenizers can share MARIA's decoder vocabulary (exit 1 if not)")
      .argument('<mlm-dir>', 'masked LM folder (tokenizer.json, config.json)')
      .argument('<ar-dir>', 'autoregressive LM folder (tokenizer.json, config.json)')
      .option('--json', 'print the result as one JSON object')
      .action(action(pairCommand)),
  );
}
