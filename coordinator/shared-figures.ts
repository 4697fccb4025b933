/**
 * The figures of a shared-space run (shared.ts): what one phase of one guest count
 * measured, and how it is summed up. Pure; the report reads them too.
 */

/** The measurement names of the two phases. */
export const MEASUREMENT = { write: 'shared-write', read: 'shared-read', postmark: 'shared-postmark' } as const;

/** One guest's PostMark run in a phase. */
export interface GuestPostmark {
  guest: string;
  transactions: number;
  /** Transactions over its wall time (PostMark's own figure has a one-second timer). */
  transactionsPerSecond: number;
  wallMs: number;
  startedUnixMs: number;
  finishedUnixMs: number;
}

/** PostMark on N guests at once: the measurement's result. */
export interface SharedPostmarkResult {
  space: string;
  shared: boolean;
  phase: 'postmark';
  guests: number;
  perGuest: GuestPostmark[];
  spanMs: number;
  /** Every guest's transactions over the span from the first start to the last end. */
  aggregateTransactionsPerSecond: number;
  cacheDropped: string;
  storage: StorageIo[];
}

/** A PostMark phase's figures from its guests' runs. Pure. */
export function postmarkResult(space: string, shared: boolean, perGuest: GuestPostmark[], cacheDropped: string, storage: StorageIo[]): SharedPostmarkResult {
  const spanMs = Math.max(...perGuest.map((p) => p.finishedUnixMs)) - Math.min(...perGuest.map((p) => p.startedUnixMs));
  const transactions = perGuest.reduce((n, p) => n + p.transactions, 0);
  return { space, shared, phase: 'postmark', guests: perGuest.length, perGuest, spanMs, aggregateTransactionsPerSecond: spanMs > 0 ? (transactions * 1000) / spanMs : 0, cacheDropped, storage };
}

/** One guest's part in a phase. */
export interface GuestPhase {
  guest: string;
  /** The file it wrote, or read (another guest's, on a shared space). */
  file: string;
  /** Who wrote the file it read (the read phase). */
  writtenBy: string;
  bytes: number;
  bytesPerSecond: number;
  runtimeMs: number;
  /** When its fio job started and ended, by its host's clock (ms since the epoch). */
  startedUnixMs: number;
  finishedUnixMs: number;
}

/** A phase of one guest count: the measurement's result. */
export interface SharedPhaseResult {
  space: string;
  shared: boolean;
  phase: 'write' | 'read';
  guests: number;
  perGuest: GuestPhase[];
  totalBytes: number;
  /** From the first guest's first I/O to the last guest's last. */
  spanMs: number;
  /** totalBytes over spanMs: what the space gave all guests together. */
  aggregateBytesPerSecond: number;
  /** How much of the span every guest was busy (shortest job over the span): near 1, they ran at once. */
  overlap: number;
  /** Read phase: every block's pattern and offset checked (fio verify), across guests on a shared space. */
  verified: boolean;
  /** The page cache each host had before the drop that preceded the phase, for the record. */
  cacheDropped: string;
  /**
   * Where the bytes went on each storage server during the phase: what its processes
   * (tgtd, glusterfsd, ganesha, its initiator) moved to and from the block layer
   * (/proc/PID/io read_bytes and write_bytes): a read served from a cache moves nothing.
   */
  storage: StorageIo[];
}

/** One storage server's block-layer bytes in a phase. */
export interface StorageIo {
  host: string;
  readBytes: number;
  writeBytes: number;
}

/** The block-layer bytes of each host between two samples of its processes' counters (a process new in `after` counts from 0). Pure. */
export function storageIoBetween(before: ReadonlyMap<string, ReadonlyMap<string, { read: number; write: number }>>, after: ReadonlyMap<string, ReadonlyMap<string, { read: number; write: number }>>): StorageIo[] {
  return [...after].map(([host, processes]) => {
    let readBytes = 0;
    let writeBytes = 0;
    for (const [id, now] of processes) {
      const then = before.get(host)?.get(id) ?? { read: 0, write: 0 };
      readBytes += Math.max(0, now.read - then.read);
      writeBytes += Math.max(0, now.write - then.write);
    }
    return { host, readBytes, writeBytes };
  });
}

/** A phase's figures from its guests' parts. Pure. */
export function phaseResult(space: string, shared: boolean, phase: 'write' | 'read', perGuest: GuestPhase[], cacheDropped: string, storage: StorageIo[] = []): SharedPhaseResult {
  const totalBytes = perGuest.reduce((n, p) => n + p.bytes, 0);
  const spanMs = Math.max(...perGuest.map((p) => p.finishedUnixMs)) - Math.min(...perGuest.map((p) => p.startedUnixMs));
  const shortest = Math.min(...perGuest.map((p) => p.runtimeMs));
  return {
    space,
    shared,
    phase,
    guests: perGuest.length,
    perGuest,
    totalBytes,
    spanMs,
    aggregateBytesPerSecond: spanMs > 0 ? (totalBytes * 1000) / spanMs : 0,
    overlap: spanMs > 0 ? Math.min(1, shortest / spanMs) : 0,
    verified: phase === 'read',
    cacheDropped,
    storage,
  };
}

