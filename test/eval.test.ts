// The infilling evaluation harness (src/eval/infill-eval.ts) and its report (src/eval/report.ts) on
// the tiny random MARIA pair: every method × rate, identical masks, reproducible quality numbers,
// resume = straight run, report files, and a crash while writing leaves no report behind.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrownDoc } from '../src/data/corpus.js';
import {
  DEFAULT_METHODS,
  evalMask,
  evaluate,
  parseMethod,
  qualityNumbers,
  ratioSe,
  type EvalOptions,
  type EvalResults,
} from '../src/eval/infill-eval.js';
import { brownPassages, type Passage } from '../src/eval/lm-eval.js';
import { matchedToMaria, renderFrontier, type FrontierPoint } from '../src/eval/frontier.js';
import { recoverOut, svgChart, writeReport } from '../src/eval/report.js';
import { distinctN } from '../src/eval/util.js';
import { infillWithMethod, mdlmElbo } from '../src/maria/baselines.js';
import { Maria } from '../src/maria/maria.js';
import { TextTokenizer } from '../src/tokenizer/tokenizer.js';
import { buildTinyPair, mobyDickText, removeTinyPair, type TinyPair } from './helpers/tiny-pair.js';

const RATES = [0.3, 0.7];
let pair: TinyPair;
let tok: TextTokenizer;
let passages: Passage[];
let passagesFor: (length: number, n: number) => Passage[];
let base: EvalOptions;
let straight: EvalResults;

beforeAll(async () => {
  pair = buildTinyPair('maria-eval-test-');
  tok = TextTokenizer.load(pair.arDir);
  const doc: BrownDoc = { id: 'moby', genre: 'fiction', text: mobyDickText(8000), paragraphs: [], sentences: [] };
  passagesFor = (length, n) => brownPassages(tok, { length, n, seed: 0, docs: [doc] });
  passages = passagesFor(20, 3);
  base = {
    bundleDir: pair.bundleDir,
    passages,
    maskRates: RATES,
    spans: true,
    methods: DEFAULT_METHODS,
    samples: 2,
    seed: 7,
    scorerDir: pair.arDir, // any causal LM folder serves as the scorer here
    elboDraws: 4,
    chunkSize: 2,
    threads: 1,
    throughput: { lengths: [16, 200], passages: 1, passagesFor, warmup: false },
    unconditional: { n: 2, length: 10, annealSteps: 2, mdlmSteps: ['L', 4] },
    command: 'maria eval --test',
  };
  straight = await evaluate(base);
});

afterAll(() => removeTinyPair(pair));

