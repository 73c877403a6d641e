// The inspection commands as outside checks call them: `node dist/cli/main.js forward|tokenize|pair`
// (build first: `npx tsc -p tsconfig.json`). Forward output is checked against the Hugging Face
// reference outputs in test/data/hf-parity; error cases must exit 2 with one line and no stack.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HfConfig } from '../src/models/config.js';
import { familyFor } from '../src/models/registry.js';
import { BYTE_TO_UNICODE } from '../src/tokenizer/bpe-train.js';

const repo = new URL('..', import.meta.url).pathname;
const cli = join(repo, 'dist/cli/main.js');
const fixtures = join(repo, 'test/data/hf-parity');
const TOL = 5e-5;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}
function maria(...args: string[]): Run {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: repo, encoding: 'utf8', env: { ...process.env, MARIA_THREADS: '1', MARIA_DEBUG: '' }, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
function forwardJson(...args: string[]): { hidden: number[][]; logits: number[][] } {
  const r = maria('forward', ...args, '--json');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const lines = r.stdout.trim().split('\n');
  expect(lines).toHaveLength(1); // exactly one JSON object
  return JSON.parse(lines[0]) as { hidden: number[][]; logits: number[][] };
}
/** Exit 2, one line on stderr matching `pattern`, no stack trace, nothing on stdout. */
function expectUsageError(r: Run, pattern: RegExp): void {
  expect(r.code).toBe(2);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at |node:internal|\.ts:\d+|\.js:\d+/);
}

function maxDiff(rows: number[][], flat: number[]): number {
  const a = rows.flat();
  expect(a.length).toBe(flat.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - flat[i]));
  return m;
}
function maxRowDiff(a: number[][], b: number[][]): number {
  expect(a.length).toBe(b.length);
  return maxDiff(a, b.flat());
}

interface Fixture {
  inputs: { cases: Array<{ name: string; input_ids: number[]; attention_mask?: number[]; prompt_length?: number }> };
  expected: {
    cases: Array<{
      last_hidden_state: { data: number[] };
      head_transform?: { data: number[] };
      logits: { shape: number[]; data: number[] };
    }>;
  };
}
function fixture(name: string): Fixture {
  const dir = join(fixtures, name);
  return {
    inputs: JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as Fixture['inputs'],
    expected: JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Fixture['expected'],
  };
}
/** Whether maria knows the fixture's family yet (masked families land separately). */
function supported(name: string): boolean {
  const dir = join(fixtures, name);
  if (!existsSync(join(dir, 'config.json'))) return false;
  try {
    familyFor(HfConfig.load(dir));
    return true;
  } catch (err) {
    if (/not supported/.test((err as Error).message)) return false;
    throw err;
  }
}

beforeAll(() => {
  if (!existsSync(cli) || !existsSync(join(repo, 'dist/cli/inspect.js'))) {
    throw new Error('dist/cli/main.js or dist/cli/inspect.js is missing: run `npx tsc -p tsconfig.json` (or npm run build) first');
  }
});

