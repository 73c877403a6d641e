// Resumable, shardable units of work (src/eval/units.ts): what a long evaluation relies on to stop,
// resume, split over processes and merge without losing or mixing results.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openCheckpoint, runUnits, shardFilter, type Unit, type UnitProgress } from '../src/eval/units.js';

const dir = mkdtempSync(join(tmpdir(), 'maria-units-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Units whose results record how often each ran. */
function countingUnits(keys: string[], runs: Map<string, number>): Unit<number>[] {
  return keys.map((key, i) => ({
    key,
    weight: i + 1,
    run: async (tick) => {
      runs.set(key, (runs.get(key) ?? 0) + 1);
      tick(i + 1);
      return i * 10;
    },
  }));
}

describe('units', () => {
  const keys = ['a', 'b', 'c', 'd', 'throughput'];

  it('a stopped run resumes where it stopped, runs every unit once and reports progress by weight', async () => {
    const path = join(dir, 'stop.json');
    const runs = new Map<string, number>();
    let calls = 0;
    const first = openCheckpoint<number>({ checkpoint: path }, 'fp', () => true);
    expect(first.resumed).toBe(false);
    const finished = await runUnits(countingUnits(keys, runs), first.checkpoint, { checkpoint: path, shouldStop: () => ++calls > 2 });
    expect(finished).toBe(false);
    expect(Object.keys(JSON.parse(readFileSync(path, 'utf8')).units)).toEqual(['a', 'b']);

    const second = openCheckpoint<number>({ checkpoint: path, resume: true }, 'fp', () => true);
    expect(second.resumed).toBe(true);
    const progress: UnitProgress[] = [];
    expect(await runUnits(countingUnits(keys, runs), second.checkpoint, { checkpoint: path, onProgress: (p) => progress.push(p) })).toBe(true);
    expect([...runs.values()]).toEqual([1, 1, 1, 1, 1]);
    expect(progress[0]).toEqual({ done: 3, total: 15, restored: 3, unit: '' });
    expect(progress.at(-1)).toEqual({ done: 15, total: 15, restored: 3, unit: 'throughput' });
    expect(second.checkpoint.units).toEqual({ a: 0, b: 10, c: 20, d: 30, throughput: 40 });
  });

  it('refuses to resume or merge a checkpoint of another run, and a file that is not a checkpoint', () => {
    const path = join(dir, 'other.json');
    writeFileSync(path, JSON.stringify({ format: 'maria-eval-checkpoint', version: 1, fingerprint: 'other', startedAt: '', units: { a: 1 } }));
    expect(() => openCheckpoint({ checkpoint: path, resume: true }, 'fp', () => true)).toThrow(/other arguments, passages or models/);
    expect(() => openCheckpoint({ checkpoint: join(dir, 'new.json'), resume: true, mergeCheckpoints: [path] }, 'fp', () => true)).toThrow(/other arguments/);
    writeFileSync(path, '{"units": 3');
    expect(() => openCheckpoint({ checkpoint: path, resume: true }, 'fp', () => true)).toThrow(/not a readable checkpoint/);
    expect(() => openCheckpoint({ resume: true }, 'fp', () => true)).toThrow(/needs a checkpoint file/);
  });

  it('shards split the units between them, keep merge-only units for the final run, and merge back', async () => {
    const many = Array.from({ length: 40 }, (_, i) => `quality|${i}`).concat('throughput');
    const filters = [0, 1, 2].map((index) => shardFilter({ index, count: 3 }, ['throughput']));
    for (const key of many) expect(filters.filter((f) => f(key)).length).toBe(key === 'throughput' ? 0 : 1);
    expect(filters.every((f) => many.some(f))).toBe(true);
    expect(() => shardFilter({ index: 3, count: 3 })).toThrow(/index must be an integer from 0 to count − 1/);

    const runs = new Map<string, number>();
    const paths = filters.map((_, i) => join(dir, `shard-${i}.json`));
    for (let i = 0; i < 3; i++) {
      const { checkpoint } = openCheckpoint<number>({ checkpoint: paths[i] }, 'fp', filters[i]);
      await runUnits(countingUnits(many, runs).filter((u) => filters[i](u.key)), checkpoint, { checkpoint: paths[i] });
    }
    const first = JSON.parse(readFileSync(paths[1], 'utf8')) as { startedAt: string };
    writeFileSync(paths[1], JSON.stringify({ ...first, startedAt: '2020-01-01T00:00:00.000Z' }));
    const merged = openCheckpoint<number>({ checkpoint: join(dir, 'merged.json'), resume: true, mergeCheckpoints: [...paths, join(dir, 'missing.json')] }, 'fp', shardFilter(undefined));
    expect(Object.keys(merged.checkpoint.units)).toHaveLength(40);
    // The merged run started when its first shard did.
    expect(merged.checkpoint.startedAt).toBe('2020-01-01T00:00:00.000Z');
    await runUnits(countingUnits(many, runs), merged.checkpoint, {});
    expect(runs.size).toBe(41);
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
  });
});