describe('evaluate', () => {
  it('measures every method × mask kind × rate, with labelled likelihoods', () => {
    expect(straight.complete).toBe(true);
    const names = DEFAULT_METHODS.map((m) => parseMethod(m).name);
    for (const kind of ['random', 'span'] as const) {
      for (const rate of RATES) {
        for (const m of names) {
          const q = straight.quality.find((x) => x.method === m && x.rate === rate && x.maskKind === kind);
          expect(q, `${m} ${kind} ${rate}`).toBeDefined();
          expect(q!.passages).toBe(passages.length);
          expect(Number.isFinite(q!.nll) && q!.nll >= 0).toBe(true);
          expect(q!.accuracy).toBeGreaterThanOrEqual(0);
          expect(q!.accuracy).toBeLessThanOrEqual(1);
          expect(q!.genPpl).toBeGreaterThan(1);
          expect(q!.genPplFilled).toBeGreaterThan(1);
          expect(q!.distinct2).toBeGreaterThan(0);
          expect(q!.distinct2).toBeLessThanOrEqual(1);
          expect(q!.entropy).toBeGreaterThan(0);
          expect(q!.likelihood).toBe(m.startsWith('mdlm') ? 'elbo' : m === 'mlm-oneshot' ? 'independent' : 'exact');
        }
      }
    }
    expect(straight.quality).toHaveLength(names.length * RATES.length * 2);
    // Paired comparisons of MARIA with every other method, with standard errors over passages.
    expect(straight.comparisons).toHaveLength((names.length - 1) * RATES.length * 2);
    for (const c of straight.comparisons) {
      const a = straight.quality.find((x) => x.method === 'maria' && x.rate === c.rate && x.maskKind === c.maskKind)!;
      const b = straight.quality.find((x) => x.method === c.method && x.rate === c.rate && x.maskKind === c.maskKind)!;
      expect(c.diff).toBeCloseTo(a.nll - b.nll, 10);
      expect(c.se).toBeGreaterThanOrEqual(0);
    }
    for (const q of straight.quality) expect(q.nllSe).toBeGreaterThan(0);
    expect(straight.reference!.genPpl).toBeGreaterThan(1);
    // PoE bundle: MARIA and MARIA-at-PoE-init are the same model, so the same likelihoods and greedy
    // infills (samples differ: sampler seeds are derived from the method name).
    const q = (m: string): unknown => straight.quality.filter((x) => x.method === m).map((x) => [x.nll, x.accuracy]);
    expect(q('maria')).toEqual(q('maria-poe'));
    expect(straight.notes.join('\n')).toMatch(/untrained product-of-experts/);
  });

  it('gives every method the same masks, from the harness mask function', () => {
    for (const kind of ['random', 'span'] as const) {
      for (const rate of RATES) {
        const expected = passages.reduce((a, p) => a + evalMask(p.ids, rate, kind, 7).filter(Boolean).length, 0);
        const rows = straight.quality.filter((x) => x.rate === rate && x.maskKind === kind);
        for (const r of rows) expect(r.maskedTokens, r.method).toBe(expected);
      }
    }
    // The mask is a function of (tokens, rate, kind, seed) only.
    const p = passages[1];
    expect(evalMask([...p.ids], 0.5, 'random', 7)).toEqual(evalMask(p.ids, 0.5, 'random', 7));
    expect(evalMask(p.ids, 0.5, 'random', 8)).not.toEqual(evalMask(p.ids, 0.5, 'random', 7));
  });

  it('MDLM: a finite, non-negative bound; with T = |M| the sampler fills every mask', async () => {
    const maria = await Maria.load(pair.bundleDir, { threads: 1 });
    try {
      const p = passages[0];
      const masked = evalMask(p.ids, 0.5, 'random', 7);
      const K = masked.filter(Boolean).length;
      for (const T of [1, 4, K]) {
        const elbo = await mdlmElbo(maria, p.ids, masked, { steps: T, draws: 8, seed: 3 });
        expect(Number.isFinite(elbo)).toBe(true);
        expect(elbo).toBeGreaterThanOrEqual(0);
      }
      const seq = { ids: p.ids.map((id, i) => (masked[i] ? 0 : id)), masked };
      const r = await infillWithMethod(maria, seq, 'mdlm', { steps: K, temperature: 1, samples: 2, seed: 1 });
      for (const s of r.samples) {
        expect(s.filled.map((f) => f.position)).toEqual(masked.flatMap((x, i) => (x ? [i] : [])));
        p.ids.forEach((id, i) => {
          if (!masked[i]) expect(s.ids[i]).toBe(id);
        });
      }
    } finally {
      await maria.release();
    }
    for (const r of straight.quality.filter((x) => x.method.startsWith('mdlm'))) expect(Number.isFinite(r.nll) && r.nll >= 0).toBe(true);
  });

  it('measures throughput for every method, clamping lengths to the context, with ratios to MARIA', () => {
    const t = straight.throughput!;
    const lengths = [...new Set(t.rows.map((r) => r.length))];
    expect(lengths).toEqual([16, 126]); // 200 does not fit the tiny models (128 positions with [BOS]/[EOS])
    expect(straight.notes.join('\n')).toMatch(/length 200 measured at 126/);
    for (const L of lengths) {
      const rows = t.rows.filter((r) => r.length === L);
      expect(rows.map((r) => r.method)).toEqual(DEFAULT_METHODS);
      expect(rows.find((r) => r.method === 'maria')!.mariaSpeedup).toBe(1);
      for (const r of rows) {
        expect(r.tokensPerSecond).toBeGreaterThan(0);
        expect(r.filledTokens).toBe(rows[0].filledTokens);
      }
    }
  });

  it('runs unconditional generation for every sampler', () => {
    const u = straight.unconditional!;
    expect(u.rows.map((r) => r.method)).toEqual(['maria-anneal', 'maria', 'ar', 'mdlm-10', 'mdlm-4']);
    for (const r of u.rows) {
      expect(r.samples).toBe(2);
      expect(r.length).toBe(10);
      expect(r.genPpl).toBeGreaterThan(1);
      expect(r.distinct2).toBeGreaterThan(0);
    }
    expect(u.reference!.samples).toBe(2);
  });

  it('gives the same quality numbers when run again with the same arguments', async () => {
    const again = await evaluate({ ...base, throughput: false });
    expect(qualityNumbers(again)).toEqual(qualityNumbers(straight));
    const other = await evaluate({ ...base, seed: 8, methods: ['maria'], spans: false, throughput: false, unconditional: false });
    expect(other.quality[0].nll).not.toBe(straight.quality[0].nll);
  });

  it('samples the infills at the temperature asked for: colder samples are sharper, the rest is unchanged', async () => {
    const only = { ...base, methods: ['maria', 'mlm-l2r'], spans: false, maskRates: [0.5], throughput: false as const, unconditional: false as const, samples: 4 };
    const warm = await evaluate(only);
    const cold = await evaluate({ ...only, temperature: 0.3 });
    expect(cold.config.temperature).toBe(0.3);
    for (const method of ['maria', 'mlm-l2r']) {
      const w = warm.quality.find((q) => q.method === method)!;
      const c = cold.quality.find((q) => q.method === method)!;
      expect(c.entropy).toBeLessThan(w.entropy);
      // NLL and greedy accuracy do not depend on the sampling temperature.
      expect(c.nll).toBe(w.nll);
      expect(c.accuracy).toBe(w.accuracy);
    }
    const out = join(pair.root, 'cold');
    writeReport(cold, out);
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md).toContain('sampled infills per passage (temperature 0.3');
    expect(md).toContain("mean surprisal of its own samples");
    await expect(evaluate({ ...only, temperature: 0 })).rejects.toThrow(/temperature must be a positive number, got 0/);

    // The two runs make a frontier: one line per method, one point per temperature.
    const files = renderFrontier([cold, warm], ['cold', 'warm']);
    expect([...files.keys()].sort()).toEqual(['frontier-random-0.5.svg', 'frontier.md']);
    const frontier = files.get('frontier.md')!;
    expect(frontier).toContain('`cold` (T = 0.3), `warm` (T = 1)');
    expect(frontier.match(/^\| MLM left-to-right \| (0\.3|1) \|/gm)).toHaveLength(2);
    expect(files.get('frontier-random-0.5.svg')).toContain('T=0.3');
    expect(() => renderFrontier([warm, warm], ['a', 'b'])).toThrow(/same temperature/);
    expect(() => renderFrontier([warm, { ...cold, config: { ...cold.config, samples: 3 } }], ['a', 'b'])).toThrow(/b and a are not one sweep/);
    expect(() => renderFrontier([warm], ['a'])).toThrow(/at least two eval runs/);
  });

  it("compares a baseline with MARIA's gen-ppl interpolated to the same distinct-2", () => {
    const point = (method: string, temperature: number, distinct2: number, genPpl: number): FrontierPoint => ({ method, label: method, maskKind: 'random', rate: 0.5, temperature, genPpl, distinct2, surprisal: 0 });
    const points = [point('maria', 0.7, 0.8, 100), point('maria', 1, 0.9, 400), point('mdlm-M', 1, 0.85, 150), point('mdlm-M', 1.2, 0.95, 900)];
    const [inside, outside] = matchedToMaria(points);
    // Halfway in distinct-2 between MARIA's points: the geometric mean of their gen-ppl.
    expect(inside.mariaGenPpl).toBeCloseTo(200, 10);
    expect(outside.mariaGenPpl).toBeNull();

    // The verdict: beyond ±5 % a loss or a win, within it on par.
    const run = (temperature: number, rows: Record<string, [number, number]>): EvalResults => ({
      ...straight,
      config: { ...straight.config, temperature },
      quality: straight.quality
        .filter((q) => q.maskKind === 'random' && q.rate === 0.3 && rows[q.method])
        .map((q) => ({ ...q, distinct2: rows[q.method][0], genPpl: rows[q.method][1] })),
    });
    const md = renderFrontier(
      [run(0.7, { maria: [0.8, 100], 'mdlm-M': [0.7, 90], 'mlm-l2r': [0.7, 80] }), run(1, { maria: [0.9, 400], 'mdlm-M': [0.85, 150], 'mlm-l2r': [0.85, 206] })],
      ['a', 'b'],
    ).get('frontier.md')!;
    expect(md).toContain("At matched distinct-2, MARIA's gen-ppl is **higher** than MDLM T=|M| at T = 1 (0.75×); on par (within ±5 %) with MLM left-to-right at T = 1 (1.03×).");
  });

  it('resumes an interrupted run to the same results as a straight run', async () => {
    const dir = join(pair.root, 'resume');
    mkdirSync(dir, { recursive: true });
    const checkpoint = join(dir, 'checkpoint.json');
    let units = 0;
    const partial = await evaluate({ ...base, checkpoint, shouldStop: () => units++ >= 7 });
    expect(partial.complete).toBe(false);
    const saved = JSON.parse(readFileSync(checkpoint, 'utf8')) as { units: Record<string, unknown> };
    expect(Object.keys(saved.units)).toHaveLength(7);
    let restored = -1;
    const resumed = await evaluate({ ...base, checkpoint, resume: true, onProgress: (p) => (restored = Math.max(restored, p.restored)) });
    expect(resumed.complete).toBe(true);
    expect(resumed.meta.resumed).toBe(true);
    expect(restored).toBeGreaterThan(0);
    expect(qualityNumbers(resumed)).toEqual(qualityNumbers(straight));
    // A checkpoint from other arguments is refused.
    await expect(evaluate({ ...base, seed: 8, checkpoint, resume: true })).rejects.toThrow(/other arguments/);
    // So is one from the same arguments over a bundle whose head has since changed (one bit of its last weight).
    const headFile = join(pair.bundleDir, 'head.safetensors');
    const original = readFileSync(headFile);
    const changed = Buffer.from(original);
    changed[changed.length - 2] ^= 1;
    writeFileSync(headFile, changed);
    try {
      await expect(evaluate({ ...base, checkpoint, resume: true })).rejects.toThrow(/unchanged bundle and scorer/);
    } finally {
      writeFileSync(headFile, original);
    }
  });
});