const llama = join(fixtures, 'llama-a');
describe.skipIf(!supported('llama-a'))('maria forward (causal: llama-a)', () => {
  const { inputs, expected } = fixture('llama-a');
  const len7 = inputs.cases[0];
  const ids = len7.input_ids.join(',');

  it('full sequence: logits and hidden equal the HF reference within 5e-5', () => {
    const out = forwardJson(llama, '--ids', ids);
    expect(out.logits).toHaveLength(7);
    expect(out.hidden).toHaveLength(7);
    expect(out.logits[0]).toHaveLength(expected.cases[0].logits.shape.at(-1)!);
    expect(maxDiff(out.logits, expected.cases[0].logits.data)).toBeLessThan(TOL);
    expect(maxDiff(out.hidden, expected.cases[0].last_hidden_state.data)).toBeLessThan(TOL);
  });

  it('--incremental K (prefill K, then one token at a time) prints the same rows', () => {
    const full = forwardJson(llama, '--ids', ids);
    for (const k of ['3', '0', '7']) {
      const inc = forwardJson(llama, '--ids', ids, '--incremental', k);
      expect(maxRowDiff(inc.logits, full.logits)).toBeLessThan(TOL);
      expect(maxRowDiff(inc.hidden, full.hidden)).toBeLessThan(TOL);
      expect(maxDiff(inc.logits, expected.cases[0].logits.data)).toBeLessThan(TOL);
    }
  });

  it('--attention-mask hides padding keys', () => {
    const full = forwardJson(llama, '--ids', ids);
    // All ones: the plain forward.
    const ones = forwardJson(llama, '--ids', ids, '--attention-mask', '1,1,1,1,1,1,1');
    expect(maxRowDiff(ones.logits, full.logits)).toBeLessThan(TOL);
    // Trailing padding cannot change earlier rows of a causal model.
    const right = forwardJson(llama, '--ids', ids, '--attention-mask', '1,1,1,1,1,0,0');
    expect(maxRowDiff(right.logits.slice(0, 5), full.logits.slice(0, 5))).toBeLessThan(TOL);
    // Left padding: positions keep counting, but RoPE only sees relative positions, so the real
    // tokens' rows equal an unpadded run of those tokens alone.
    const tail = len7.input_ids.slice(2);
    const alone = forwardJson(llama, '--ids', tail.join(','));
    const left = forwardJson(llama, '--ids', ids, '--attention-mask', '0,0,1,1,1,1,1');
    expect(maxRowDiff(left.logits.slice(2), alone.logits)).toBeLessThan(1e-4);
    expect(maxRowDiff(left.logits.slice(2), full.logits.slice(2))).toBeGreaterThan(1e-3);
    // A hole in the middle: the later rows differ from the unmasked run, and incremental agrees.
    const hole = forwardJson(llama, '--ids', ids, '--attention-mask', '1,1,1,0,1,1,1');
    expect(maxRowDiff(hole.logits.slice(0, 3), full.logits.slice(0, 3))).toBeLessThan(TOL);
    expect(maxRowDiff(hole.logits.slice(4), full.logits.slice(4))).toBeGreaterThan(1e-3);
    const holeInc = forwardJson(llama, '--ids', ids, '--attention-mask', '1,1,1,0,1,1,1', '--incremental', '2');
    expect(maxRowDiff(holeInc.logits, hole.logits)).toBeLessThan(TOL);
  });

  it('without --json prints a readable summary', () => {
    const r = maria('forward', llama, '--ids', ids);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/llama \(causal LM\), full sequence/);
    expect(r.stdout).toMatch(/hidden: 7 × 64 {3}logits: 7 × \d+/);
    expect(r.stdout).toMatch(/argmax/);
    expect(r.stdout.trim().split('\n')).toHaveLength(3 + 7);
  });
});

describe('maria forward (masked)', () => {
  for (const name of ['bert-a', 'roberta-a', 'modernbert-a']) {
    it.skipIf(!supported(name))(`${name}: one pass with --attention-mask equals the HF reference`, () => {
      const { inputs, expected } = fixture(name);
      for (const [i, c] of inputs.cases.entries()) {
        const args = [join(fixtures, name), '--ids', c.input_ids.join(',')];
        if (c.attention_mask) args.push('--attention-mask', c.attention_mask.join(','));
        const out = forwardJson(...args);
        const exp = expected.cases[i];
        expect(maxDiff(out.logits, exp.logits.data)).toBeLessThan(TOL);
        expect(maxDiff(out.hidden, (exp.head_transform ?? exp.last_hidden_state).data)).toBeLessThan(TOL);
      }
      const r = maria('forward', join(fixtures, name), '--ids', '1,2,3', '--incremental', '1');
      expectUsageError(r, /--incremental: .* is a masked LM/);
    });
  }
});

