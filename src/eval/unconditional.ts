// Unconditional generation: passages sampled from nothing (all positions masked) by MARIA with and
// without simulated annealing, AR sampling and MDLM, scored by generative perplexity and diversity.
// Run alone by evaluateUnconditional, or as units of a full evaluation (evaluate in infill-eval.ts).
import { anneal } from '../maria/anneal.js';
import { infillWithMethod, releaseBaselines } from '../maria/baselines.js';
import { Maria } from '../maria/maria.js';
import { InputError, type MaskedSequence } from '../maria/masks.js';
import type { Passage } from './lm-eval.js';
import { bundleArScorer, loadScorer, scoreRows, type ScoredRow, type Scorer } from './scorer.js';
import { derivedSeed, distinctN, now } from './util.js';

export interface UnconditionalOptions {
  /** Samples per method. */
  n: number;
  /** Tokens per sample (default: the passage length). */
  length?: number;
  /** Simulated-annealing rounds for maria-anneal (default 20). */
  annealSteps?: number;
  /** MDLM step counts; 'L' = the length (default L, 64, 16, 4). */
  mdlmSteps?: Array<number | 'L'>;
}

/** UnconditionalOptions with defaults and 'L' resolved: what the results' config records. */
export interface UnconditionalSettings {
  n: number;
  length: number;
  annealSteps: number;
  mdlmSteps: number[];
}

export interface UnconditionalRow {
  method: string;
  label: string;
  samples: number;
  length: number;
  genPpl: number;
  distinct2: number | null;
  distinct3: number | null;
  secondsPerSample: number;
}

export interface UnconditionalResults {
  length: number;
  /** Who scored the samples (gen-ppl). */
  scorer: string;
  /** True when the scorer is the bundle's AR, also the annealing energy (biased toward maria-anneal). */
  scorerIsEnergy: boolean;
  rows: UnconditionalRow[];
  /** The same metrics on real passages of the same length (when available). */
  reference: { samples: number; genPpl: number; distinct2: number | null; distinct3: number | null } | null;
  annealSteps: number;
}

export interface UncondSpec {
  name: string;
  label: string;
  run: (maria: Maria, n: number, length: number, seed: number) => Promise<number[][]>;
}

export function unconditionalSpecs(length: number, annealSteps: number, mdlmSteps: number[]): UncondSpec[] {
  const allMask = (L: number): MaskedSequence => ({ ids: new Array<number>(L).fill(0), masked: new Array<boolean>(L).fill(true) });
  const specs: UncondSpec[] = [
    {
      name: 'maria-anneal',
      label: `MARIA + annealing (${annealSteps} rounds)`,
      run: async (maria, n, L, seed) => {
        const out: number[][] = [];
        for (let i = 0; i < n; i++) out.push((await anneal(maria, allMask(L), { steps: annealSteps, seed: derivedSeed(seed, `uncond/maria-anneal/${i}`) })).ids);
        return out;
      },
    },
    {
      name: 'maria',
      label: 'MARIA (one pass, no annealing)',
      run: async (maria, n, L, seed) => (await maria.infill(allMask(L), { temperature: 1, samples: n, seed: derivedSeed(seed, 'uncond/maria'), alternatives: 0 })).samples.map((s) => s.ids),
    },
    {
      name: 'ar',
      label: 'AR sampling',
      run: async (maria, n, L, seed) => (await infillWithMethod(maria, allMask(L), 'ar', { temperature: 1, samples: n, seed: derivedSeed(seed, 'uncond/ar'), alternatives: 0 })).samples.map((s) => s.ids),
    },
  ];
  for (const T of mdlmSteps) {
    specs.push({
      name: `mdlm-${T}`,
      label: `MDLM from all-mask, T=${T}${T === length ? ' (=L)' : ''}`,
      run: async (maria, n, L, seed) =>
        (await infillWithMethod(maria, allMask(L), 'mdlm', { temperature: 1, samples: n, steps: T, seed: derivedSeed(seed, `uncond/mdlm-${T}`), alternatives: 0 })).samples.map((s) => s.ids),
    });
  }
  return specs;
}

