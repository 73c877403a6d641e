// Atomic file replacement: write a sibling temp file, fsync it, then rename it over the target.
// rename(2) within one directory is atomic on POSIX and on NTFS, so a reader (or a crash) sees
// either the complete old file or the complete new one, never a half-written mix. Folders get the
// nearest thing: a finished sibling folder renamed into place (replaceDirectory).
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fchmodSync,
  fsyncSync,
  openSync,
  readdirSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * What {@link writeFileAtomic} accepts: bytes, UTF-8 text, or byte chunks written in order: a list,
 * or any iterable (a generator produces each chunk only when it is written, so a large weight file
 * streams to disk instead of being held in memory whole).
 */
export type AtomicData = Uint8Array | string | Iterable<Uint8Array>;

function tempPathFor(path: string): string {
  // pid + randomness: two processes (or two calls in one process) never share a temp file, and
  // the temp file sits in the target's own directory so the final rename never crosses devices.
  return `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
}

function toChunks(data: AtomicData): Iterable<Uint8Array> {
  if (typeof data === 'string') return [Buffer.from(data, 'utf8')];
  if (data instanceof Uint8Array) return [data];
  if (data !== null && typeof data === 'object' && Symbol.iterator in data) return data;
  throw new TypeError(`writeFileAtomic: data must be a Uint8Array, a string or an array of Uint8Array, got ${describe(data)}`);
}

function checkChunk(chunk: unknown): asserts chunk is Uint8Array {
  // Without this a non-byte chunk would be skipped silently (its byteLength is undefined).
  if (!(chunk instanceof Uint8Array)) throw new TypeError(`writeFileAtomic: every chunk must be a Uint8Array, got ${describe(chunk)}`);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

/** The existing target's permission bits, so replacing a file does not silently change its mode. */
function existingModeSync(path: string): number | undefined {
  try {
    const st = statSync(path);
    return st.isFile() ? st.mode & 0o7777 : undefined;
  } catch {
    return undefined;
  }
}

async function existingMode(path: string): Promise<number | undefined> {
  try {
    const st = await stat(path);
    return st.isFile() ? st.mode & 0o7777 : undefined;
  } catch {
    return undefined;
  }
}

/** Makes the rename itself durable; best effort because some platforms cannot fsync a directory. */
function fsyncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Windows and some network filesystems refuse this; the data itself was already fsynced.
  } finally {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // nothing useful to do
      }
    }
  }
}

async function fsyncDir(dir: string): Promise<void> {
  try {
    const h = await open(dir, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    // see fsyncDirSync
  }
}

/**
 * Replaces `path` with `data` atomically: either the whole new content is in place afterwards or
 * (on any error, which is rethrown) the old file is untouched and no temp file is left behind.
 *
 * A symlink at `path` is replaced by a regular file rather than followed, so e.g. a blob shared
 * through a Hugging Face cache symlink is never modified in place. The permission bits of an
 * existing regular file are kept.
 */
export function writeFileAtomic(path: string, data: AtomicData): void {
  const tmp = tempPathFor(path);
  const mode = existingModeSync(path);
  let fd: number | undefined;
  let created = false;
  try {
    const chunks = toChunks(data);
    // 'wx': never clobber a file that happens to have our temp name.
    fd = openSync(tmp, 'wx', mode ?? 0o666);
    created = true;
    if (mode !== undefined) fchmodSync(fd, mode); // umask would otherwise narrow the copied mode
    for (const chunk of chunks) {
      checkChunk(chunk);
      let off = 0;
      while (off < chunk.byteLength) off += writeSync(fd, chunk, off, chunk.byteLength - off);
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
    created = false;
  } catch (err) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // already failing; the original error is the one worth reporting
      }
    }
    if (created) {
      try {
        unlinkSync(tmp);
      } catch {
        // same
      }
    }
    throw err;
  }
  fsyncDirSync(dirname(path));
}

/** Promise-based {@link writeFileAtomic}, with the same guarantees. */
export async function writeFileAtomicAsync(path: string, data: AtomicData): Promise<void> {
  const tmp = tempPathFor(path);
  const mode = await existingMode(path);
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  let created = false;
  try {
    const chunks = toChunks(data);
    handle = await open(tmp, 'wx', mode ?? 0o666);
    created = true;
    if (mode !== undefined) await handle.chmod(mode);
    for (const chunk of chunks) {
      checkChunk(chunk);
      let off = 0;
      while (off < chunk.byteLength) {
        const { bytesWritten } = await handle.write(chunk, off, chunk.byteLength - off);
        off += bytesWritten;
      }
    }
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(tmp, path);
    created = false;
  } catch (err) {
    if (handle !== undefined) await handle.close().catch(() => undefined);
    if (created) await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dirname(path));
}

/**
 * A tag for naming sibling temp folders: the pid and randomness, so that two processes (or two
 * calls in one process) never pick the same name.
 */
export function uniqueTag(): string {
  return `${process.pid}-${randomBytes(4).toString('hex')}`;
}

/**
 * The name prefix of the folder {@link replaceDirectory} moves `target` aside to: the aside folder
 * is `.<name of target>.old-<tag>` in `target`'s parent. Crash recovery looks for this prefix.
 */
export function asideDirectoryPrefix(target: string): string {
  return `.${basename(target)}.old-`;
}

/**
 * Moves the finished folder `newDir` to `target`, replacing any folder there, so that `target` is
 * never half-written. `newDir` must sit on the same filesystem as `target` (best: beside it).
 *
 * rename(2) cannot replace a non-empty folder, so an existing one is first renamed aside (see
 * {@link asideDirectoryPrefix}; `tag` names it), then deleted once `newDir` is in place; if that
 * second rename fails the old folder is put back and the error rethrown. A crash between the two
 * renames leaves no `target` and the old folder aside, for the caller's recovery to rename back.
 */
export function replaceDirectory(newDir: string, target: string, tag: string = uniqueTag()): void {
  if (!existsSync(target)) return renameSync(newDir, target);
  if (readdirSync(target).length === 0) {
    rmdirSync(target);
    return renameSync(newDir, target);
  }
  const aside = join(dirname(target), `${asideDirectoryPrefix(target)}${tag}`);
  renameSync(target, aside);
  try {
    renameSync(newDir, target);
  } catch (err) {
    renameSync(aside, target);
    throw err;
  }
  rmSync(aside, { recursive: true, force: true });
}
