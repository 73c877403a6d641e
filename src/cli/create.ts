// `maria create-bundle --mlm DIR --ar DIR --out BUNDLE [--json]`: pair a masked LM and a causal LM
// into a MARIA bundle whose head is the product-of-experts initialisation (no training). Refuses
// pairs whose vocabularies do not align, saying why (exit code 2).
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { createPoeBundle } from '../maria/create.js';
import { assertFolder } from '../models/load.js';
import { action, usageErrorsExit2 } from './util.js';

interface CreateOptions {
  mlm: string;
  ar: string;
  out: string;
  json?: boolean;
}

async function createCommand(opts: CreateOptions): Promise<void> {
  assertFolder(opts.mlm);
  assertFolder(opts.ar);
  const m = createPoeBundle(opts.mlm, opts.ar, opts.out);
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ bundle: resolve(opts.out), manifest: m })}\n`);
    return;
  }
  process.stdout.write(
    `wrote ${resolve(opts.out)}: MLM ${m.mlm} + AR ${m.ar}, ${m.alignment} token ids, ` +
      `head ${m.head.vocabSize} × (${m.head.mlmHidden} + ${m.head.arHidden}) initialised as the product of experts (untrained; train it with \`maria train-head\`)\n`,
  );
}

export function register(program: Command): void {
  usageErrorsExit2(
    program
      .command('create-bundle')
      .description('pair a masked LM and a causal LM into a MARIA bundle with the product-of-experts head (no training)')
      .requiredOption('--mlm <dir>', 'masked LM folder (Hugging Face layout)')
      .requiredOption('--ar <dir>', 'causal LM folder (Hugging Face layout)')
      .requiredOption('--out <dir>', 'bundle folder to write (maria.json + head.safetensors)')
      .option('--json', 'print {"bundle", "manifest"}')
      .action(action(createCommand)),
  );
}