export function resolveUnconditional(u: UnconditionalOptions, passageLength: number, maxTokens: number): UnconditionalSettings {
  if (!Number.isInteger(u.n) || u.n < 1) throw new InputError(`unconditional samples must be a positive integer, got ${u.n}`);
  const length = u.length ?? passageLength;
  if (!Number.isInteger(length) || length < 1 || length > maxTokens) throw new InputError(`unconditional length must be in 1..${maxTokens}, got ${length}`);
  const annealSteps = u.annealSteps ?? 20;
  const mdlmSteps = [...new Set((u.mdlmSteps ?? ['L', 64, 16, 4]).map((t) => (t === 'L' ? length : t)))];
  for (const t of mdlmSteps) if (!Number.isInteger(t) || t < 1) throw new InputError(`MDLM steps must be positive integers, got ${t}`);
  return { n: u.n, length, annealSteps, mdlmSteps };
}

export function summariseUnconditional(spec: UncondSpec, samples: number[][], seconds: number, scored: ScoredRow[]): UnconditionalRow {
  const total = scored.reduce((a, r) => a + r.total, 0);
  const tokens = scored.reduce((a, r) => a + r.tokens, 0);
  return {
    method: spec.name,
    label: spec.label,
    samples: samples.length,
    length: samples[0]?.length ?? 0,
    genPpl: Math.exp(total / tokens),
    distinct2: distinctN(samples, 2),
    distinct3: distinctN(samples, 3),
    secondsPerSample: seconds / samples.length,
  };
}

export async function referenceUnconditional(scorer: Scorer, m: Maria, passages: readonly Passage[], n: number, length: number): Promise<UnconditionalResults['reference']> {
  const real = passages.filter((p) => p.ids.length >= length).slice(0, n).map((p) => p.ids.slice(0, length));
  if (real.length === 0) return null;
  const scored = await scoreRows(scorer, m, real);
  return {
    samples: real.length,
    genPpl: Math.exp(scored.reduce((a, r) => a + r.total, 0) / scored.reduce((a, r) => a + r.tokens, 0)),
    distinct2: distinctN(real, 2),
    distinct3: distinctN(real, 3),
  };
}

export interface EvaluateUnconditionalOptions extends UnconditionalOptions {
  bundleDir: string;
  seed?: number;
  scorerDir?: string | null;
  threads?: number;
  /** Real passages for the reference row. */
  referencePassages?: readonly Passage[];
}

/**
 * Unconditional generation: MARIA + simulated annealing (src/maria/anneal.ts, energy −log p of the
 * bundle's AR), plain MARIA, AR sampling and MDLM from all-mask with T steps; n samples of `length`
 * tokens each, scored by generative perplexity under the scorer (or, without one, the bundle's AR:
 * then labelled, since it is also the annealing energy) and distinct-2/3 over all samples pooled.
 */
export async function evaluateUnconditional(o: EvaluateUnconditionalOptions): Promise<UnconditionalResults> {
  const session = o.threads ? { threads: o.threads } : {};
  const maria = await Maria.load(o.bundleDir, session);
  const seed = o.seed ?? 0;
  let ownScorer: Scorer | null = null;
  try {
    ownScorer = o.scorerDir ? await loadScorer(o.scorerDir, maria, o.threads) : null;
    const u = resolveUnconditional(o, o.length ?? 128, maria.maxTokens);
    const scorer = ownScorer ?? (await bundleArScorer(maria));
    const rows: UnconditionalRow[] = [];
    for (const spec of unconditionalSpecs(u.length, u.annealSteps, u.mdlmSteps)) {
      const t0 = now();
      const samples = await spec.run(maria, u.n, u.length, seed);
      const seconds = now() - t0;
      rows.push(summariseUnconditional(spec, samples, seconds, await scoreRows(scorer, maria, samples)));
    }
    return {
      length: u.length,
      scorer: scorer.name,
      scorerIsEnergy: !ownScorer,
      rows,
      reference: o.referencePassages ? await referenceUnconditional(scorer, maria, o.referencePassages, u.n, u.length) : null,
      annealSteps: u.annealSteps,
    };
  } finally {
    if (ownScorer && !ownScorer.borrowed) await ownScorer.model.release();
    await releaseBaselines(maria);
    await maria.release();
  }
}
