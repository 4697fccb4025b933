import { open, type FileHandle } from 'node:fs/promises';
import { VcstorError } from './errors.js';

/** Zero-fill in 4 MiB writes: large enough to stream, small enough to cancel quickly. */
const ZERO_CHUNK = Buffer.alloc(4 * 1024 * 1024);

/**
 * Write `sizeBytes` of zeros from offset 0 of an open file or block device, then flush
 * it to stable storage. Checks `signal` between writes.
 * @throws VcstorError CANCELLED when the signal aborts.
 */
export async function zeroFill(file: FileHandle, sizeBytes: number, signal: AbortSignal, onProgress?: (done: number, total: number) => void): Promise<void> {
  let written = 0;
  while (written < sizeBytes) {
    if (signal.aborted) throw new VcstorError('CANCELLED', 'zero-filling was cancelled', { cause: signal.reason });
    const length = Math.min(ZERO_CHUNK.length, sizeBytes - written);
    const { bytesWritten } = await file.write(ZERO_CHUNK, 0, length, written);
    written += bytesWritten;
    onProgress?.(written, sizeBytes);
  }
  await file.datasync();
}

/** Zero-fill a block device (or existing file) by path. */
export async function zeroFillPath(target: string, sizeBytes: number, signal: AbortSignal, onProgress?: (done: number, total: number) => void): Promise<void> {
  const handle = await open(target, 'r+');
  try {
    await zeroFill(handle, sizeBytes, signal, onProgress);
  } finally {
    await handle.close();
  }
}
