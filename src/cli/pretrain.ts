// `maria pretrain`: train the default masked LM or causal LM (or any config.json of a supported
// family) from scratch on the pretraining corpus, with progress, validation, atomic checkpoints
// and --resume.
import type { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadPretrainingSplit } from '../data/corpus.js';
import { HfConfig } from '../models/config.js';
import { familyFor } from '../models/registry.js';
import { TextTokenizer } from '../tokenizer/tokenizer.js';
import { tokenStream } from '../train/data.js';
import { PRESETS } from '../train/presets.js';
import { pretrain } from '../train/pretrain.js';
import { action, fail, intOption, numberOption, paragraphDocuments, trainingProgress, usageErrorsExit2 } from './util.js';

export function register(program: Command): void {
  const cmd = program
    .command('pretrain')
    .description('pretrain a masked LM (masked-diffusion objective) or a causal LM from scratch')
    .option('--preset <name>', `model preset: ${Object.keys(PRESETS).join(', ')}`)
    .option('--config <file>', 'an HF config.json to train instead of a preset')
    .option('--tokenizer <dir>', 'tokenizer folder', 'models/default/tokenizer')
    .requiredOption('--out <dir>', 'output folder (HF layout; checkpoints go here too)')
    .option('--train-file <file>', 'train on this text file instead of the pretraining corpus (paragraphs = documents)')
    .option('--validation-file <file>', 'validate on this text file (with --train-file)')
    .option('--steps <n>', 'optimiser steps', intOption('--steps', { min: 1 }), 6000)
    .option('--batch <n>', 'sequences per step', intOption('--batch', { min: 1 }), 16)
    .option('--seq-len <n>', 'tokens per sequence', intOption('--seq-len', { min: 8 }), 256)
    .option('--lr <x>', 'peak learning rate', numberOption('--lr', { min: 0 }), 2e-3)
    .option('--warmup <n>', 'warm-up steps', intOption('--warmup', { min: 0 }), 200)
    .option('--min-lr-ratio <x>', 'final learning rate as a fraction of the peak', numberOption('--min-lr-ratio', { min: 0 }), 0.1)
    .option('--weight-decay <x>', 'AdamW weight decay', numberOption('--weight-decay', { min: 0 }), 0.1)
    .option('--seed <n>', 'seed of initialisation, data order and masks', intOption('--seed', { min: 0 }), 0)
    .option('--validate-every <n>', 'steps between validations', intOption('--validate-every', { min: 1 }), 250)
    .option('--validation-batches <n>', 'batches in the validation set', intOption('--validation-batches', { min: 1 }), 10)
    .option('--checkpoint-every <n>', 'steps between checkpoints', intOption('--checkpoint-every', { min: 1 }), 250)
    .option('--max-minutes <x>', 'stop after this long (with a checkpoint); resume later', numberOption('--max-minutes', { min: 0 }))
    .option('--resume', 'continue from the checkpoint in --out')
    .option('--init-from <dir>', 'start from the weights of this model folder (same architecture) with a fresh optimiser and schedule')
    .option('--objective <name>', 'masked LM loss: masked-mean (mean NLL of the masked tokens) or mdlm (the MDLM ELBO, 1/r-weighted)', 'masked-mean')
    .option('--mask-rate-range <lo,hi>', 'masked LM: draw each window\'s mask rate from U(lo, hi) instead of U(0, 1), e.g. 0.05,0.4')
    .option('--dtype <t>', 'stored weight type: F32 or F16 (compute is always F32)', 'F16')
    .option('--threads <n>', 'ORT threads (default: all cores)', intOption('--threads', { min: 1 }))
    .option('--no-progress', 'no progress bar')
    .action(action(async (opts) => {
      if (!!opts.preset === !!opts.config) fail('give exactly one of --preset NAME or --config FILE');
      if (opts.dtype !== 'F32' && opts.dtype !== 'F16') fail(`--dtype must be F32 or F16, got "${opts.dtype}"`);
      if (opts.objective !== 'masked-mean' && opts.objective !== 'mdlm') fail(`--objective must be masked-mean or mdlm, got "${opts.objective}"`);
      let maskRateRange: [number, number] | undefined;
      if (opts.maskRateRange !== undefined) {
        const parts = String(opts.maskRateRange).split(',').map(Number);
        if (parts.length !== 2 || !parts.every(Number.isFinite) || !(parts[0] >= 0 && parts[0] < parts[1] && parts[1] <= 1)) {
          fail(`--mask-rate-range must be lo,hi with 0 ≤ lo < hi ≤ 1, got "${opts.maskRateRange}"`);
        }
        maskRateRange = [parts[0], parts[1]];
      }
      const tokenizer = TextTokenizer.load(opts.tokenizer);
      const sp = tokenizer.specialTokens;
      if (!sp.bos || !sp.eos || !sp.mask || !sp.pad) fail(`${opts.tokenizer}: the tokenizer needs BOS, EOS, MASK and PAD special tokens`);
      let config: Record<string, unknown>;
      if (opts.preset) {
        const preset = PRESETS[opts.preset as string];
        if (!preset) fail(`unknown preset "${opts.preset}" (choose from ${Object.keys(PRESETS).join(', ')})`);
        config = preset.config(tokenizer.vocabSize);
      } else {
        if (!existsSync(opts.config)) fail(`--config ${opts.config}: no such file`);
        try {
          config = JSON.parse(readFileSync(opts.config, 'utf8')) as Record<string, unknown>;
        } catch (err) {
          fail(`--config ${opts.config}: not valid JSON (${(err as Error).message})`);
        }
      }
      const kind = familyFor(new HfConfig(config, opts.config ?? opts.preset)).kind;
      if (opts.objective === 'mdlm' && kind !== 'masked') fail('--objective mdlm applies to masked LMs only (this config is a causal LM)');
      if (maskRateRange && kind !== 'masked') fail('--mask-rate-range applies to masked LMs only (this config is a causal LM)');
      let docs: { train: Array<{ id: string; text: string }>; validation: Array<{ id: string; text: string }> };
      if (opts.trainFile) {
        docs = {
          train: paragraphDocuments([opts.trainFile], '--train-file'),
          validation: paragraphDocuments([opts.validationFile ?? opts.trainFile], opts.validationFile ? '--validation-file' : '--train-file'),
        };
      } else {
        docs = loadPretrainingSplit();
      }
      const cacheDir = resolve('data/cache');
      const encode = (t: string): number[] => tokenizer.encode(t).ids;
      const specials = { bos: sp.bos!.id, eos: sp.eos!.id };
      const key = readFileSync(join(opts.tokenizer, 'tokenizer.json'), 'utf8');
      const train = tokenStream(docs.train, encode, specials, cacheDir, key);
      const validation = tokenStream(docs.validation, encode, specials, cacheDir, key);
      process.stderr.write(`data: ${train.length} training tokens, ${validation.length} validation tokens\n`);

      const progress = trainingProgress('pretrain', { bar: opts.progress, rateUnit: 'tok' });
      const result = await pretrain({
        config,
        train,
        validation,
        tokenizerDir: opts.tokenizer,
        out: opts.out,
        steps: opts.steps,
        batch: opts.batch,
        seqLen: opts.seqLen,
        lr: opts.lr,
        warmup: opts.warmup,
        minLrRatio: opts.minLrRatio,
        weightDecay: opts.weightDecay,
        seed: opts.seed,
        validateEvery: opts.validateEvery,
        validationBatches: opts.validationBatches,
        checkpointEvery: opts.checkpointEvery,
        resume: !!opts.resume,
        maxMinutes: opts.maxMinutes,
        saveDtype: opts.dtype,
        initFrom: opts.initFrom,
        objective: opts.objective,
        maskRateRange,
        threads: opts.threads,
        specials: { bos: sp.bos!.id, eos: sp.eos!.id, mask: sp.mask!.id, pad: sp.pad!.id, isSpecial: (id) => tokenizer.isSpecialId(id) },
        shouldStop: progress.shouldStop,
        onStep: (st) => progress.step(st),
        onValidate: (v) => progress.validated(v.loss, `validation at step ${v.step}: loss ${v.loss.toFixed(4)}`),
      });
      progress.stop();
      process.stdout.write(JSON.stringify(result) + '\n');
    }));
  usageErrorsExit2(cmd);
}
