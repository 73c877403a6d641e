// `maria eval`: MARIA against its baselines (MDLM with T steps, MLM one-shot / left-to-right, AR
// only, MARIA at PoE init) on Brown passages or a text file, in one harness (src/eval/infill-eval.ts),
// with a progress bar, a resumable checkpoint in --out and an atomically written report
// (src/eval/report.ts). `maria report` re-renders a report; `maria frontier` compares runs at
// several sampling temperatures (src/eval/frontier.ts).
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { BrownDoc } from '../data/corpus.js';
import { DEFAULT_MASK_RATES, DEFAULT_METHODS, DEFAULT_THROUGHPUT_LENGTHS, evaluate, parseMethod, type EvalProgress, type EvalResults } from '../eval/infill-eval.js';
import { brownPassages, type Passage } from '../eval/lm-eval.js';
import { renderFrontier } from '../eval/frontier.js';
import { recoverOut, writeReport } from '../eval/report.js';
import { writeFileAtomic } from '../io/atomic.js';
import { bundlePath, readManifest } from '../maria/bundle.js';
import { TextTokenizer } from '../tokenizer/tokenizer.js';
import { action, CliError, fail, formatEta, parseIntList, parseInteger, parseNumber, usageErrorsExit2 } from './util.js';

interface Options {
  data: string;
  n: string;
  length: string;
  maskRates: string;
  spans?: boolean;
  methods: string;
  samples: string;
  temperature: string;
  bundle: string;
  scorer?: string;
  seed: string;
  out?: string;
  resume?: boolean;
  shard?: string;
  json?: boolean;
  throughput: boolean;
  throughputLengths: string;
  throughputPassages: string;
  throughputTemperature: string;
  unconditional?: string;
  annealSteps: string;
  elboDraws: string;
  chunk: string;
  threads?: string;
  progress: boolean;
}

const DEFAULT_SCORER = 'models/scorer';


