// Huge pages for ONNX Runtime's weights. ORT keeps weights and KV caches in malloc'd memory, which
// glibc backs with 4 KB pages unless the GLIBC_TUNABLES variable asks it to advise transparent huge
// pages (glibc ≥ 2.35; with THP in "madvise" mode, the usual default). Batch-1 decoding streams every
// weight once per token, and with 4 KB pages the TLB misses cost 11–16 % of a 100 M model's decode
// speed here (llama.cpp's memory-mapped weights get huge pages from the kernel). glibc reads the
// variable only at process start, so an executable that wants it relaunches itself once.
import { spawn } from 'node:child_process';
import os from 'node:os';

const TUNABLE = 'glibc.malloc.hugetlb';
const CHILD = 'MARIA_RELAUNCHED';

/**
 * On Linux, unless GLIBC_TUNABLES already sets glibc.malloc.hugetlb or MARIA_HUGEPAGES=0: runs this
 * same command again as a child with glibc.malloc.hugetlb=1 and returns a promise of its exit code
 * (128 + signal number when a signal ended it). Otherwise returns null: carry on in this process.
 * SIGTERM and SIGHUP are passed on; SIGINT is left to the terminal, which sends it to both.
 */
export function relaunchWithHugePages(): Promise<number> | null {
  const current = process.env.GLIBC_TUNABLES ?? '';
  if (process.platform !== 'linux' || process.env.MARIA_HUGEPAGES === '0' || current.includes(TUNABLE)) return null;
  const env = { ...process.env, GLIBC_TUNABLES: current ? `${current}:${TUNABLE}=1` : `${TUNABLE}=1` };
  // The IPC channel lets the child notice when this process dies without passing a signal on (SIGKILL).
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: ['inherit', 'inherit', 'inherit', 'ipc'], env: { ...env, [CHILD]: '1' } });
  const pass = (signal: NodeJS.Signals) => () => child.kill(signal);
  const handlers = { SIGTERM: pass('SIGTERM'), SIGHUP: pass('SIGHUP'), SIGINT: () => {} };
  for (const [signal, handler] of Object.entries(handlers)) process.on(signal, handler);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      for (const [s, handler] of Object.entries(handlers)) process.off(s, handler);
      resolve(code ?? 128 + (signal ? os.constants.signals[signal] : 0));
    });
  });
}

/** In a relaunched process: exit when the launcher is gone (its IPC channel closes). Call once at start. */
export function exitWithLauncher(): void {
  if (process.env[CHILD] !== '1' || !process.channel) return;
  delete process.env[CHILD];
  process.channel.unref();
  process.on('disconnect', () => process.exit(129));
}
