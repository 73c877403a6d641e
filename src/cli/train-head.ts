// `maria train-head`: train MARIA's linear head over a frozen MLM and a frozen AR (L_MARIA), writing
// a bundle with atomic checkpoints and --resume:
//   maria train-head --mlm DIR --ar DIR --data FILE... --out BUNDLE [--steps N] [--batch B]
//     [--length L] [--mask-samples S] [--span-probability p] [--lr X] [--warmup N]
//     [--weight-decay X] [--seed S] [--validate-every N] [--validation-windows N]
//     [--checkpoint-every N] [--max-minutes X] [--resume] [--threads N] [--head-params all|gains-bias|gains]
//     [--keep-best [mean|worst-rate]] [--no-progress]
// --data and --validation-data take text files (paragraphs = documents) and named text sets:
// `corpus` and `corpus-heldout` (the pretraining corpus' train and validation splits), `emails` and
// `emails-heldout` (e-mail prose, a domain the backbones never saw). Without --validation-data a
// held-out 5% of the documents validates (`corpus` alone: `corpus-heldout`). Text is tokenized with the
// AR's tokenizer (MARIA's decoder vocabulary) into a cached token stream under data/cache. Prints a
// JSON summary at the end: the validation L_MARIA per mask rate at the PoE start and at the end.
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isTextSetName, loadTextSet, NAMED_TEXT_SETS, splitTrainValidation } from '../data/corpus.js';
import { HEAD_PARAMS, KEEP_BEST, trainHead, type HeadParams, type KeepBest } from '../maria/train-head.js';
import { assertFolder, readModelInfo } from '../models/load.js';
import { TextTokenizer } from '../tokenizer/tokenizer.js';
import { tokenStream, type TokenStream } from '../train/data.js';
import { action, CliError, paragraphDocuments, parseInteger, parseNumber, trainingProgress, usageErrorsExit2 } from './util.js';

interface TrainHeadCliOptions {
  mlm: string;
  ar: string;
  data: string[];
  validationData?: string[];
  out: string;
  headDtype?: string;
  headParams: string;
  keepBest?: string | boolean;
  steps: string;
  batch: string;
  length: string;
  maskSamples: string;
  spanProbability: string;
  lr: string;
  warmup: string;
  weightDecay: string;
  seed: string;
  validateEvery: string;
  validationWindows: string;
  checkpointEvery: string;
  maxMinutes?: string;
  resume?: boolean;
  threads?: string;
  progress: boolean;
}

type Docs = Array<{ id: string; text: string }>;

/** Documents of --data/--validation-data items: named text sets (see NAMED_TEXT_SETS) or text files. */
function documentsOf(items: string[], flag: string): Docs {
  return items.flatMap((item) => (isTextSetName(item) ? loadTextSet(item) : paragraphDocuments([item], flag)));
}

/**
 * Training and validation documents. Without --validation-data, `corpus` alone validates on
 * `corpus-heldout` (as the backbones did); anything else holds out 5% of its documents.
 */
function headTrainingText(data: string[], validationData: string[] | undefined): { docs: { train: Docs; validation: Docs }; dataLabel: string } {
  const describe = (items: string[]): string => items.map((i) => (isTextSetName(i) ? `${i} (${NAMED_TEXT_SETS[i]})` : i)).join(', ');
  if (validationData) {
    const docs = { train: documentsOf(data, '--data'), validation: documentsOf(validationData, '--validation-data') };
    return { docs, dataLabel: `${describe(data)}: ${docs.train.length} documents, validated on ${describe(validationData)}: ${docs.validation.length} documents` };
  }
  if (data.length === 1 && data[0] === 'corpus') {
    return { docs: { train: loadTextSet('corpus'), validation: loadTextSet('corpus-heldout') }, dataLabel: 'pretraining corpus (train split; validation split held out)' };
  }
  const all = documentsOf(data, '--data');
  if (all.length < 2) throw new CliError(`--data: found ${all.length} document(s); need at least 2 (5% of the documents, at least one, are held out for validation)`);
  const docs = splitTrainValidation(all, { validationFraction: 0.05 });
  return { docs, dataLabel: `${describe(data)} (${docs.train.length} training and ${docs.validation.length} validation documents)` };
}

/** The longest run of ordinary tokens (a document) in a stream. */
function longestDocument(stream: TokenStream, isSpecial: (id: number) => boolean): number {
  let best = 0;
  let run = 0;
  for (const id of stream) {
    run = isSpecial(id) ? 0 : run + 1;
    if (run > best) best = run;
  }
  return best;
}


