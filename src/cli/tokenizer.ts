// `maria tokenizer train`: train the default byte-level BPE on the training split of the
// pretraining corpus (never on the validation split, never on Brown) and write HF tokenizer files.
import { Command, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { loadBrown, loadPretrainingSplit } from '../data/corpus.js';
import {
  DEFAULT_MODEL_MAX_LENGTH,
  DEFAULT_SPECIAL_TOKENS,
  DEFAULT_VOCAB_SIZE,
  saveTokenizer,
  trainByteLevelBpe,
  validateVocabSize,
} from '../tokenizer/bpe-train.js';

function intArg(name: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got "${value}".`);
    }
    return n;
  };
}

function fractionArg(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n >= 1) {
    throw new InvalidArgumentError(`validation fraction must be a number in [0, 1), got "${value}".`);
  }
  return n;
}

export interface TokenizerTrainCliOptions {
  vocabSize: number;
  out: string;
  validationFraction: number;
  seed: number;
  minFrequency: number;
  modelMaxLength: number;
  verify: boolean;
  progress: boolean;
}

interface EvalStats {
  docs: number;
  chars: number;
  tokens: number;
  charsPerToken: number;
  roundTripFailures: number;
}

// The package's .d.ts files use extensionless relative re-exports, which NodeNext resolution does
// not follow, so `Tokenizer` is typed `any`: describe the part used here.
interface LoadedTokenizer {
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: number[] };
  decode(ids: number[]): string;
}

/** Encode texts with the library tokenizer; count tokens and exact decode(encode(x)) failures. */
function evaluate(tokenizer: LoadedTokenizer, texts: readonly string[]): EvalStats {
  let chars = 0;
  let tokens = 0;
  let roundTripFailures = 0;
  for (const text of texts) {
    const ids = tokenizer.encode(text, { add_special_tokens: false }).ids;
    chars += text.length;
    tokens += ids.length;
    if ((ids.length ? tokenizer.decode(ids) : '') !== text) roundTripFailures++;
  }
  return { docs: texts.length, chars, tokens, charsPerToken: tokens ? chars / tokens : 0, roundTripFailures };
}

export async function runTokenizerTrain(opts: TokenizerTrainCliOptions): Promise<void> {
  validateVocabSize(opts.vocabSize, DEFAULT_SPECIAL_TOKENS.length);
  const t0 = performance.now();
  const split = loadPretrainingSplit({ validationFraction: opts.validationFraction, seed: opts.seed });
  process.stderr.write(
    `corpus: ${split.train.length} training documents (${split.validation.length} held out for validation); ` +
      `training a byte-level BPE with ${opts.vocabSize} tokens\n`,
  );
  const showBar = opts.progress && process.stderr.isTTY === true;
  const bar = new cliProgress.SingleBar(
    {
      format: 'merges |{bar}| {value}/{total} {percentage}% | {rate} merges/s | ETA {eta_formatted}',
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 200,
    },
    cliProgress.Presets.shades_classic,
  );
  let barStarted = false;
  let mergeStart = 0;
  const model = trainByteLevelBpe(
    split.train.map((d) => d.text),
    {
      vocabSize: opts.vocabSize,
      minFrequency: opts.minFrequency,
      onProgress: showBar
        ? (p) => {
            if (p.phase !== 'merge') return;
            if (!barStarted) {
              barStarted = true;
              mergeStart = performance.now();
              bar.start(p.total, 0, { rate: '0' });
            }
            const secs = (performance.now() - mergeStart) / 1000;
            bar.update(p.done, { rate: secs > 0 ? (p.done / secs).toFixed(0) : '-' });
          }
        : undefined,
    },
  );
  if (barStarted) bar.stop();
  const files = saveTokenizer(model, opts.out, { modelMaxLength: opts.modelMaxLength });
  const trainSeconds = (performance.now() - t0) / 1000;
  if (model.vocab.length < opts.vocabSize) {
    process.stderr.write(
      `note: stopped at ${model.vocab.length} tokens: no pair occurs ${opts.minFrequency} or more times\n`,
    );
  }
  const summary: Record<string, unknown> = {
    out: opts.out,
    files,
    vocabSize: model.vocab.length,
    merges: model.merges.length,
    lastMergeCount: model.stats.lastMergeCount,
    trainingDocuments: split.train.length,
    validationDocuments: split.validation.length,
    trainingBytes: model.stats.bytes,
    pretokens: model.stats.words,
    uniquePretokens: model.stats.uniqueWords,
    seconds: Number(trainSeconds.toFixed(2)),
  };
  if (opts.verify) {
    const tokenizer: LoadedTokenizer = new Tokenizer(
      JSON.parse(readFileSync(join(opts.out, 'tokenizer.json'), 'utf8')) as object,
      JSON.parse(readFileSync(join(opts.out, 'tokenizer_config.json'), 'utf8')) as object,
    );
    const validation = evaluate(tokenizer, split.validation.map((d) => d.text));
    const brown = evaluate(tokenizer, loadBrown().map((d) => d.text));
    summary.validation = validation;
    summary.brown = brown;
    if (validation.roundTripFailures || brown.roundTripFailures) {
      process.stderr.write('error: decode(encode(text)) is not exact for some texts\n');
      process.exitCode = 1;
    }
  }
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
}

export function register(program: Command): void {
  const tokenizer = program.command('tokenizer').description('Train and inspect tokenizers');
  tokenizer
    .command('train')
    .description(
      'Train a byte-level BPE on the training split of the pretraining corpus (State of the Union + Moby Dick; ' +
        'never the validation split or Brown) and write tokenizer.json, tokenizer_config.json and special_tokens_map.json',
    )
    .option('--vocab-size <n>', 'vocabulary size, including 5 special tokens and 256 bytes', intArg('vocab size', 261, 1 << 20), DEFAULT_VOCAB_SIZE)
    .option('--out <dir>', 'output folder', 'models/default/tokenizer')
    .option('--validation-fraction <f>', 'fraction of documents (per source) held out for validation', fractionArg, 0.05)
    .option('--seed <n>', 'seed of the train/validation split', intArg('seed', 0, 2 ** 31 - 1), 0)
    .option('--min-frequency <n>', 'stop merging when the best pair is rarer than this', intArg('min frequency', 1), 2)
    .option('--model-max-length <n>', 'model_max_length written to tokenizer_config.json', intArg('model max length', 1), DEFAULT_MODEL_MAX_LENGTH)
    .option('--no-verify', 'skip reloading the files with @huggingface/tokenizers and checking round trips')
    .option('--no-progress', 'no progress bar')
    .action(async (opts: TokenizerTrainCliOptions) => {
      await runTokenizerTrain(opts);
    });
}
