// Simulated annealing with MARIA (unconditional or constrained generation): start from one MARIA
// sample, then repeatedly re-mask a random subset of the free positions and re-infill it, keeping
// the proposal by a Metropolis test on an energy (the AR's negative log-likelihood of the whole
// text). Schedules (all interpolated over the K steps, k = 1..K, u = k/K):
//   re-mask rate   r_k = r_start · (r_end / r_start)^u        (geometric: big moves first)
//   infill temp.   τ_k = τ_start + (τ_end − τ_start) · u      (linear)
//   accept temp.   T_k = T_0 · (1 − u) + 1e-3                 (linear to ~0: greedy at the end)
// Accept x' when E(x') ≤ E(x), else with probability exp(−(E(x') − E(x)) / T_k). The proposal is
// not symmetric, so this is a search heuristic, not an exact MCMC sampler.
import { mulberry32 } from '../engine/random.js';
import { plainArModel } from './baselines.js';
import type { Maria } from './maria.js';
import { InputError, type MaskedSequence } from './masks.js';
import { logSoftmaxRow } from './sampling.js';

export interface AnnealOptions {
  /** Re-masking rounds (default 20). */
  steps?: number;
  rateStart?: number;
  rateEnd?: number;
  temperatureStart?: number;
  temperatureEnd?: number;
  /** T_0 of the acceptance test, in nats (default 2). */
  acceptTemperature?: number;
  seed?: number;
  /** Called after each round. */
  onStep?: (s: AnnealStep) => void;
}

export interface AnnealStep {
  step: number;
  rate: number;
  temperature: number;
  proposedEnergy: number;
  energy: number;
  accepted: boolean;
}

export interface AnnealResult {
  text: string;
  ids: number[];
  /** −log p_AR(x) of the result, and per token. */
  energy: number;
  energyPerToken: number;
  initialEnergy: number;
  acceptanceRate: number;
  history: AnnealStep[];
}

/** −log p_AR([BOS] x): the energy the annealing minimises. */
export async function arEnergy(m: Maria, ids: number[]): Promise<number> {
  const ar = await plainArModel(m);
  const V = m.head.vocabSize;
  const out = await ar.forward([m.manifest.arBosId, ...ids.slice(0, -1)]);
  const lp = new Float64Array(V);
  let e = 0;
  ids.forEach((id, i) => {
    logSoftmaxRow(out.logits.subarray(i * V, (i + 1) * V), lp);
    e -= lp[id];
  });
  return e;
}

/**
 * Anneals the free (masked) positions of `input`; the unmasked tokens are constraints that never
 * change. For unconditional generation pass n masked positions.
 */
export async function anneal(m: Maria, input: string | MaskedSequence, o: AnnealOptions = {}): Promise<AnnealResult> {
  const K = o.steps ?? 20;
  const r0 = o.rateStart ?? 0.5;
  const r1 = o.rateEnd ?? 0.05;
  const t0 = o.temperatureStart ?? 1.0;
  const t1 = o.temperatureEnd ?? 0.3;
  const T0 = o.acceptTemperature ?? 2;
  if (!Number.isInteger(K) || K < 0) throw new InputError(`steps must be a non-negative integer, got ${K}`);
  for (const [name, r] of [['rate-start', r0], ['rate-end', r1]] as const) if (!(r > 0 && r <= 1)) throw new InputError(`${name} must be in (0, 1], got ${r}`);
  const seq = m.parse(input);
  const free = seq.masked.flatMap((x, i) => (x ? [i] : []));
  const rand = mulberry32(o.seed ?? 0);
  const seedOf = (): number => Math.floor(rand() * 2 ** 31);

  const first = await m.infill(seq, { temperature: t0, seed: seedOf() });
  let ids = first.samples[0].ids;
  let energy = await arEnergy(m, ids);
  const initialEnergy = energy;
  const history: AnnealStep[] = [];
  let accepted = 0;
  for (let k = 1; k <= K; k++) {
    const u = k / K;
    const rate = r0 * (r1 / r0) ** u;
    const temperature = t0 + (t1 - t0) * u;
    const acceptT = T0 * (1 - u) + 1e-3;
    const remask = free.filter(() => rand() < rate);
    if (remask.length === 0) remask.push(free[Math.floor(rand() * free.length)]);
    const masked = ids.map(() => false);
    for (const p of remask) masked[p] = true;
    const proposal = (await m.infill({ ids, masked }, { temperature, seed: seedOf() })).samples[0].ids;
    const proposedEnergy = await arEnergy(m, proposal);
    const accept = proposedEnergy <= energy || rand() < Math.exp(-(proposedEnergy - energy) / acceptT);
    if (accept) {
      ids = proposal;
      energy = proposedEnergy;
      accepted++;
    }
    const step = { step: k, rate, temperature, proposedEnergy, energy, accepted: accept };
    history.push(step);
    o.onStep?.(step);
  }
  return {
    text: m.tokenizer.decode(ids),
    ids,
    energy,
    energyPerToken: energy / ids.length,
    initialEnergy,
    acceptanceRate: K > 0 ? accepted / K : 0,
    history,
  };
}
