// Simulated annealing (src/maria/anneal.ts) and `maria generate`, on the tiny random pair: the
// constraint tokens never change, the reported energy is the AR's NLL of the result, a seed
// reproduces a run, and the CLI prints the result (or a one-line error).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { anneal, arEnergy } from '../src/maria/anneal.js';
import { releaseBaselines } from '../src/maria/baselines.js';
import { Maria } from '../src/maria/maria.js';
import { buildTinyPair, removeTinyPair, REPO_ROOT, type TinyPair } from './helpers/tiny-pair.js';

let pair: TinyPair;
let maria: Maria;
beforeAll(async () => {
  pair = buildTinyPair('maria-generate-');
  maria = await Maria.load(pair.bundleDir, { threads: 1 });
});
afterAll(async () => {
  await releaseBaselines(maria);
  await maria?.release();
  removeTinyPair(pair);
});

describe('simulated annealing', () => {
  it('keeps the constraint, reports the AR energy of its result, and is reproducible', async () => {
    const text = 'Call me [MASK:3]. Some years ago, never mind how [MASK:2] precisely';
    const seq = maria.parse(text);
    const a = await anneal(maria, text, { steps: 6, seed: 3 });
    expect(a.ids).toHaveLength(seq.ids.length);
    seq.ids.forEach((id, i) => {
      if (!seq.masked[i]) expect(a.ids[i]).toBe(id);
    });
    expect(a.history).toHaveLength(6);
    expect(a.energy).toBeCloseTo(await arEnergy(maria, a.ids), 3);
    // The energy kept is always one the Metropolis test accepted: never above every proposal seen.
    expect(a.energy).toBeLessThanOrEqual(Math.max(a.initialEnergy, ...a.history.map((h) => h.proposedEnergy)) + 1e-9);
    const rates = a.history.map((h) => h.rate);
    for (let k = 1; k < rates.length; k++) expect(rates[k]).toBeLessThan(rates[k - 1]);
    const b = await anneal(maria, text, { steps: 6, seed: 3 });
    expect(b.ids).toEqual(a.ids);
    expect(b.energy).toBe(a.energy);
  });

  it('rejects bad schedules with an InputError', async () => {
    await expect(anneal(maria, 'a [MASK] b', { rateStart: 0 })).rejects.toThrow(/rate-start must be in \(0, 1\]/);
    await expect(anneal(maria, 'a [MASK] b', { steps: -1 })).rejects.toThrow(/steps must be a non-negative integer/);
  });
});

describe('maria generate', () => {
  const cli = join(REPO_ROOT, 'dist/cli/main.js');
  const run = (args: string[]) => spawnSync(process.execPath, [cli, 'generate', '--bundle', pair.bundleDir, ...args], { encoding: 'utf8', env: { ...process.env, MARIA_THREADS: '1' }, timeout: 120_000 });

  it('generates unconditionally with annealing and prints JSON', () => {
    const r = run(['--length', '12', '--anneal', '--steps', '3', '--seed', '1', '--json']);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { ids: number[]; text: string; history: unknown[]; acceptanceRate: number };
    expect(out.ids).toHaveLength(12);
    expect(out.history).toHaveLength(3);
    expect(out.acceptanceRate).toBeGreaterThanOrEqual(0);
    expect(out.acceptanceRate).toBeLessThanOrEqual(1);
  });

  it('keeps a constraint text without --anneal', () => {
    const r = run(['--text', 'Call me [MASK:2]. Some years ago', '--json']);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { text: string; energy: number };
    expect(out.text.startsWith('Call me')).toBe(true);
    expect(out.text.endsWith('. Some years ago')).toBe(true);
    expect(out.energy).toBeGreaterThan(0);
  });

  it('refuses contradictory or missing arguments with one line and exit 2', () => {
    for (const args of [[], ['--length', '4', '--text', 'a [MASK]'], ['--length', '0'], ['--text', 'no mask here']]) {
      const r = run(args);
      expect(r.status).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
