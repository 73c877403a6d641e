// Helpers shared by the CLI commands: user errors are one line on stderr and exit code 2, never a
// stack trace.
import { InvalidArgumentError, type Command } from 'commander';
import cliProgress from 'cli-progress';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { BundleError } from '../maria/bundle.js';
import { InputError } from '../maria/masks.js';
import { ModelFolderError } from '../models/config.js';

/** Exit code for user errors (bad arguments, bad folders). */
export const USAGE_EXIT_CODE = 2;

/** An error whose message is meant for the user as it is. */
export class CliError extends Error {
  override name = 'CliError';
}

function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
}

/** Prints `error: message` on stderr and exits with code 2. */
export function fail(message: string): never {
  process.stderr.write(`error: ${oneLine(message)}\n`);
  process.exit(USAGE_EXIT_CODE);
}

/** Parses one integer flag value (optionally within [min, max]), or fails naming the flag. */
export function parseInteger(flag: string, text: string, range: { min?: number; max?: number } = {}): number {
  const t = text.trim();
  const n = Number(t);
  if (!/^[+-]?\d+$/.test(t) || !Number.isSafeInteger(n)) fail(`${flag}: ${JSON.stringify(text)} is not an integer`);
  checkRange(flag, n, range);
  return n;
}

function checkRange(flag: string, n: number, { min, max }: { min?: number; max?: number }): void {
  if ((min !== undefined && n < min) || (max !== undefined && n > max)) {
    const bounds = min !== undefined && max !== undefined ? `between ${min} and ${max}` : min !== undefined ? `at least ${min}` : `at most ${max}`;
    fail(`${flag}: ${n} is out of range (must be ${bounds})`);
  }
}

/** Parses one finite number flag value (optionally within [min, max]), or fails naming the flag. */
export function parseNumber(flag: string, text: string, range: { min?: number; max?: number } = {}): number {
  const t = text.trim();
  const n = Number(t);
  if (t === '' || !Number.isFinite(n)) fail(`${flag}: ${JSON.stringify(text)} is not a number`);
  checkRange(flag, n, range);
  return n;
}

/** Parses a comma-separated list of integers ("5,17,42"), or fails naming the flag and the bad item. */
export function parseIntList(flag: string, text: string, range: { min?: number; max?: number } = {}): number[] {
  if (text.trim() === '') fail(`${flag}: empty list (expected comma-separated integers, e.g. 5,17,42)`);
  return text.split(',').map((item, i) => {
    const t = item.trim();
    const n = Number(t);
    if (!/^[+-]?\d+$/.test(t) || !Number.isSafeInteger(n)) {
      fail(`${flag}: item ${i + 1} ${JSON.stringify(item)} is not an integer (expected comma-separated integers, e.g. 5,17,42)`);
    }
    checkRange(`${flag} item ${i + 1}`, n, range);
    return n;
  });
}

/**
 * Whether an error is a user-facing one (its message stands on its own): bad folders and bundles,
 * bad input text (no mask, too long, bad [MASK:n]) and out-of-range options.
 */
export function isUserError(err: unknown): boolean {
  return err instanceof CliError || err instanceof ModelFolderError || err instanceof BundleError || err instanceof InputError;
}

/**
 * Wraps a command action: user errors print one line and exit 2; anything else prints one line and
 * exits 1 (MARIA_DEBUG=1 prints the stack too).
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (isUserError(err)) fail(message);
      if (process.env.MARIA_DEBUG) process.stderr.write(`${(err as Error)?.stack ?? message}\n`);
      process.stderr.write(`error: ${oneLine(message)}${process.env.MARIA_DEBUG ? '' : ' (set MARIA_DEBUG=1 for details)'}\n`);
      process.exit(1);
    }
  };
}

/** Makes commander's own usage errors (missing argument, unknown option) exit 2 too. */
export function usageErrorsExit2(cmd: Command): Command {
  return cmd.exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : USAGE_EXIT_CODE);
  });
}

/**
 * A commander option parser for an integer in [min, max]: a bad value is reported by commander
 * (exit 2 with usageErrorsExit2) naming the option.
 */
