import { VcstorError } from './errors.js';

/** Who holds a lock: a client's call, or the agent's own background work (reconcile). */
export type LockHolder = 'client' | 'background';

/**
 * One operation per resource at a time (CSI's rule): a client operation on a key another
 * client operation holds fails at once with ABORTED, which clients retry. Background
 * work never makes a client fail: a client waits for it, and background work skips a
 * key that is busy.
 */
export class OperationLocks {
  private readonly held = new Map<string, { holder: LockHolder; released: Promise<void> }>();

  /** Run `work` holding `key` for a client. @throws VcstorError ABORTED when another client holds it. */
  async with<T>(key: string, what: string, work: () => Promise<T>): Promise<T> {
    for (;;) {
      const current = this.held.get(key);
      if (!current) break;
      if (current.holder === 'client') throw new VcstorError('ABORTED', `another operation on ${what} is in progress; try again`);
      await current.released;
    }
    return this.run(key, 'client', work);
  }

  /** Run background `work` holding `key`, or return undefined at once when the key is busy. */
  async tryBackground<T>(key: string, work: () => Promise<T>): Promise<T | undefined> {
    if (this.held.has(key)) return undefined;
    return this.run(key, 'background', work);
  }

  private async run<T>(key: string, holder: LockHolder, work: () => Promise<T>): Promise<T> {
    let release!: () => void;
    this.held.set(key, { holder, released: new Promise<void>((resolve) => (release = resolve)) });
    try {
      return await work();
    } finally {
      this.held.delete(key);
      release();
    }
  }
}

/**
 * Work run one piece at a time, in the order given: for a daemon or a file that takes
 * one change at a time. A failed piece does not stop the pieces queued after it.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /** Run `work` after everything queued before it has settled; its result or failure is returned. */
  run<T>(work: () => Promise<T>): Promise<T> {
    const next = this.tail.then(work, work);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
