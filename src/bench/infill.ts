// `npm run bench -- infill [--bundle DIR] [--length 256] [--rate 0.5] [--reps 3] [--threads N]`:
// infilled tokens per second on passages at a mask rate, batch 1 and batch 8: MARIA against the
// MDLM-style sampler (T = |M| and T = 16) and the MLM left-to-right sampler on the same models and
// masks, in one run, reported as ratios to MARIA.
import { fileURLToPath } from 'node:url';
import { Maria } from '../maria/maria.js';
import { infillWithMethod, releaseBaselines } from '../maria/baselines.js';
import { randomMask } from '../maria/masks.js';
import { loadBrown } from '../data/corpus.js';

const arg = (args: string[], name: string, fallback: string): string => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function benchInfill(args: string[]): Promise<void> {
  const bundle = arg(args, 'bundle', fileURLToPath(new URL('../../models/default', import.meta.url)));
  const length = Number(arg(args, 'length', '256'));
  const rate = Number(arg(args, 'rate', '0.5'));
  const reps = Number(arg(args, 'reps', '3'));
  const threads = Number(arg(args, 'threads', '1'));
  const maria = await Maria.load(bundle, { threads });
  const ids = maria.tokenizer.encode(loadBrown()[0].text).ids.slice(0, length);
  if (ids.length < length) throw new Error(`the first Brown document has only ${ids.length} tokens`);
  const masked = randomMask(ids, rate, 0);
  const M = masked.filter(Boolean).length;
  console.log(`infill bench: ${bundle}, passage of ${length} tokens (Brown), ${M} masked (rate ${rate}), ${threads} thread(s), median of ${reps}`);

  const methods: Array<{ name: string; run: (samples: number) => Promise<unknown> }> = [
    { name: 'maria', run: (samples) => maria.infill({ ids, masked }, { samples, temperature: 1, seed: 1 }) },
    { name: `mdlm T=|M|=${M}`, run: (samples) => infillWithMethod(maria, { ids, masked }, 'mdlm', { samples, temperature: 1, seed: 1, steps: M }) },
    { name: 'mdlm T=16', run: (samples) => infillWithMethod(maria, { ids, masked }, 'mdlm', { samples, temperature: 1, seed: 1, steps: 16 }) },
    { name: 'mlm-l2r', run: (samples) => infillWithMethod(maria, { ids, masked }, 'mlm-l2r', { samples, temperature: 1, seed: 1 }) },
  ];
  const rows: Array<{ method: string; batch: number; tokensPerSecond: number; msPerPassage: number }> = [];
  for (const batch of [1, 8]) {
    for (const m of methods) {
      await m.run(batch); // warm-up (session shapes, arenas)
      const times: number[] = [];
      for (let r = 0; r < reps; r++) {
        const t = performance.now();
        await m.run(batch);
        times.push(performance.now() - t);
      }
      const ms = median(times);
      rows.push({ method: m.name, batch, tokensPerSecond: (M * batch) / (ms / 1000), msPerPassage: ms / batch });
    }
  }
  console.log('\n| method | batch | infilled tokens/s | ms per passage | MARIA / method |\n| --- | --- | --- | --- | --- |');
  for (const r of rows) {
    const ref = rows.find((x) => x.method === 'maria' && x.batch === r.batch)!;
    console.log(`| ${r.method} | ${r.batch} | ${r.tokensPerSecond.toFixed(1)} | ${r.msPerPassage.toFixed(0)} | ${(ref.tokensPerSecond / r.tokensPerSecond).toFixed(2)}× |`);
  }
  console.log(JSON.stringify({ bench: 'infill', bundle, length, rate, masked: M, threads, rows }));
  await releaseBaselines(maria);
  await maria.release();
}
