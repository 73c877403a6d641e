// Throughput of the infilling methods: every method timed on the same passages in one run,
// interleaved passage by passage and method by method, so that a noisy machine slows them alike
// and the ratios to MARIA stay fair.
import { infillWithMethod } from '../maria/baselines.js';
import type { Maria } from '../maria/maria.js';
import { brownPassages, type Passage } from './lm-eval.js';
import { blanked, evalMask, instanceFor, stepsFor, type MethodModels, type MethodSpec } from './methods.js';
import { derivedSeed } from './util.js';

export const DEFAULT_THROUGHPUT_LENGTHS = [128, 256, 512];

export interface ThroughputOptions {
  /** Passage lengths (default 128, 256, 512; clamped to the models' context, with a note). */
  lengths?: number[];
  /** Mask rate (default 0.5). */
  rate?: number;
  /** Passages per length (default 3). */
  passages?: number;
  /** Passages of a given length (default: Brown windows, brownPassages with the run's seed). */
  passagesFor?: (length: number, n: number) => Passage[];
  /** One untimed call per method and length first (default true). */
  warmup?: boolean;
  /** Sampling temperature of the timed infills (default 1; 0 = greedy). */
  temperature?: number;
}

export interface ThroughputRow {
  method: string;
  label: string;
  /** Passage length measured (after clamping). */
  length: number;
  /** The length asked for. */
  requestedLength: number;
  passages: number;
  filledTokens: number;
  seconds: number;
  msPerPassage: number;
  msPerPassageMedian: number;
  tokensPerSecond: number;
  /** seconds(method) / seconds(maria): how many times faster MARIA is (null without maria). */
  mariaSpeedup: number | null;
}

/** What the checkpoint keeps: every passage's time, so a report can give means and medians. */
export interface ThroughputSums {
  rate: number;
  temperature: number;
  rows: Array<{ method: string; length: number; requestedLength: number; times: number[]; filled: number }>;
  notes: string[];
}

/** ThroughputOptions with their defaults (null: throughput is not measured). */
export function throughputSettings(t: ThroughputOptions | false | undefined, maria: Maria, seed: number): Required<ThroughputOptions> | null {
  return t === false ? null : {
    lengths: t?.lengths ?? DEFAULT_THROUGHPUT_LENGTHS,
    rate: t?.rate ?? 0.5,
    passages: t?.passages ?? 3,
    passagesFor: t?.passagesFor ?? ((L: number, n: number) => brownPassages(maria.tokenizer, { length: L, n, seed })),
    warmup: t?.warmup ?? true,
    temperature: t?.temperature ?? 1,
  };
}

/** Times every method on the same passages, interleaved (passage by passage, method by method). */
export async function measureThroughput(
  ctx: MethodModels & { seed: number },
  specs: MethodSpec[],
  o: Required<ThroughputOptions>,
  tick: (items: number) => void,
): Promise<ThroughputSums> {
  const maxTokens = Math.min(ctx.maria.maxTokens, ctx.poe?.maxTokens ?? Infinity);
  const notes: string[] = [];
  const lengths = new Map<number, number>();
  for (const L of o.lengths) {
    const eff = Math.min(L, maxTokens);
    if (eff !== L) notes.push(`throughput length ${L} measured at ${eff} tokens: the models take at most ${maxTokens} text tokens (their context includes the special tokens)`);
    if (!lengths.has(eff)) lengths.set(eff, L);
  }
  const rows: ThroughputSums['rows'] = [];
  for (const [L, requested] of lengths) {
    const passages = o.passagesFor(L, o.passages);
    const cells = specs.map((spec) => ({ spec, times: [] as number[], filled: 0 }));
    const run = async (spec: MethodSpec, p: Passage, i: number): Promise<{ ms: number; filled: number }> => {
      const masked = evalMask(p.ids, o.rate, 'random', ctx.seed);
      const K = masked.filter(Boolean).length;
      const m = instanceFor(ctx, spec);
      const t0 = performance.now();
      await infillWithMethod(m, blanked(p.ids, masked), spec.base, { temperature: o.temperature, samples: 1, seed: derivedSeed(ctx.seed, `throughput/${spec.name}/${L}/${i}`), steps: stepsFor(spec, K), alternatives: 0 });
      return { ms: performance.now() - t0, filled: K };
    };
    if (o.warmup) for (const c of cells) await run(c.spec, passages[0], -1);
    for (let i = 0; i < passages.length; i++) {
      for (const c of cells) {
        const r = await run(c.spec, passages[i], i);
        c.times.push(r.ms);
        c.filled += r.filled;
        tick(1);
      }
    }
    for (const c of cells) rows.push({ method: c.spec.name, length: L, requestedLength: requested, times: c.times, filled: c.filled });
  }
  return { rate: o.rate, temperature: o.temperature, rows, notes };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** The report's rows, with each method's time relative to MARIA's at the same length. */
export function throughputResult(t: ThroughputSums, specs: MethodSpec[]): { rate: number; temperature: number; rows: ThroughputRow[] } {
  const rows: ThroughputRow[] = t.rows.map((r) => {
    const seconds = r.times.reduce((a, b) => a + b, 0) / 1000;
    const spec = specs.find((s) => s.name === r.method)!;
    return {
      method: r.method,
      label: spec.label,
      length: r.length,
      requestedLength: r.requestedLength,
      passages: r.times.length,
      filledTokens: r.filled,
      seconds,
      msPerPassage: (seconds * 1000) / r.times.length,
      msPerPassageMedian: median(r.times),
      tokensPerSecond: r.filled / seconds,
      mariaSpeedup: null,
    };
  });
  for (const row of rows) {
    const ref = rows.find((x) => x.method === 'maria' && x.length === row.length);
    row.mariaSpeedup = ref ? row.seconds / ref.seconds : null;
  }
  return { rate: t.rate, temperature: t.temperature, rows };
}