export function intOption(flag: string, range: { min?: number; max?: number } = {}): (value: string) => number {
  return (value) => {
    const n = Number(value.trim());
    if (!/^[+-]?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || (range.min !== undefined && n < range.min) || (range.max !== undefined && n > range.max)) {
      throw new InvalidArgumentError(`${flag} must be an integer${bounds(range)}, got "${value}"`);
    }
    return n;
  };
}

/** A commander option parser for a finite number in [min, max]. */
export function numberOption(flag: string, range: { min?: number; max?: number } = {}): (value: string) => number {
  return (value) => {
    const n = Number(value.trim());
    if (value.trim() === '' || !Number.isFinite(n) || (range.min !== undefined && n < range.min) || (range.max !== undefined && n > range.max)) {
      throw new InvalidArgumentError(`${flag} must be a number${bounds(range)}, got "${value}"`);
    }
    return n;
  };
}

function bounds({ min, max }: { min?: number; max?: number }): string {
  if (min !== undefined && max !== undefined) return ` between ${min} and ${max}`;
  if (min !== undefined) return ` ≥ ${min}`;
  return max !== undefined ? ` ≤ ${max}` : '';
}

/** "1h05m" / "4m09s" / "?" for a progress bar's time left. */
export function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(s).padStart(2, '0')}s`;
}

/** The blank-line-separated paragraphs of text files, as documents; `flag` names the option in errors. */
export function paragraphDocuments(files: string[], flag: string): Array<{ id: string; text: string }> {
  const docs: Array<{ id: string; text: string }> = [];
  for (const file of files) {
    if (!existsSync(file)) throw new CliError(`${flag}: ${file}: no such file`);
    if (!statSync(file).isFile()) throw new CliError(`${flag}: ${file}: not a file`);
    readFileSync(file, 'utf8')
      .split(/\n\s*\n/)
      .forEach((t, i) => {
        const text = t.trim();
        if (text) docs.push({ id: `${file}#${i}`, text });
      });
  }
  return docs;
}

/** What a training loop reports after each step. */
export interface TrainingStepInfo {
  step: number;
  steps: number;
  loss: number;
  lr: number;
  tokensPerSecond: number;
  elapsedSeconds: number;
}

/**
 * The progress display and Ctrl-C handling the training commands share: a bar with loss, the last
 * validation, rate and ETA (or a log line every 50 steps without a bar); the first Ctrl-C asks the
 * loop to stop after its step, with a checkpoint.
 */
export function trainingProgress(label: string, options: { bar: boolean; rateUnit: string }) {
  const bar = options.bar
    ? new cliProgress.SingleBar(
        { format: `${label} |{bar}| {value}/{total} | loss {loss} | val {val} | {tps} ${options.rateUnit}/s | ETA {etaText}`, hideCursor: true, etaBuffer: 50 },
        cliProgress.Presets.shades_classic,
      )
    : null;
  let started = false;
  let lastValidation = '-';
  let stopRequested = false;
  process.once('SIGINT', () => {
    stopRequested = true;
    process.stderr.write('\nstopping after this step (checkpoint follows); run again with --resume to continue\n');
  });
  return {
    shouldStop: (): boolean => stopRequested,
    step(s: TrainingStepInfo): void {
      const payload = { loss: s.loss.toFixed(3), val: lastValidation, tps: Math.round(s.tokensPerSecond), etaText: formatEta(((s.steps - s.step) * s.elapsedSeconds) / Math.max(1, s.step)) };
      if (bar && !started) {
        bar.start(s.steps, s.step, payload);
        started = true;
      }
      bar?.update(s.step, payload);
      if (!bar && (s.step % 50 === 0 || s.step === 1)) {
        process.stderr.write(`step ${s.step}/${s.steps} loss ${s.loss.toFixed(4)} lr ${s.lr.toExponential(2)} ${Math.round(s.tokensPerSecond)} ${options.rateUnit}/s\n`);
      }
    },
    /** Records a validation loss; `line` is logged when there is no bar. */
    validated(loss: number, line: string): void {
      lastValidation = loss.toFixed(3);
      if (!bar) process.stderr.write(`${line}\n`);
    },
    stop(): void {
      bar?.stop();
    },
  };
}