describe('sharded runs', () => {
  it('split the work between processes; a merging run reports the same numbers as a straight run', async () => {
    const dir = join(pair.root, 'shards');
    mkdirSync(dir, { recursive: true });
    const shardFiles = [0, 1, 2].map((i) => join(dir, `checkpoint.shard-${i}-of-3.json`));
    const keys = new Set<string>();
    for (const [index, checkpoint] of shardFiles.entries()) {
      const r = await evaluate({ ...base, checkpoint, shard: { index, count: 3 } });
      expect(r.complete).toBe(false);
      const own = Object.keys((JSON.parse(readFileSync(checkpoint, 'utf8')) as { units: object }).units);
      expect(own.length).toBeGreaterThan(0);
      for (const k of own) {
        expect(keys.has(k)).toBe(false);
        keys.add(k);
      }
    }
    expect(keys.has('throughput')).toBe(false);
    // A resumed shard (as the CLI runs it, with the other shards' files to merge) redoes only its
    // missing unit and keeps only its own units in its file.
    const saved0 = JSON.parse(readFileSync(shardFiles[0], 'utf8')) as { units: Record<string, unknown> };
    const own0 = Object.keys(saved0.units).sort();
    delete saved0.units[own0[own0.length - 1]];
    writeFileSync(shardFiles[0], JSON.stringify(saved0));
    let rerun = -1;
    await evaluate({ ...base, checkpoint: shardFiles[0], shard: { index: 0, count: 3 }, resume: true, mergeCheckpoints: shardFiles.slice(1), onProgress: (p) => (rerun = p.total - p.restored) });
    expect(rerun).toBeGreaterThan(0);
    expect(Object.keys((JSON.parse(readFileSync(shardFiles[0], 'utf8')) as { units: object }).units).sort()).toEqual(own0);
    let restored = -1;
    let total = 0;
    const merged = await evaluate({ ...base, checkpoint: join(dir, 'checkpoint.json'), resume: true, mergeCheckpoints: shardFiles, onProgress: (p) => ((restored = Math.max(restored, p.restored)), (total = p.total)) });
    expect(merged.complete).toBe(true);
    // Everything but the throughput measurement came from the shards.
    expect(total - restored).toBe(2 * 1 * DEFAULT_METHODS.length);
    expect(qualityNumbers(merged)).toEqual(qualityNumbers(straight));
    expect(merged.throughput?.rows.length).toBe(straight.throughput?.rows.length);
    await expect(evaluate({ ...base, seed: 8, checkpoint: join(dir, 'other.json'), resume: true, mergeCheckpoints: shardFiles })).rejects.toThrow(/checkpoint is from a run with other arguments/);
    await expect(evaluate({ ...base, shard: { index: 3, count: 3 } })).rejects.toThrow(/shard 3 of 3/);
  });
});

