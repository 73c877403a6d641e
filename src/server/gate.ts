// A bounded admission queue: at most `concurrency` holders at once, at most `queue` waiting in
// arrival order; beyond that a caller is refused at once (the server answers 503 + Retry-After).

/** The queue is full; retry after about `retryAfterS` seconds. */
export class Overloaded extends Error {
  override name = 'Overloaded';
  constructor(readonly retryAfterS: number) {
    super(`the server is busy (all slots and the queue are full); retry in about ${retryAfterS} s`);
  }
}

/** The deadline passed while waiting for a slot. */
export class QueueTimeout extends Error {
  override name = 'QueueTimeout';
}

/** The caller went away while waiting. */
export class QueueAborted extends Error {
  override name = 'QueueAborted';
}

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (err: Error) => void;
  cleanup: () => void;
}

export class Gate {
  private running = 0;
  private readonly waiters: Waiter[] = [];
  /** Exponential moving average of how long a holder keeps its slot (ms), for Retry-After. */
  private meanHoldMs = 1000;
  private served = 0;

  constructor(
    readonly concurrency: number,
    readonly maxQueue: number,
  ) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
    if (!Number.isInteger(maxQueue) || maxQueue < 0) throw new RangeError(`queue must be a non-negative integer, got ${maxQueue}`);
  }

  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiters.length;
  }

  /** Requests that have held and released a slot. */
  get completed(): number {
    return this.served;
  }

  /** Seconds until a slot is likely to free for a newcomer (at least 1). */
  retryAfterSeconds(): number {
    const ahead = (this.waiters.length + 1) / this.concurrency;
    return Math.min(600, Math.max(1, Math.ceil((ahead * this.meanHoldMs) / 1000)));
  }

  /**
   * Resolves with a release function once a slot is free. Throws Overloaded at once when every slot
   * is taken and the queue is full, QueueTimeout when `deadline` (performance.now() time) passes
   * while waiting, QueueAborted when `signal` aborts while waiting.
   */
  acquire(deadline = Infinity, signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(new QueueAborted('the client went away'));
    if (this.running < this.concurrency && this.waiters.length === 0) return Promise.resolve(this.grant());
    if (this.waiters.length >= this.maxQueue) return Promise.reject(new Overloaded(this.retryAfterSeconds()));
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = (): void => {
        this.remove(waiter);
        reject(new QueueAborted('the client went away'));
      };
      const waiter: Waiter = {
        resolve,
        reject,
        cleanup: () => {
          if (timer) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
        },
      };
      if (Number.isFinite(deadline)) {
        timer = setTimeout(
          () => {
            this.remove(waiter);
            reject(new QueueTimeout('the request timed out while waiting in the queue'));
          },
          Math.max(0, deadline - performance.now()),
        );
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  private remove(waiter: Waiter): void {
    waiter.cleanup();
    const i = this.waiters.indexOf(waiter);
    if (i >= 0) this.waiters.splice(i, 1);
  }

  private grant(): () => void {
    this.running++;
    const t0 = performance.now();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.meanHoldMs = 0.8 * this.meanHoldMs + 0.2 * (performance.now() - t0);
      this.served++;
      this.running--;
      const next = this.waiters.shift();
      if (next) {
        next.cleanup();
        next.resolve(this.grant());
      }
    };
  }
}
