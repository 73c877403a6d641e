// `maria score`: the NLL of the true tokens of a text at masked positions (contract used by outside
// checks; keep it exactly):
//   maria score --text "ORIGINAL" (--mask-rate R [--seed S] [--spans] | --mask POSITIONS)
//               [--bundle DIR] [--method maria|mlm-l2r|mlm-oneshot|ar|mdlm] [--json] [--threads N]
//   --json → {"nll": number, "tokens": number, "method": string}
//   nll = mean negative log-likelihood per masked token (natural log; for mdlm an upper bound, the
//   ELBO); tokens = the number of masked tokens.
// The masked positions depend only on the text (its ids under the bundle's AR tokenizer), the rate,
// the seed and --spans — never on the method — so methods are compared on identical masks.
import type { Command } from 'commander';
import { METHODS, releaseBaselines, scoreWithMethod } from '../maria/baselines.js';
import { positionsMask, randomMask, spanMask } from '../maria/masks.js';
import { scoreJson } from '../maria/shapes.js';
import { loadBundle } from './infill.js';
import { action, CliError, parseInteger, parseIntList, parseNumber, usageErrorsExit2 } from './util.js';

interface ScoreCliOptions {
  text: string;
  maskRate?: string;
  seed?: string;
  mask?: string;
  spans?: boolean;
  bundle?: string;
  method: string;
  threads?: string;
  json?: boolean;
}

/** The mask for a scoring run: from the ids, the rate and the seed (or explicit positions) only. */
export function scoringMask(ids: number[], o: { rate?: number; seed: number; spans: boolean; positions?: number[] }): boolean[] {
  if (o.positions) return positionsMask(ids.length, o.positions);
  return o.spans ? spanMask(ids, o.rate!, o.seed) : randomMask(ids, o.rate!, o.seed);
}

async function scoreCommand(opts: ScoreCliOptions): Promise<void> {
  if ((opts.maskRate === undefined) === (opts.mask === undefined)) throw new CliError('give exactly one of --mask-rate R (with --seed S) or --mask POSITIONS');
  if (opts.mask !== undefined && (opts.seed !== undefined || opts.spans)) throw new CliError('--seed and --spans go with --mask-rate, not with --mask');
  const method = opts.method;
  if (!(METHODS as readonly string[]).includes(method)) throw new CliError(`--method: unknown method "${method}" (choose from ${METHODS.join(', ')})`);
  let rate: number | undefined;
  if (opts.maskRate !== undefined) {
    rate = parseNumber('--mask-rate', opts.maskRate, { max: 1 });
    if (!(rate > 0)) throw new CliError(`--mask-rate: must be in (0, 1], got ${opts.maskRate}`);
  }
  const seed = opts.seed !== undefined ? parseInteger('--seed', opts.seed) : 0;
  const positions = opts.mask !== undefined ? parseIntList('--mask', opts.mask, { min: 0 }) : undefined;
  const threads = opts.threads !== undefined ? parseInteger('--threads', opts.threads, { min: 1 }) : undefined;
  if (opts.text.trim() === '') throw new CliError('--text: the text is empty');

  const maria = await loadBundle(opts.bundle, threads);
  try {
    const ids = maria.tokenizer.encode(opts.text).ids;
    if (ids.length > maria.maxTokens) throw new CliError(`--text: the text is ${ids.length} tokens long; these models take at most ${maria.maxTokens}`);
    const masked = scoringMask(ids, { rate, seed, spans: !!opts.spans, positions });
    const r = await scoreWithMethod(maria, ids, masked, method);
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(scoreJson(r))}\n`);
      return;
    }
    const what = r.kind === 'elbo' ? 'upper bound (ELBO)' : r.kind === 'independent' ? 'independent per-token marginals' : 'exact';
    const where = masked.flatMap((m, i) => (m ? [i] : []));
    process.stdout.write(
      `${r.method}: NLL ${r.nll.toFixed(4)} nats per masked token (perplexity ${Math.exp(r.nll).toFixed(2)}, ${what}) over ${r.tokens} of ${ids.length} tokens; masked positions ${where.join(',')}\n`,
    );
  } finally {
    await releaseBaselines(maria);
    await maria.release();
  }
}

export function register(program: Command): void {
  usageErrorsExit2(
    program
      .command('score')
      .description('negative log-likelihood of the true tokens of a text at masked positions (MARIA or a baseline)')
      .requiredOption('--text <text>', 'the original text (no mask markers)')
      .option('--mask-rate <r>', 'mask each token with probability r (positions from the text and --seed only)')
      .option('--seed <s>', 'seed of the mask (with --mask-rate; default 0)')
      .option('--spans', 'mask contiguous spans instead of single tokens (with --mask-rate)')
      .option('--mask <positions>', 'comma-separated 0-based token positions to mask, e.g. 3,5,9')
      .option('--bundle <dir>', 'MARIA bundle folder (default: models/default of this package)')
      .option('--method <name>', `scoring method: ${METHODS.join(', ')}`, 'maria')
      .option('--threads <n>', 'ONNX Runtime threads (default: MARIA_THREADS or all cores)')
      .option('--json', 'print {"nll": number, "tokens": number, "method": string}')
      .action(action(scoreCommand)),
  );
}