describe('report', () => {
  it('writes results.json, report.md and SVG plots', () => {
    const out = join(pair.root, 'report');
    const files = writeReport(straight, out);
    expect(files).toEqual(expect.arrayContaining(['results.json', 'report.md', 'nll-vs-rate.svg', 'nll-vs-rate-spans.svg', 'quality-vs-throughput.svg', 'genppl-vs-throughput.svg', 'time-vs-length.svg']));
    for (const f of files) expect(existsSync(join(out, f))).toBe(true);
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as EvalResults;
    expect(qualityNumbers(results)).toEqual(qualityNumbers(JSON.parse(JSON.stringify(straight)) as EvalResults));
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    for (const s of ['maria eval --test', '## Headline', '## Findings', '## Throughput', '## Unconditional generation', 'ELBO (bound)', 'independent', 'Machine', 'seed 7', ' ± ']) expect(md).toContain(s);
    // Span masks get their own headline rows and findings, the general notes only once.
    expect(md).toMatch(/^\| spans \| 0\.7 \| /m);
    expect(md).toContain("- **Span masks**: MARIA's exact NLL against MLM left-to-right's");
    expect(md.match(/The MDLM numbers are upper bounds/g)).toHaveLength(1);
    for (const f of files.filter((x) => x.endsWith('.svg'))) {
      const svg = readFileSync(join(out, f), 'utf8');
      expect(svg.startsWith('<svg')).toBe(true);
      expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
      expect(svg).not.toMatch(/NaN|undefined|Infinity/);
      // Tags balance (a cheap well-formedness check).
      const open = (svg.match(/<(?!\/)[a-z]+[^>]*[^/]>/g) ?? []).length;
      const close = (svg.match(/<\/[a-z]+>/g) ?? []).length;
      expect(open).toBe(close);
    }
    // Writing again replaces the report and keeps other files (the checkpoint).
    writeFileSync(join(out, 'checkpoint.json'), '{}');
    writeReport(straight, out);
    expect(readFileSync(join(out, 'checkpoint.json'), 'utf8')).toBe('{}');
    expect(readdirSync(dirname(out)).filter((e) => e.startsWith('.report.'))).toEqual([]);
  });

  it('leaves no report in --out when writing fails midway', () => {
    const out = join(pair.root, 'crash');
    mkdirSync(out);
    writeFileSync(join(out, 'checkpoint.json'), '{"kept":true}');
    let n = 0;
    expect(() =>
      writeReport(straight, out, {
        onFile: () => {
          if (++n === 2) throw new Error('simulated crash');
        },
      }),
    ).toThrow(/simulated crash/);
    expect(readdirSync(out)).toEqual(['checkpoint.json']);
    expect(readdirSync(pair.root).filter((e) => e.startsWith('.crash.'))).toEqual([]);
    // A crash between the two renames is recovered: the folder set aside comes back.
    const out2 = join(pair.root, 'gone');
    const aside = join(pair.root, '.gone.old-1-abcd');
    mkdirSync(aside);
    writeFileSync(join(aside, 'checkpoint.json'), '{}');
    recoverOut(out2);
    expect(readdirSync(out2)).toEqual(['checkpoint.json']);
    expect(existsSync(aside)).toBe(false);
  });

  it('says where MARIA samples from sharper distributions than the MLM-based baselines', () => {
    const sharp = JSON.parse(JSON.stringify(straight)) as EvalResults;
    for (const q of sharp.quality) q.entropy = q.method === 'maria' ? 0.5 : 2;
    const out = join(pair.root, 'sharp');
    writeReport(sharp, out);
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md).toContain('Entropy of the sampling distributions');
    expect(md).toContain('MARIA samples from sharper distributions than every MLM-based baseline');
    // Not claimed when a baseline is sharper.
    for (const q of sharp.quality) if (q.method === 'mdlm-4') q.entropy = 0.1;
    writeReport(sharp, out);
    expect(readFileSync(join(out, 'report.md'), 'utf8')).not.toContain('sharper distributions');
  });

  it('says when one-pass MARIA samples worse than the AR unconditionally and when annealing costs diversity', () => {
    const u = JSON.parse(JSON.stringify(straight)) as EvalResults;
    const rows = u.unconditional!.rows;
    const set = (method: string, genPpl: number, distinct2: number): void => {
      const row = rows.find((x) => x.method === method)!;
      row.genPpl = genPpl;
      row.distinct2 = distinct2;
    };
    set('maria', 700, 0.9);
    set('ar', 100, 0.9);
    set('maria-anneal', 80, 0.5);
    u.unconditional!.reference!.distinct2 = 0.85;
    const out = join(pair.root, 'uncond');
    writeReport(u, out);
    let md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md).toContain('MARIA in one pass 700.0');
    expect(md).toContain('In one pass from all-mask, MARIA samples worse than the AR alone (gen-ppl 700.0 against 100.0)');
    expect(md).toContain('Annealing pays for its gen-ppl in diversity: its distinct-2 (0.500)');
    set('maria', 90, 0.9);
    set('maria-anneal', 80, 0.8);
    writeReport(u, out);
    md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md).not.toContain('In one pass from all-mask');
    expect(md).not.toContain('Annealing pays for its gen-ppl');
  });

  it('draws charts with log axes and no data', () => {
    const svg = svgChart({ title: 'a < b', xLabel: 'x', yLabel: 'y', series: [{ name: 's', points: [{ x: 1, y: 10 }, { x: 1000, y: 20 }] }], logX: true });
    expect(svg).toContain('a &lt; b');
    expect(svg).toContain('>1000<');
    expect(svgChart({ title: 't', xLabel: 'x', yLabel: 'y', series: [] })).toContain('no data');
  });
});

describe('ratioSe', () => {
  it('is zero for a constant ratio, null for one passage, and matches the delta-method formula', () => {
    expect(ratioSe([2, 4, 6], [1, 2, 3])).toBe(0);
    expect(ratioSe([1], [1])).toBeNull();
    // x = [1, 3], k = [1, 1]: R = 2, residuals ±1, sqrt(2 · 2 / 1) / 2 = 1.
    expect(ratioSe([1, 3], [1, 1])).toBeCloseTo(1, 12);
  });
});

describe('distinctN', () => {
  it('counts distinct n-grams, optionally only those touching marked positions', () => {
    expect(distinctN([[1, 2, 3], [1, 2, 3]], 2)).toBe(0.5);
    expect(distinctN([[1, 2, 3], [1, 2, 4]], 2)).toBe(0.75);
    expect(distinctN([[1, 2, 3], [1, 2, 4]], 2, [false, false, true])).toBe(1);
    expect(distinctN([[1]], 2)).toBeNull();
  });
});
