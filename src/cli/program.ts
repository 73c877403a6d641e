// The `maria` command: a thin layer over the library. Each subcommand lives in its own file under
// src/cli/ and exports `register(program)`; add it to the list below. (Started by main.ts.)
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import * as tokenizerCommand from './tokenizer.js';
import * as inspectCommand from './inspect.js';
import * as pretrainCommand from './pretrain.js';
import * as infillCommand from './infill.js';
import * as scoreCommand from './score.js';
import * as trainHeadCommand from './train-head.js';
import * as createBundleCommand from './create.js';
import * as serveCommand from './serve.js';
import * as exportWebCommand from './export-web.js';
import * as exportGgufCommand from './export-gguf.js';
import * as exportTransformersCommand from './export-transformers.js';
import * as evaluateModelsCommand from './evaluate-models.js';
import * as evalCommand from './eval.js';
import * as generateCommand from './generate.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

// Output piped into a reader that stops early (`maria … | head`) is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

const program = new Command();
program
  .name('maria')
  .description('Masked infilling with autoregressive language models (MARIA), on ONNX Runtime')
  .version(pkg.version);

const commandModules: Array<{ register(program: Command): void }> = [
  tokenizerCommand,
  inspectCommand,
  pretrainCommand,
  infillCommand,
  scoreCommand,
  trainHeadCommand,
  createBundleCommand,
  serveCommand,
  exportWebCommand,
  exportGgufCommand,
  exportTransformersCommand,
  evaluateModelsCommand,
  evalCommand,
  generateCommand,
];
for (const m of commandModules) m.register(program);

await program.parseAsync(process.argv);
