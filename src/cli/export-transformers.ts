// `maria export-transformers MODEL_DIR --out DIR [--force] [--json]`: write a masked LM (ModernBERT,
// BERT, RoBERTa) as a transformers.js model folder (config.json, tokenizer files, onnx/model.onnx
// with F32 weights), so transformers.js can run maria's weights offline, e.g. to compare the two
// runtimes on the same model.
import type { Command } from 'commander';
import { exportTransformersJs } from '../export/transformers-js.js';
import { action, usageErrorsExit2 } from './util.js';

interface ExportTransformersOptions {
  out: string;
  force?: boolean;
  json?: boolean;
}

function exportTransformersCommand(modelDir: string, opts: ExportTransformersOptions): void {
  const t0 = performance.now();
  const r = exportTransformersJs(modelDir, opts.out, { overwrite: opts.force ?? false });
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;
  const list = Object.entries(r.files)
    .map(([name, size]) => `${name} ${mb(size)}`)
    .join(', ');
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  process.stdout.write(`wrote ${r.dir} in ${seconds} s (${r.modelType}, ${r.parameters} parameters as F32; ${r.inputNames.join(', ')} → ${r.outputNames.join(', ')}): ${list}\n`);
}

export function register(program: Command): void {
  usageErrorsExit2(
    program
      .command('export-transformers')
      .description('export a masked LM (ModernBERT, BERT, RoBERTa) as a transformers.js model folder (onnx/model.onnx, F32)')
      .argument('<model-dir>', 'Hugging Face masked-LM folder (config.json + safetensors), e.g. models/default/mlm')
      .requiredOption('--out <dir>', 'folder to write (config.json, tokenizer files, onnx/model.onnx)')
      .option('--force', 'replace --out when it exists and is not empty')
      .option('--json', 'print what was written as JSON')
      .action(action(exportTransformersCommand)),
  );
}