describe('maria forward: errors exit 2 with one line', () => {
  it.each([
    [['--ids', '5,x'], /--ids: item 2 "x" is not an integer/],
    [['--ids', ''], /--ids: empty list/],
    [['--ids', '5,,6'], /--ids: item 2 "" is not an integer/],
    [['--ids', '1.5'], /--ids: item 1 "1.5" is not an integer/],
    [['--ids', '-3,4'], /--ids item 1: -3 is out of range/],
    [['--ids', '5,100000'], /--ids: item 2 is 100000, but the model's vocabulary has \d+ ids/],
    [['--ids', '5,6,7', '--incremental', '4'], /--incremental: 4 is out of range \(must be between 0 and 3\)/],
    [['--ids', '5,6,7', '--incremental', '-1'], /--incremental: -1 is out of range/],
    [['--ids', '5,6,7', '--incremental', 'two'], /--incremental: "two" is not an integer/],
    [['--ids', '5,6,7', '--attention-mask', '1,1'], /--attention-mask: 2 values for 3 ids/],
    [['--ids', '5,6,7', '--attention-mask', '1,2,1'], /--attention-mask item 2: 2 is out of range/],
    [['--ids', '5,6,7', '--attention-mask', '0,0,0'], /--attention-mask: every position is masked out/],
    [['--ids', Array.from({ length: 65 }, () => '5').join(',')], /exceed the model's context of 64 positions/],
    [[], /required option '--ids <list>' not specified/],
  ])('llama-a %j', (args, pattern) => {
    expectUsageError(maria('forward', llama, ...(args as string[])), pattern as RegExp);
  });

  it('missing folder, folder without config.json, unsupported model type', () => {
    expectUsageError(maria('forward', join(repo, 'no/such/dir'), '--ids', '1'), /no\/such\/dir: no such folder/);
    const tmp = mkdtempSync(join(tmpdir(), 'maria-cli-'));
    try {
      expectUsageError(maria('forward', tmp, '--ids', '1'), /config\.json: not found/);
      writeFileSync(join(tmp, 'config.json'), JSON.stringify({ model_type: 'mamba', vocab_size: 10 }));
      expectUsageError(maria('forward', tmp, '--ids', '1'), /model_type "mamba" is not supported/);
      writeFileSync(join(tmp, 'config.json'), '{nope');
      expectUsageError(maria('forward', tmp, '--ids', '1'), /config\.json: not valid JSON/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

// --- tokenize and pair on small hand-written tokenizers ---------------------------------------

const special = (id: number, content: string): object => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
/** A tiny byte-level BPE; `shift` puts the specials after the bytes instead of before. */
function tinyBpe(shift = false): object {
  const specials = ['[PAD]', '[BOS]', '[EOS]', '[MASK]', '[UNK]'];
  const merges = ['Ġ t', 'h e', 'Ġt he', 'i n', 'Ġ a', 'Ġa n', 'Ġan d', 'in g'];
  const order = shift ? [...BYTE_TO_UNICODE, ...merges.map((m) => m.replace(' ', '')), ...specials] : [...specials, ...BYTE_TO_UNICODE, ...merges.map((m) => m.replace(' ', ''))];
  const vocab = Object.fromEntries(order.map((t, i) => [t, i]));
  return {
    version: '1.0',
    added_tokens: specials.map((s) => special(vocab[s], s)),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}
function wordPiece(): object {
  const tokens = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'the', 'and', 'a', 'in', '##g', '##s', ...'abcdefghijklmnopqrstuvwxyz.,'.split(''), ...'abcdefghijklmnopqrstuvwxyz'.split('').map((c) => `##${c}`)];
  const vocab = Object.fromEntries(tokens.map((t, i) => [t, i]));
  return {
    version: '1.0',
    added_tokens: tokens.slice(0, 5).map((s, i) => special(i, s)),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: { type: 'BertProcessing', sep: ['[SEP]', 3], cls: ['[CLS]', 2] },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
}

describe('maria tokenize and maria pair', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'maria-cli-tok-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const make = (name: string, tokenizer: object, config?: object): string => {
    const dir = join(tmp, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
    if (config) writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    return dir;
  };
  const tiny = make('tiny', tinyBpe(), { model_type: 'llama', vocab_size: 300 });
  const tinyMlm = make('tiny-mlm', tinyBpe());
  const shifted = make('shifted', tinyBpe(true));
  const bert = make('bert', wordPiece());

  it('tokenize --json: ids and token strings, the mask token whole, no special tokens unless --special', () => {
    const r = maria('tokenize', tiny, '--text', 'the [MASK] and', '--json');
    expect(r.code).toBe(0);
    // ids: 5 specials, then the 256 byte characters (by byte value), then one token per merge.
    expect(JSON.parse(r.stdout)).toEqual({ ids: [5 + 116, 5 + 256 + 1, 5 + 32, 3, 5 + 256 + 6], tokens: ['t', 'he', 'Ġ', '[MASK]', 'Ġand'] });
  });

  it('tokenize --special adds the tokenizer template; the readable form lists id and token', () => {
    const r = maria('tokenize', bert, '--text', 'The cat.', '--special', '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).tokens).toEqual(['[CLS]', 'the', 'c', '##a', '##t', '.', '[SEP]']);
    const plain = maria('tokenize', bert, '--text', 'The cat.', '--json');
    expect(JSON.parse(plain.stdout).tokens).toEqual(['the', 'c', '##a', '##t', '.']);
    const human = maria('tokenize', bert, '--text', 'The cat.');
    expect(human.stdout).toMatch(/^5 tokens \(without special tokens\)\n5\t"the"\n/);
  });

  it('tokenize errors: folder without tokenizer.json, missing folder, missing --text', () => {
    expectUsageError(maria('tokenize', llama, '--text', 'hi'), /llama-a: no tokenizer\.json in this folder/);
    expectUsageError(maria('tokenize', join(tmp, 'nope'), '--text', 'hi'), /nope: no such folder/);
    expectUsageError(maria('tokenize', tiny), /required option '--text <text>' not specified/);
    const broken = make('broken', {});
    writeFileSync(join(broken, 'tokenizer.json'), '{"model":');
    expectUsageError(maria('tokenize', broken, '--text', 'hi'), /broken\/tokenizer\.json: not valid JSON/);
  });

  it('pair: identical (exit 0), id-map (exit 0), incompatible (exit 1); --json', () => {
    const same = maria('pair', tinyMlm, tiny);
    expect(same.code).toBe(0);
    expect(same.stdout).toMatch(/^kind: identical\ncoverage: 100\.00%/);
    expect(same.stdout).toMatch(/300 embedding rows \(config\.json\)/);

    const map = maria('pair', shifted, tiny, '--json');
    expect(map.code).toBe(0);
    const mj = JSON.parse(map.stdout);
    expect(mj.kind).toBe('id-map');
    expect(mj.coverage).toBe(1);
    expect(mj.arVocabSize).toBe(300);
    expect(mj.mapExamples[0]).toEqual({ arId: 0, arToken: '[PAD]', mlmId: 256 + 8 });

    const bad = maria('pair', bert, tiny);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/^kind: incompatible/);
    expect(bad.stdout).toMatch(/different pre-tokenisation schemes: the MLM uses WordPiece/);
    const bj = maria('pair', bert, tiny, '--json');
    expect(bj.code).toBe(1);
    const parsed = JSON.parse(bj.stdout);
    expect(parsed.kind).toBe('incompatible');
    expect(parsed.coverage).toBeLessThan(0.99);
    expect(parsed.mismatches.length).toBeGreaterThan(0);
    expect(parsed.reason).toMatch(/only \d+(\.\d)?% of the AR's \d+ tokens/);
  });

  it('pair errors exit 2', () => {
    expectUsageError(maria('pair', llama, tiny), /llama-a: no tokenizer\.json in this folder/);
    expectUsageError(maria('pair', tiny), /missing required argument 'ar-dir'/);
  });
});
