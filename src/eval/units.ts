// Long evaluations as resumable, shardable units of work. A run is a list of units, each with a
// stable key; after each unit its result is written atomically to a checkpoint JSON that carries
// the run's fingerprint, so a stopped or crashed run resumes where it was and never mixes in
// results of other arguments. Shards (separate processes) take the units whose key hashes to them;
// a final run without a shard merges their checkpoints and does what is left.
import { existsSync, readFileSync } from 'node:fs';
import { seededHash } from '../data/corpus.js';
import { writeFileAtomic } from '../io/atomic.js';
import { InputError } from '../maria/masks.js';

export interface Checkpoint<Result> {
  format: 'maria-eval-checkpoint';
  version: 1;
  /** Everything that determines the results: a resume must carry the same. */
  fingerprint: string;
  startedAt: string;
  units: Record<string, Result>;
}

export interface Unit<Result> {
  /** Where its result goes in the checkpoint. */
  key: string;
  /** Its progress items. */
  weight: number;
  run: (tick: (items: number) => void) => Promise<Result>;
}

export interface UnitProgress {
  /** Work items done (passage × method evaluations, timed infills, unconditional samples). */
  done: number;
  total: number;
  /** Of `done`, the items restored from the checkpoint. */
  restored: number;
  /** The unit in progress. */
  unit: string;
}

/** This process's share of the work: shard `index` of `count`. */
export interface Shard {
  index: number;
  count: number;
}

export interface CheckpointOptions {
  /** Checkpoint JSON (written after every unit). */
  checkpoint?: string;
  /** Skip the units already in the checkpoint (it must carry the same fingerprint). */
  resume?: boolean;
  /** Other checkpoints of the same run (e.g. the shards'): missing files skipped, others' refused. */
  mergeCheckpoints?: string[];
}

export interface RunOptions {
  checkpoint?: string;
  onProgress?: (p: UnitProgress) => void;
  /** Checked before every unit: true stops the run (the checkpoint is up to date). */
  shouldStop?: () => boolean;
}

function readCheckpoint<Result>(path: string): Checkpoint<Result> {
  let c: Checkpoint<Result>;
  try {
    c = JSON.parse(readFileSync(path, 'utf8')) as Checkpoint<Result>;
  } catch (err) {
    throw new InputError(`${path}: not a readable checkpoint (${(err as Error).message})`);
  }
  if (c.format !== 'maria-eval-checkpoint' || c.version !== 1 || typeof c.units !== 'object') throw new InputError(`${path}: not a maria eval checkpoint`);
  return c;
}

/**
 * Whether a unit is this shard's (every unit without a shard). The `mergeOnly` keys run only in
 * the final run without a shard (e.g. timings, which need the machine to themselves).
 */
export function shardFilter(shard: Shard | undefined, mergeOnly: readonly string[] = []): (key: string) => boolean {
  if (shard && !(Number.isInteger(shard.count) && shard.count >= 1 && Number.isInteger(shard.index) && shard.index >= 0 && shard.index < shard.count)) {
    throw new InputError(`shard ${shard.index} of ${shard.count}: the index must be an integer from 0 to count − 1`);
  }
  // By a hash of the key, not by position: positions cycle through the methods, whose costs differ a lot.
  return (key) => !shard || (!mergeOnly.includes(key) && Math.floor(seededHash(0, key) * shard.count) === shard.index);
}

/**
 * Every file read must carry this run's fingerprint, so that a resume never mixes in results of
 * other arguments, passages or models.
 */
export function openCheckpoint<Result>(o: CheckpointOptions, fingerprint: string, inShard: (key: string) => boolean): { checkpoint: Checkpoint<Result>; resumed: boolean } {
  let checkpoint: Checkpoint<Result> = { format: 'maria-eval-checkpoint', version: 1, fingerprint, startedAt: new Date().toISOString(), units: {} };
  if (!o.resume) return { checkpoint, resumed: false };
  if (!o.checkpoint) throw new InputError('resume needs a checkpoint file');
  if (existsSync(o.checkpoint)) {
    const c = readCheckpoint<Result>(o.checkpoint);
    if (c.fingerprint !== fingerprint) throw new InputError(`${o.checkpoint}: the checkpoint is from a run with other arguments, passages or models (resume only with the same arguments and unchanged bundle and scorer)`);
    checkpoint = { ...c, units: Object.fromEntries(Object.entries(c.units).filter(([key]) => inShard(key))) };
  }
  for (const path of o.mergeCheckpoints ?? []) {
    if (!existsSync(path)) continue;
    const c = readCheckpoint<Result>(path);
    if (c.fingerprint !== fingerprint) throw new InputError(`${path}: this checkpoint is from a run with other arguments, passages or models; delete it or resume with the same arguments`);
    // A shard takes only its own share: the other shards' units would only grow the file it rewrites after each unit.
    for (const [key, unit] of Object.entries(c.units)) if (inShard(key)) checkpoint.units[key] ??= unit;
    // The run started when its first process did (ISO dates compare as strings).
    if (c.startedAt < checkpoint.startedAt) checkpoint.startedAt = c.startedAt;
  }
  return { checkpoint, resumed: Object.keys(checkpoint.units).length > 0 };
}

/**
 * Runs the units not yet in the checkpoint, saving it after every one, so that a stop or a crash
 * loses at most the unit in progress. False when `shouldStop` stopped the run.
 */
export async function runUnits<Result>(units: readonly Unit<Result>[], checkpoint: Checkpoint<Result>, o: RunOptions): Promise<boolean> {
  const total = units.reduce((a, u) => a + u.weight, 0);
  let restored = 0;
  const isDone = (u: Unit<Result>): boolean => Object.hasOwn(checkpoint.units, u.key);
  for (const u of units) if (isDone(u)) restored += u.weight;
  let done = restored;
  o.onProgress?.({ done, total, restored, unit: '' });
  for (const u of units) {
    if (isDone(u)) continue;
    if (o.shouldStop?.()) return false;
    let inUnit = 0;
    const result = await u.run((items) => {
      inUnit += items;
      o.onProgress?.({ done: done + Math.min(inUnit, u.weight), total, restored, unit: u.key });
    });
    checkpoint.units[u.key] = result;
    if (o.checkpoint) writeFileAtomic(o.checkpoint, JSON.stringify(checkpoint));
    done += u.weight;
    o.onProgress?.({ done, total, restored, unit: u.key });
  }
  return true;
}