const mean = (r: Record<string, number>): number => {
  const v = Object.values(r);
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
};

async function trainHeadCommand(opts: TrainHeadCliOptions): Promise<void> {
  const int = (flag: string, v: string, min = 1): number => parseInteger(flag, v, { min });
  const steps = int('--steps', opts.steps);
  const batch = int('--batch', opts.batch);
  const length = int('--length', opts.length, 2);
  const maskSamples = int('--mask-samples', opts.maskSamples);
  const spanProbability = parseNumber('--span-probability', opts.spanProbability, { min: 0, max: 1 });
  const lr = parseNumber('--lr', opts.lr, { min: 0 });
  const warmup = int('--warmup', opts.warmup, 0);
  const weightDecay = parseNumber('--weight-decay', opts.weightDecay, { min: 0 });
  const seed = parseInteger('--seed', opts.seed);
  const validateEvery = int('--validate-every', opts.validateEvery);
  const validationWindows = int('--validation-windows', opts.validationWindows);
  const checkpointEvery = int('--checkpoint-every', opts.checkpointEvery);
  const maxMinutes = opts.maxMinutes !== undefined ? parseNumber('--max-minutes', opts.maxMinutes, { min: 0 }) : undefined;
  const threads = opts.threads !== undefined ? int('--threads', opts.threads) : undefined;
  const headParams = parseHeadParams(opts.headParams);
  const keepBest = parseKeepBest(opts.keepBest);

  assertFolder(opts.mlm);
  assertFolder(opts.ar);
  const mlmInfo = readModelInfo(opts.mlm);
  const arInfo = readModelInfo(opts.ar);
  if (mlmInfo.kind !== 'masked') throw new CliError(`--mlm ${opts.mlm}: model_type "${mlmInfo.modelType}" is not a masked LM`);
  if (arInfo.kind !== 'causal') throw new CliError(`--ar ${opts.ar}: model_type "${arInfo.modelType}" is not a causal LM`);
  // The MLM sees [CLS] window [SEP], the AR [BOS] window[:-1].
  const maxLength = Math.min(mlmInfo.config.maxPositions - 2, arInfo.config.maxPositions);
  if (length > maxLength) throw new CliError(`--length: ${length} tokens do not fit the models (at most ${maxLength})`);

  const tokenizer = TextTokenizer.load(opts.ar);
  const sp = tokenizer.specialTokens;
  const bos = sp.bos ?? sp.eos;
  const eos = sp.eos ?? sp.bos;
  if (!bos || !eos) throw new CliError(`--ar ${opts.ar}: the tokenizer has neither a BOS nor an EOS token to separate documents`);
  const specialCache = new Map<number, boolean>();
  const isSpecial = (id: number): boolean => {
    let s = specialCache.get(id);
    if (s === undefined) specialCache.set(id, (s = id === bos.id || id === eos.id || tokenizer.isSpecialId(id)));
    return s;
  };

  const { docs, dataLabel } = headTrainingText(opts.data, opts.validationData);
  const cacheDir = resolve('data/cache');
  const key = readFileSync(join(opts.ar, 'tokenizer.json'), 'utf8');
  const encode = (t: string): number[] => tokenizer.encode(t).ids;
  const train = tokenStream(docs.train, encode, { bos: bos.id, eos: eos.id }, cacheDir, key);
  const validation = tokenStream(docs.validation, encode, { bos: bos.id, eos: eos.id }, cacheDir, key);
  for (const [name, stream] of [
    ['training', train],
    ['validation', validation],
  ] as const) {
    const longest = longestDocument(stream, isSpecial);
    if (longest < length) throw new CliError(`--length ${length}: the longest ${name} document is ${longest} tokens; use a shorter --length or longer documents`);
  }
  process.stderr.write(`data: ${dataLabel}: ${train.length} training tokens, ${validation.length} validation tokens\n`);

  const progress = trainingProgress('train-head', { bar: opts.progress, rateUnit: 'masked tok' });
  const result = await trainHead({
    mlmDir: opts.mlm,
    arDir: opts.ar,
    out: opts.out,
    train,
    validation,
    steps,
    batch,
    length,
    maskSamples,
    spanProbability,
    lr,
    warmup,
    weightDecay,
    seed,
    validateEvery,
    validationWindows,
    checkpointEvery,
    resume: !!opts.resume,
    maxMinutes,
    isSpecial,
    session: threads ? { threads } : {},
    command: `maria ${process.argv.slice(2).join(' ')}`,
    headDtype: parseHeadDtype(opts.headDtype),
    headParams,
    keepBest,
    shouldStop: progress.shouldStop,
    onStep: (st) => progress.step(st),
    onValidate: (v) => {
      const rates = Object.entries(v.byRate)
        .map(([r, l]) => `${r}: ${l.toFixed(4)}`)
        .join(', ');
      progress.validated(v.loss, `validation at step ${v.step}${v.step === 0 ? ' (PoE start)' : ''}: L_MARIA ${v.loss.toFixed(4)} (${rates})`);
    },
  });
  progress.stop();
  const last = result.validation[result.validation.length - 1];
  const summary = {
    out: resolve(opts.out),
    steps: result.steps,
    finished: result.finished,
    validation: {
      poe: { mean: mean(result.poe), byRate: result.poe },
      final: last ? { step: last.step, mean: last.loss, byRate: last.byRate } : null,
      ...(opts.keepBest && result.best ? { kept: { step: result.best.step, mean: result.best.loss, byRate: result.best.byRate } } : {}),
    },
    wallSeconds: Math.round(result.wallSeconds),
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

function parseHeadDtype(value: string | undefined): 'F32' | 'F16' {
  const v = (value ?? 'F32').toUpperCase();
  if (v !== 'F32' && v !== 'F16') throw new CliError(`--head-dtype must be F32 or F16, got "${value}"`);
  return v;
}

function parseKeepBest(value: string | boolean | undefined): KeepBest | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return 'mean';
  const found = KEEP_BEST.find((k) => k === value);
  if (!found) throw new CliError(`--keep-best takes ${KEEP_BEST.join(' or ')}, got "${value}"`);
  return found;
}

function parseHeadParams(value: string): HeadParams {
  const found = HEAD_PARAMS.find((p) => p === value);
  if (!found) throw new CliError(`--head-params must be one of ${HEAD_PARAMS.join(', ')}, got "${value}"`);
  return found;
}

export function register(program: Command): void {
  usageErrorsExit2(
    program
      .command('train-head')
      .description("train MARIA's linear head over a frozen masked LM and a frozen causal LM (L_MARIA), writing a bundle")
      .requiredOption('--mlm <dir>', 'masked LM folder (Hugging Face layout)')
      .requiredOption('--ar <dir>', 'causal LM folder (Hugging Face layout)')
      .requiredOption('--data <sets...>', `text files (paragraphs = documents) or named sets: ${Object.keys(NAMED_TEXT_SETS).join(', ')}`)
      .option('--validation-data <sets...>', 'validate on these files or named sets (all of them) instead of 5% of --data, e.g. another domain')
      .requiredOption('--out <dir>', 'bundle folder to write (checkpoints go here too)')
      .option('--steps <n>', 'optimiser steps', '2000')
      .option('--batch <n>', 'text windows per step', '16')
      .option('--length <n>', 'tokens per window', '128')
      .option('--mask-samples <n>', 'mask samples per batch of windows (the AR features are reused)', '4')
      .option('--span-probability <p>', 'probability that a window is span-masked instead of i.i.d.', '0.25')
      .option('--lr <x>', 'peak learning rate (AdamW, warm-up then cosine)', '1e-4')
      .option('--warmup <n>', 'warm-up steps', '100')
      .option('--weight-decay <x>', 'AdamW weight decay', '0')
      .option('--seed <n>', 'seed of data order and masks', '0')
      .option('--validate-every <n>', 'steps between validations', '200')
      .option('--validation-windows <n>', 'windows in the fixed validation set', '32')
      .option('--checkpoint-every <n>', 'steps between checkpoints', '200')
      .option('--max-minutes <x>', 'stop after this long (with a checkpoint); resume later')
      .option('--resume', 'continue from the checkpoint in --out')
      .option('--threads <n>', 'ONNX Runtime threads (default: MARIA_THREADS or all cores)')
      .option('--head-params <which>', `what trains: ${HEAD_PARAMS.join(' | ')} (gains = a calibrated product of experts)`, 'all')
      .option('--keep-best [criterion]', `keep the best validated head (the PoE start included), not the last: early stopping, e.g. on text of another domain; criterion ${KEEP_BEST.join(' | ')} (default mean)`)
      .option('--head-dtype <t>', 'how the head is stored in the bundle: F32 or F16 (computation is F32)', 'F32')
      .option('--no-progress', 'no progress bar (log lines instead)')
      .action(action(trainHeadCommand)),
  );
}
