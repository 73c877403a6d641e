// `npm run bench -- infill [--bundle=DIR] [--length=256] [--rate=0.5] [--reps=3] [--threads=N]`:
// infilled tokens per second on passages at a mask rate, batch 1 and batch 8: MARIA against the
// MDLM-style sampler (T = |M| and T = 16) and the MLM left-to-right sampler on the same models and
// masks, in one run, reported as ratios to MARIA.
import { fileURLToPath } from 'node:url';
import { Maria } from '../maria/maria.js';
import { infillWithMethod, releaseBaselines } from '../maria/baselines.js';
import { randomMask } from '../maria/masks.js';
import { loadBrown } from '../data/corpus.js';
import { arg, median } from './util.js';

export type InfillBenchMethod = 'maria' | 'mdlm-all' | 'mdlm-16' | 'mlm-l2r';

export interface InfillBenchOptions {
  bundle: string;
  length: number;
  rate: number;
  reps: number;
  threads: number;
  batches: number[];
  methods: InfillBenchMethod[];
}

export interface InfillBenchRow {
  method: string;
  batch: number;
  tokensPerSecond: number;
  msPerPassage: number;
}

/**
 * Times each method on the first Brown passage of `length` tokens with the same random mask
 * (seed 0): one warm-up call, then the median of `reps` (methods measured one after another).
 */
export async function measureInfill(o: InfillBenchOptions): Promise<{ masked: number; rows: InfillBenchRow[] }> {
  const maria = await Maria.load(o.bundle, { threads: o.threads });
  const ids = maria.tokenizer.encode(loadBrown()[0].text).ids.slice(0, o.length);
  if (ids.length < o.length) throw new Error(`the first Brown document has only ${ids.length} tokens`);
  const masked = randomMask(ids, o.rate, 0);
  const M = masked.filter(Boolean).length;
  const seq = { ids, masked };
  const run: Record<InfillBenchMethod, { name: string; call: (samples: number) => Promise<unknown> }> = {
    maria: { name: 'maria', call: (samples) => maria.infill(seq, { samples, temperature: 1, seed: 1 }) },
    'mdlm-all': { name: `mdlm T=|M|=${M}`, call: (samples) => infillWithMethod(maria, seq, 'mdlm', { samples, temperature: 1, seed: 1, steps: M }) },
    'mdlm-16': { name: 'mdlm T=16', call: (samples) => infillWithMethod(maria, seq, 'mdlm', { samples, temperature: 1, seed: 1, steps: 16 }) },
    'mlm-l2r': { name: 'mlm-l2r', call: (samples) => infillWithMethod(maria, seq, 'mlm-l2r', { samples, temperature: 1, seed: 1 }) },
  };
  const rows: InfillBenchRow[] = [];
  for (const batch of o.batches) {
    for (const method of o.methods) {
      const m = run[method];
      await m.call(batch); // warm-up (session shapes, arenas)
      const times: number[] = [];
      for (let r = 0; r < o.reps; r++) {
        const t = performance.now();
        await m.call(batch);
        times.push(performance.now() - t);
      }
      const ms = median(times);
      rows.push({ method: m.name, batch, tokensPerSecond: (M * batch) / (ms / 1000), msPerPassage: ms / batch });
    }
  }
  await releaseBaselines(maria);
  await maria.release();
  return { masked: M, rows };
}

export async function benchInfill(args: string[]): Promise<void> {
  const o: InfillBenchOptions = {
    bundle: arg(args, 'bundle', fileURLToPath(new URL('../../models/default', import.meta.url))),
    length: Number(arg(args, 'length', '256')),
    rate: Number(arg(args, 'rate', '0.5')),
    reps: Number(arg(args, 'reps', '3')),
    threads: Number(arg(args, 'threads', '1')),
    batches: [1, 8],
    methods: ['maria', 'mdlm-all', 'mdlm-16', 'mlm-l2r'],
  };
  console.log(`infill bench: ${o.bundle}, passage of ${o.length} tokens (Brown), mask rate ${o.rate}, ${o.threads} thread(s), median of ${o.reps}`);
  const { masked, rows } = await measureInfill(o);
  console.log(`${masked} masked tokens`);
  console.log('\n| method | batch | infilled tokens/s | ms per passage | MARIA / method |\n| --- | --- | --- | --- | --- |');
  for (const r of rows) {
    const ref = rows.find((x) => x.method === 'maria' && x.batch === r.batch)!;
    console.log(`| ${r.method} | ${r.batch} | ${r.tokensPerSecond.toFixed(1)} | ${r.msPerPassage.toFixed(0)} | ${(ref.tokensPerSecond / r.tokensPerSecond).toFixed(2)}× |`);
  }
  console.log(JSON.stringify({ bench: 'infill', bundle: o.bundle, length: o.length, rate: o.rate, masked, threads: o.threads, rows }));
}
