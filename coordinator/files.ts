import { randomBytes } from 'node:crypto';
import { mkdir, open, rename } from 'node:fs/promises';
import path from 'node:path';

/**
 * Write `data` to `file` atomically: a fresh temporary file beside it (mode `mode`,
 * created exclusively), synced, then renamed over `file`. A crash leaves the old file or
 * the new one, never half of either. Creates the directory. Idempotent for equal data.
 * @throws the file system's error (the temporary file may be left behind).
 */
export async function writeFileAtomic(file: string, data: string, mode = 0o600): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${randomBytes(4).toString('hex')}`;
  const handle = await open(tmp, 'wx', mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, file);
}
