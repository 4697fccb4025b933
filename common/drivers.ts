import { access, constants, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { DriverStatus } from './generated/vcstor/v1/DriverStatus.js';

/**
 * What a driver needs from its host: programs on PATH, and filesystems the kernel must
 * know (e.g. "nfs" for a kernel NFS client). Agents list every driver they have, and
 * report in GetInfo which are selected and which can run here.
 */
export interface DriverRequirements {
  /** The outside system: "volumes", "iscsi-target", "nfs-server", ... */
  concern: string;
  /** The driver's name: "tgt", "lio", ... */
  driver: string;
  programs: readonly string[];
  /** Filesystem types that must be in /proc/filesystems. */
  kernelFilesystems?: readonly string[];
  /** Said in GetInfo whatever the availability (limits of the driver). */
  note?: string;
}

/** Find `program` on PATH (no shell, no `which`). */
export async function findProgram(program: string, searchPath = process.env.PATH ?? ''): Promise<string | undefined> {
  const dirs = [...searchPath.split(':'), '/usr/sbin', '/sbin'].filter((d) => d !== '');
  for (const dir of dirs) {
    const candidate = path.join(dir, program);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

async function kernelFilesystems(): Promise<Set<string>> {
  try {
    const text = await readFile('/proc/filesystems', 'utf8');
    return new Set(text.split('\n').map((line) => line.trim().split(/\s+/).pop() ?? '').filter(Boolean));
  } catch {
    return new Set();
  }
}

/**
 * Check every driver against this host.
 * @param selected the driver the config chose per concern.
 */
export async function describeDrivers(
  drivers: readonly DriverRequirements[],
  selected: Readonly<Record<string, string>>,
): Promise<DriverStatus[]> {
  const filesystems = await kernelFilesystems();
  return Promise.all(
    drivers.map(async (d) => {
      const missing = (await Promise.all(d.programs.map(async (p) => ((await findProgram(p)) ? undefined : p)))).filter(
        (p): p is string => p !== undefined,
      );
      const missingFs = (d.kernelFilesystems ?? []).filter((fs) => !filesystems.has(fs));
      const details = [
        missing.length > 0 ? `not installed: ${missing.join(', ')}` : '',
        missingFs.length > 0 ? `this kernel has no ${missingFs.join(', ')} support` : '',
        d.note ?? '',
      ].filter(Boolean);
      return {
        concern: d.concern,
        driver: d.driver,
        selected: selected[d.concern] === d.driver,
        available: missing.length === 0 && missingFs.length === 0,
        missingPrograms: missing,
        detail: details.join('; '),
      };
    }),
  );
}
