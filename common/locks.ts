import { VcstorError } from './errors.js';

/**
 * One operation per resource at a time (CSI's rule): a second operation on a busy key
 * fails at once with ABORTED, which clients retry, instead of queueing behind it.
 */
export class OperationLocks {
  private readonly held = new Set<string>();

  /** Run `work` holding `key`. @throws VcstorError ABORTED when the key is busy. */
  async with<T>(key: string, what: string, work: () => Promise<T>): Promise<T> {
    if (this.held.has(key)) throw new VcstorError('ABORTED', `another operation on ${what} is in progress; try again`);
    this.held.add(key);
    try {
      return await work();
    } finally {
      this.held.delete(key);
    }
  }
}