function shellQuote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`;
}

function parseRates(text: string): number[] {
  const items = text.split(',').map((s) => s.trim());
  if (items.length === 0 || items.some((s) => s === '')) fail(`--mask-rates: ${JSON.stringify(text)} must be comma-separated numbers in (0, 1], e.g. 0.15,0.5`);
  const rates = items.map((s, i) => parseNumber(`--mask-rates item ${i + 1}`, s, { min: 0, max: 1 }));
  if (rates.some((r) => r === 0)) fail('--mask-rates: a mask rate must be above 0');
  if (new Set(rates).size !== rates.length) fail('--mask-rates: a rate is listed twice');
  return rates;
}

/** Passages of `length` tokens: Brown (brownPassages) or windows of a text file (one document). */
function passageSource(data: string, tokenizer: TextTokenizer, seed: number): { passagesFor: (length: number, n: number) => Passage[]; describe: (length: number, n: number) => string } {
  if (data === 'brown') {
    return {
      passagesFor: (length, n) => brownPassages(tokenizer, { length, n, seed }),
      describe: (length, n) =>
        `Chosen by brownPassages (src/eval/lm-eval.ts, seed ${seed}): every Brown document is tokenized on its own and cut into non-overlapping ${length}-token windows; documents are ordered by a seeded hash and the windows of each document too; passages are taken round-robin (first window of every document, then the second, …), so ${n <= 500 ? `these ${n} passages come from ${n} different Brown samples` : `every Brown sample gives one or more windows`}. Brown is never used in pretraining.`,
    };
  }
  if (!existsSync(data)) throw new CliError(`--data: ${data} does not exist (give a text file or "brown")`);
  const text = readFileSync(data, 'utf8');
  const doc: BrownDoc = { id: basename(data), genre: 'file', text, paragraphs: text.split(/\n\s*\n/), sentences: [] };
  return {
    passagesFor: (length, n) => brownPassages(tokenizer, { length, n, seed, docs: [doc] }),
    describe: (length) => `The file is tokenized as one document and cut into non-overlapping ${length}-token windows, taken in an order seeded by ${seed} (brownPassages with the file as its only document).`,
  };
}

function summary(r: EvalResults): string {
  const lines: string[] = [];
  const rates = r.config.maskRates;
  for (const kind of r.config.maskKinds) {
    lines.push(`NLL per masked token (nats)${kind === 'span' ? ', span masks' : ''}:`);
    const w = Math.max(...r.config.methods.map((m) => m.length), 8);
    lines.push(`${'method'.padEnd(w)}  ${'kind'.padEnd(11)}  ${rates.map((x) => String(x).padStart(7)).join(' ')}`);
    for (const m of r.config.methods) {
      const rows = rates.map((rate) => r.quality.find((q) => q.method === m && q.rate === rate && q.maskKind === kind));
      const kindText = rows.find(Boolean)?.likelihood ?? '';
      lines.push(`${m.padEnd(w)}  ${kindText.padEnd(11)}  ${rows.map((q) => (q ? q.nll.toFixed(3) : '—').padStart(7)).join(' ')}`);
    }
  }
  if (r.throughput) {
    lines.push(`throughput (rate ${r.throughput.rate}), infilled tokens/s [speed-up of MARIA]:`);
    for (const len of [...new Set(r.throughput.rows.map((t) => t.length))]) {
      lines.push(`  length ${len}: ${r.throughput.rows.filter((t) => t.length === len).map((t) => `${t.method} ${t.tokensPerSecond.toFixed(1)} [${t.mariaSpeedup?.toFixed(2) ?? '—'}×]`).join(', ')}`);
    }
  }
  for (const n of r.notes) lines.push(`note: ${n}`);
  return lines.join('\n') + '\n';
}

/** Checkpoints of one run in its --out folder: the unsharded one and those of shards. */
const CHECKPOINT_FILE = /^checkpoint(?:\.shard-\d+-of-\d+)?\.json$/;

function parseShard(value: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(value.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index >= count) throw new CliError(`--shard must be i/n with 0 ≤ i < n (e.g. 0/2 and 1/2 for two processes), got "${value}"`);
  return { index, count };
}

export function register(program: Command): void {
  const cmd = program
    .command('eval')
    .description('evaluate MARIA against MDLM, MLM one-shot / left-to-right, AR-only and PoE init: NLL, accuracy, gen-ppl, diversity, throughput')
    .option('--data <FILE|brown>', 'evaluation text: "brown" (held-out Brown passages) or a text file', 'brown')
    .option('--n <N>', 'number of passages', '200')
    .option('--length <L>', 'tokens per passage', '128')
    .option('--mask-rates <list>', 'comma-separated mask rates', DEFAULT_MASK_RATES.join(','))
    .option('--spans', 'also evaluate span masks at every rate')
    .option('--methods <list>', `comma-separated methods (maria, maria-poe, mlm-l2r, mlm-oneshot, ar, mdlm-M, mdlm-<T>)`, DEFAULT_METHODS.join(','))
    .option('--samples <S>', 'sampled infills per passage (gen-ppl, diversity)', '4')
    .option('--temperature <t>', 'sampling temperature of those infills (> 0; compare methods at matched sharpness)', '1')
    .option('--bundle <dir>', 'MARIA bundle', 'models/default')
    .option('--scorer <dir>', `causal LM for generative perplexity (default ${DEFAULT_SCORER} when present)`)
    .option('--seed <S>', 'run seed (passages, masks, samplers)', '0')
    .option('--out <dir>', 'write results.json, report.md and plots here (the checkpoint lives here too)')
    .option('--resume', 'continue the run whose checkpoint is in --out')
    .option('--shard <i/n>', 'do only shard i of n (0-based) of the work, for n processes at once; then run without --shard, with --resume, to merge and report')
    .option('--json', 'print the results object as JSON')
    .option('--no-throughput', 'skip the throughput measurement')
    .option('--throughput-lengths <list>', 'passage lengths for throughput', DEFAULT_THROUGHPUT_LENGTHS.join(','))
    .option('--throughput-passages <n>', 'passages per throughput length', '3')
    .option('--throughput-temperature <t>', 'sampling temperature of the timed infills (0 = greedy)', '1')
    .option('--unconditional <N>', 'also unconditional generation: N samples per method of --length tokens')
    .option('--anneal-steps <K>', 'simulated-annealing rounds for unconditional MARIA', '20')
    .option('--elbo-draws <n>', 'Monte-Carlo draws of the MDLM bound per passage', '16')
    .option('--chunk <n>', 'passages per checkpointed unit', '10')
    .option('--threads <n>', 'ORT threads (default: MARIA_THREADS or all cores)')
    .option('--no-progress', 'no progress bar')
    .action(
      action(async (o: Options) => {
        const n = parseInteger('--n', o.n, { min: 1 });
        const length = parseInteger('--length', o.length, { min: 2 });
        const seed = parseInteger('--seed', o.seed, { min: 0 });
        const samples = parseInteger('--samples', o.samples, { min: 1 });
        const temperature = parseNumber('--temperature', o.temperature, { min: 0 });
        if (temperature === 0) fail('--temperature must be above 0: greedy infills are measured anyway (the accuracy column)');
        const maskRates = parseRates(o.maskRates);
        const methods = o.methods.split(',').map((s) => s.trim()).filter(Boolean);
        for (const m of methods) parseMethod(m);
        const threads = o.threads !== undefined ? parseInteger('--threads', o.threads, { min: 1 }) : undefined;
        const throughputLengths = parseIntList('--throughput-lengths', o.throughputLengths, { min: 2 });
        const throughputPassages = parseInteger('--throughput-passages', o.throughputPassages, { min: 1 });
        const throughputTemperature = parseNumber('--throughput-temperature', o.throughputTemperature, { min: 0 });
        const unconditional = o.unconditional !== undefined ? parseInteger('--unconditional', o.unconditional, { min: 1 }) : undefined;
        const annealSteps = parseInteger('--anneal-steps', o.annealSteps, { min: 0 });
        const elboDraws = parseInteger('--elbo-draws', o.elboDraws, { min: 1 });
        const chunkSize = parseInteger('--chunk', o.chunk, { min: 1 });
        if (o.resume && !o.out) fail('--resume needs --out (the checkpoint lives in the output folder)');
        let scorerDir: string | null = null;
        if (o.scorer !== undefined) {
          if (!existsSync(o.scorer)) fail(`--scorer: ${o.scorer} does not exist`);
          scorerDir = o.scorer;
        } else if (existsSync(join(DEFAULT_SCORER, 'config.json'))) scorerDir = DEFAULT_SCORER;

        const manifest = readManifest(o.bundle);
        const tokenizer = TextTokenizer.load(bundlePath(o.bundle, manifest.ar));
        const source = passageSource(o.data, tokenizer, seed);
        const passages = source.passagesFor(length, n);

        const shard = o.shard !== undefined ? parseShard(o.shard) : undefined;
        if (shard && !o.out) fail('--shard needs --out (each shard writes its checkpoint there)');
        let checkpoint: string | undefined;
        let mergeCheckpoints: string[] = [];
        if (o.out) {
          recoverOut(o.out);
          mkdirSync(o.out, { recursive: true });
          checkpoint = join(o.out, shard ? `checkpoint.shard-${shard.index}-of-${shard.count}.json` : 'checkpoint.json');
          const others = readdirSync(o.out).filter((f) => CHECKPOINT_FILE.test(f) && f !== basename(checkpoint!)).map((f) => join(o.out!, f));
          if (o.resume) mergeCheckpoints = others;
          else {
            // A fresh run: its own checkpoint goes; a fresh unsharded run also drops stale shards.
            for (const file of [checkpoint, ...(shard ? [] : others)].filter((f) => existsSync(f))) {
              process.stderr.write(`${file}: starting afresh (pass --resume to continue that run)\n`);
              rmSync(file);
            }
          }
        }

        const bar = o.progress && process.stderr.isTTY
          ? new cliProgress.SingleBar({ format: 'eval |{bar}| {value}/{total} | {rate} items/s | ETA {etaText} | {unit}', hideCursor: true }, cliProgress.Presets.shades_classic)
          : null;
        let started = false;
        let restoredAt = 0;
        const t0 = performance.now();
        let lastLine = 0;
        const onProgress = (p: EvalProgress): void => {
          if (!started) {
            started = true;
            restoredAt = p.done;
            bar?.start(p.total, p.done, { rate: '-', etaText: '?', unit: '' });
          }
          const seconds = (performance.now() - t0) / 1000;
          const rate = (p.done - restoredAt) / Math.max(seconds, 1e-9);
          const payload = { rate: rate > 0 ? rate.toFixed(2) : '-', etaText: rate > 0 ? formatEta((p.total - p.done) / rate) : '?', unit: p.unit };
          if (bar) bar.update(p.done, payload);
          else if (o.progress && (seconds - lastLine >= 30 || p.done === p.total)) {
            lastLine = seconds;
            process.stderr.write(`eval ${p.done}/${p.total} (${((100 * p.done) / p.total).toFixed(1)}%) ${payload.rate} items/s ETA ${payload.etaText} ${p.unit}\n`);
          }
        };
        let stop = false;
        const onSigint = (): void => {
          stop = true;
          process.stderr.write('\nstopping after this unit (the checkpoint is kept); run again with --resume to continue\n');
        };
        process.once('SIGINT', onSigint);
        const command = ['maria', 'eval', ...process.argv.slice(2).filter((a, i) => !(i === 0 && a === 'eval'))].map(shellQuote).join(' ');
        let results: EvalResults;
        try {
          results = await evaluate({
            bundleDir: o.bundle,
            passages,
            maskRates,
            spans: !!o.spans,
            methods,
            samples,
            temperature,
            seed,
            scorerDir,
            elboDraws,
            chunkSize,
            throughput: o.throughput ? { lengths: throughputLengths, passages: throughputPassages, rate: 0.5, temperature: throughputTemperature, passagesFor: source.passagesFor } : false,
            unconditional: unconditional ? { n: unconditional, length, annealSteps } : false,
            threads,
            checkpoint,
            resume: !!o.resume,
            mergeCheckpoints,
            shard,
            onProgress,
            shouldStop: () => stop,
            data: { source: o.data, description: source.describe(length, n) },
            command,
          });
        } finally {
          bar?.stop();
          process.removeListener('SIGINT', onSigint);
        }
        if (shard && !stop) {
          process.stderr.write(`shard ${shard.index}/${shard.count} is done (${checkpoint}); when every shard is, run the same command without --shard, with --resume, to merge and report\n`);
          return;
        }
        if (!results.complete) {
          process.stderr.write(`stopped; ${checkpoint ? `the checkpoint is in ${checkpoint}: run the same command with --resume to finish` : 'nothing was saved (no --out)'}\n`);
          process.exitCode = 130;
          return;
        }
        if (o.out) {
          const files = writeReport(results, o.out);
          process.stderr.write(`wrote ${files.join(', ')} to ${resolve(o.out)}\n`);
        }
        process.stdout.write(o.json ? JSON.stringify(results) + '\n' : summary(results));
      }),
    );
  usageErrorsExit2(cmd);

  const report = program
    .command('report')
    .argument('<dir>', 'a folder written by `maria eval --out DIR`')
    .description("write report.md and the plots again from DIR/results.json, without running anything (e.g. after upgrading maria: the report's text and plots follow the code, the numbers stay)")
    .action(
      action((dir: string) => {
        recoverOut(dir);
        const files = writeReport(readResults(dir), dir);
        process.stderr.write(`wrote ${files.join(', ')} to ${resolve(dir)}\n`);
      }),
    );
  usageErrorsExit2(report);

  const frontier = program
    .command('frontier')
    .argument('<dirs...>', 'folders written by `maria eval --out DIR`: the same command at different --temperature')
    .requiredOption('--out <dir>', 'write frontier.md and one plot per mask rate here')
    .description('sample quality at matched diversity: gen-ppl against distinct-2 across runs at several sampling temperatures, every baseline against MARIA at the same distinct-2 (scripts/temperature-sweep.sh makes the runs)')
    .action(
      action((dirs: string[], o: { out: string }) => {
        const files = renderFrontier(dirs.map(readResults), dirs);
        mkdirSync(o.out, { recursive: true });
        for (const [name, content] of files) writeFileAtomic(join(o.out, name), content);
        process.stderr.write(`wrote ${[...files.keys()].join(', ')} to ${resolve(o.out)}\n`);
      }),
    );
  usageErrorsExit2(frontier);
}

/** DIR/results.json of `maria eval --out DIR`, checked. */
function readResults(dir: string): EvalResults {
  const file = join(dir, 'results.json');
  if (!existsSync(file)) throw new CliError(`${file}: no such file (write it with \`maria eval --out ${dir}\`)`);
  let results: EvalResults;
  try {
    results = JSON.parse(readFileSync(file, 'utf8')) as EvalResults;
  } catch (err) {
    throw new CliError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (results?.format !== 'maria-eval-results' || results.version !== 1) {
    throw new CliError(`${file}: not a maria eval results file (format "maria-eval-results", version 1)`);
  }
  return results;
}
