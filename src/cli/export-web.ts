// `maria export-web [--bundle DIR] --out DIR [--json]`: write a bundle's graphs for the in-browser
// runner (onnxruntime-web): mlm.onnx, ar-step.onnx (each with its half of MARIA's head), the AR's
// tokenizer files and web-manifest.json. `maria serve` does the same on demand into
// data/cache/web/<key>/; this command is for hosting the page's in-browser mode elsewhere (any
// static file server).
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { exportWeb } from '../web/export.js';
import { loadBundle } from './infill.js';
import { action, usageErrorsExit2 } from './util.js';

interface ExportWebOptions {
  bundle?: string;
  out: string;
  json?: boolean;
}

async function exportWebCommand(opts: ExportWebOptions): Promise<void> {
  const t0 = performance.now();
  const maria = await loadBundle(opts.bundle, 1);
  try {
    const out = resolve(opts.out);
    const m = exportWeb(maria, out);
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ out, manifest: m })}\n`);
      return;
    }
    const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;
    const total = Object.values(m.files).reduce((a, b) => a + b, 0);
    const list = Object.entries(m.files)
      .map(([name, size]) => `${name} ${mb(size)}`)
      .join(', ');
    process.stdout.write(`wrote ${out} in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${list} (${mb(total)} in all, weights as F32), web-manifest.json (id ${m.id})\n`);
  } finally {
    await maria.release();
  }
}

export function register(program: Command): void {
  usageErrorsExit2(
    program
      .command('export-web')
      .description("export a bundle's ONNX graphs and tokenizer for the page's in-browser mode (onnxruntime-web)")
      .option('--bundle <dir>', 'MARIA bundle folder (default: the bundled models/default)')
      .requiredOption('--out <dir>', 'folder to write (mlm.onnx, ar-step.onnx, tokenizer files, web-manifest.json)')
      .option('--json', 'print {"out", "manifest"}')
      .action(action(exportWebCommand)),
  );
}
