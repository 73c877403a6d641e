// `maria infill "TEXT"`: fill [MASK] / [MASK:n] markers with a MARIA bundle (contract used by outside
// checks; keep it exactly):
//   maria infill "TEXT" [--bundle DIR] [--temperature T] [--top-k K] [--top-p P] [--seed S]
//                [--samples N] [--max-time MS] [--json] [--stream] [--threads N]
//   --json → {"samples": [{"text": string, "filled": [{"position", "token", "id", "logprob",
//             "alternatives"}]}], "timing": {...}}
//   --json --stream → one JSON line per chosen token ({"sample", "position", "token", "id",
//             "logprob"}), then the object above on the last line.
// Without --json: each sample's text with the filled tokens highlighted (bold on a terminal,
// «…» otherwise) and a one-line timing summary. User errors: one line on stderr, exit code 2.
import type { Command } from 'commander';
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { InfillTimeout, Maria, type InfillEvent, type InfillOptions, type InfillResult } from '../maria/maria.js';
import type { MaskedSequence } from '../maria/masks.js';
import { infillJson, tokenLineJson } from '../maria/shapes.js';
import type { TextTokenizer } from '../tokenizer/tokenizer.js';
import { action, CliError, parseInteger, parseNumber, usageErrorsExit2 } from './util.js';

/** The bundle used when --bundle is not given: models/default of this package, from any cwd. */
export const DEFAULT_BUNDLE = fileURLToPath(new URL('../../models/default', import.meta.url));

/** Loads a bundle with a message that says what to do when there is none. */
export async function loadBundle(dir: string | undefined, threads: number | undefined): Promise<Maria> {
  const bundle = dir ?? DEFAULT_BUNDLE;
  const given = dir !== undefined ? `--bundle ${dir}` : `the default bundle (${bundle})`;
  if (!existsSync(bundle)) throw new CliError(`${given}: no such folder`);
  if (!statSync(bundle).isDirectory()) throw new CliError(`${given}: not a folder (a MARIA bundle is a folder with maria.json and head.safetensors)`);
  if (!existsSync(`${bundle}/maria.json`)) {
    throw new CliError(`${given}: not a MARIA bundle (no maria.json); pass --bundle DIR, or make one with \`maria create-bundle\` or \`maria train-head\``);
  }
  return Maria.load(bundle, threads ? { threads } : {});
}

interface InfillCliOptions {
  bundle?: string;
  temperature?: string;
  topK?: string;
  topP?: string;
  seed?: string;
  samples?: string;
  maxTime?: string;
  threads?: string;
  json?: boolean;
  stream?: boolean;
}

/** How filled tokens are marked in plain output. */
interface Highlight {
  open: string;
  close: string;
}
const BOLD: Highlight = { open: '\x1b[1m', close: '\x1b[0m' };
const BRACKETS: Highlight = { open: '«', close: '»' };

/** Wraps a decoded piece, keeping its leading/trailing whitespace outside the marks. */
function mark(piece: string, h: Highlight): string {
  const m = /^(\s*)([\s\S]*?)(\s*)$/.exec(piece)!;
  if (m[2] === '') return `${h.open}${piece}${h.close}`;
  return `${m[1]}${h.open}${m[2]}${h.close}${m[3]}`;
}

/** A sample's text with each run of filled tokens highlighted. */
export function renderSample(tok: TextTokenizer, ids: number[], masked: boolean[], h: Highlight): string {
  let out = '';
  for (let i = 0; i < ids.length; ) {
    let j = i;
    while (j < ids.length && masked[j] === masked[i]) j++;
    const piece = tok.decode(ids.slice(i, j));
    out += masked[i] ? mark(piece, h) : piece;
    i = j;
  }
  return out;
}

function timingLine(r: InfillResult, loadMs: number, samples: number): string {
  const t = r.timing;
  const per = samples > 1 ? ` × ${samples} samples` : '';
  return (
    `filled ${t.filledTokens / samples} token${t.filledTokens / samples === 1 ? '' : 's'}${per} in ${t.totalMs.toFixed(0)} ms ` +
    `(MLM ${t.mlmMs.toFixed(0)} ms, AR ${t.arMs.toFixed(0)} ms in ${t.arCalls} calls, ${t.tokensPerSecond.toFixed(1)} tokens/s; loading took ${loadMs.toFixed(0)} ms)`
  );
}

