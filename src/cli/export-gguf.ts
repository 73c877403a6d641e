// `maria export-gguf MODEL_DIR --out FILE [--dtype F32|F16] [--json]`: write a Llama folder as a
// GGUF file for llama.cpp, with the weights maria runs (see src/export/gguf.ts for what is refused).
import type { Command } from 'commander';
import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { exportGguf } from '../export/gguf.js';
import { assertFolder } from '../models/load.js';
import { action, fail, usageErrorsExit2 } from './util.js';

interface ExportGgufOptions {
  out: string;
  dtype: string;
  json?: boolean;
}

function exportGgufCommand(dir: string, opts: ExportGgufOptions): void {
  assertFolder(dir);
  const dtype = opts.dtype.toUpperCase();
  if (dtype !== 'F32' && dtype !== 'F16') fail(`--dtype: ${JSON.stringify(opts.dtype)} is not F32 or F16`);
  const out = resolve(opts.out);
  if (existsSync(out) && statSync(out).isDirectory()) fail(`--out: ${out} is a folder (give a file name, e.g. model.gguf)`);
  if (!existsSync(dirname(out))) fail(`--out: the folder ${dirname(out)} does not exist`);
  const t0 = performance.now();
  const r = exportGguf(dir, out, { dtype });
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  const vocab = r.preTokenizer ? `byte-level BPE, pre-tokenizer "${r.preTokenizer}"` : 'placeholder tokens (no tokenizer.json: feed token ids)';
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  process.stdout.write(`wrote ${out} in ${seconds} s: ${(r.bytes / 1e6).toFixed(1)} MB, ${r.tensors} tensors (${dtype} matrices, F32 norms), vocabulary of ${r.vocabSize}, ${vocab}\n`);
}

export function register(program: Command): void {
  usageErrorsExit2(
    program
      .command('export-gguf')
      .description('export a Llama model folder as GGUF for llama.cpp (the same weights maria runs)')
      .argument('<model-dir>', 'Hugging Face Llama folder (config.json, safetensors, optional tokenizer.json)')
      .requiredOption('--out <file>', 'GGUF file to write (replaced atomically)')
      .option('--dtype <type>', 'element type of the weight matrices: F32 or F16 (norms stay F32)', 'F32')
      .option('--json', 'print the result as one JSON object')
      .action(action(exportGgufCommand)),
  );
}