/** Prints tokens as they are chosen: the text itself for one sample, one line per token otherwise. */
function streamPrinter(maria: Maria, seq: MaskedSequence, samples: number, h: Highlight): { onEvent(ev: InfillEvent): void; finish(): void } {
  const tok = maria.tokenizer;
  const n = seq.ids.length;
  const write = (s: string): void => void process.stdout.write(s);
  // The unmasked run that follows each position (given text, printed right after the token before it).
  const runAfter = (p: number): string => {
    let j = p + 1;
    while (j < n && !seq.masked[j]) j++;
    return j > p + 1 ? tok.decode(seq.ids.slice(p + 1, j)) : '';
  };
  let started = false;
  return {
    onEvent(ev) {
      if (samples > 1) {
        write(`sample ${ev.sample + 1}, position ${ev.position}: ${mark(tok.decode([ev.id]), h).trimStart()} (log p ${ev.logprob.toFixed(3)})\n`);
        return;
      }
      if (!started) {
        started = true;
        const first = seq.masked.indexOf(true);
        write(tok.decode(seq.ids.slice(0, first)));
      }
      write(mark(tok.decode([ev.id]), h) + runAfter(ev.position));
    },
    finish() {
      if (samples === 1) write('\n');
    },
  };
}

async function infillCommand(text: string, opts: InfillCliOptions): Promise<void> {
  const options: InfillOptions = {};
  if (opts.temperature !== undefined) options.temperature = parseNumber('--temperature', opts.temperature, { min: 0 });
  if (opts.topK !== undefined) options.topK = parseInteger('--top-k', opts.topK, { min: 0 });
  if (opts.topP !== undefined) {
    options.topP = parseNumber('--top-p', opts.topP, { max: 1 });
    if (!(options.topP > 0)) throw new CliError(`--top-p: must be in (0, 1], got ${opts.topP}`);
  }
  if (opts.seed !== undefined) options.seed = parseInteger('--seed', opts.seed);
  const samples = opts.samples !== undefined ? parseInteger('--samples', opts.samples, { min: 1, max: 256 }) : 1;
  options.samples = samples;
  if (opts.maxTime !== undefined) {
    options.maxTimeMs = parseNumber('--max-time', opts.maxTime);
    if (!(options.maxTimeMs > 0)) throw new CliError(`--max-time: must be a positive number of milliseconds, got ${opts.maxTime}`);
  }
  const threads = opts.threads !== undefined ? parseInteger('--threads', opts.threads, { min: 1 }) : undefined;

  const t0 = performance.now();
  const maria = await loadBundle(opts.bundle, threads);
  const loadMs = performance.now() - t0;
  try {
    const seq = maria.parse(text); // the same checks infill makes, before any output
    const h = process.stdout.isTTY ? BOLD : BRACKETS;
    let result: InfillResult;
    try {
      if (opts.stream) {
        const printer = opts.json ? null : streamPrinter(maria, seq, samples, h);
        const gen = maria.infillStream(seq, options);
        for (;;) {
          const next = await gen.next();
          if (next.done) {
            result = next.value;
            break;
          }
          const ev = next.value;
          if (printer) printer.onEvent(ev);
          else process.stdout.write(`${JSON.stringify(tokenLineJson(ev))}\n`);
        }
        printer?.finish();
      } else {
        result = await maria.infill(seq, options);
      }
    } catch (err) {
      if (err instanceof InfillTimeout) {
        process.stderr.write(`error: ${err.message}\n`);
        process.exit(1);
      }
      throw err;
    }
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(infillJson(result, { loadMs }))}\n`);
      return;
    }
    if (!opts.stream || samples > 1) {
      result.samples.forEach((s, b) => {
        const body = renderSample(maria.tokenizer, s.ids, seq.masked, h);
        process.stdout.write(samples > 1 ? `[${b + 1}] ${body}\n` : `${body}\n`);
      });
    }
    process.stdout.write(`${timingLine(result, loadMs, samples)}\n`);
  } finally {
    await maria.release();
  }
}

export function register(program: Command): void {
  usageErrorsExit2(
    program
      .command('infill')
      .description('fill the [MASK] / [MASK:n] markers of a text with MARIA (one MLM pass, then the AR with its KV cache)')
      .argument('<text>', 'text with [MASK] (one token) or [MASK:n] (n tokens) markers')
      .option('--bundle <dir>', 'MARIA bundle folder (maria.json + head.safetensors; default: models/default of this package)')
      .option('--temperature <t>', 'sampling temperature; 0 picks the most likely token (default 0)')
      .option('--top-k <k>', 'sample only from the k most likely tokens (0 = all)')
      .option('--top-p <p>', 'sample only from the smallest set of tokens whose probability reaches p')
      .option('--seed <s>', 'seed of the sampler (default 0)')
      .option('--samples <n>', 'number of samples, run as one batch (default 1)')
      .option('--max-time <ms>', 'give up after this many milliseconds')
      .option('--threads <n>', 'ONNX Runtime threads (default: MARIA_THREADS or all cores)')
      .option('--json', 'print {"samples": [{"text", "filled": [...]}], "timing": {...}}')
      .option('--stream', 'print tokens as they are chosen')
      .action(action(infillCommand)),
  );
}
