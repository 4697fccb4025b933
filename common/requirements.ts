import { access, constants, readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import type { DriverStatus } from './generated/vcstor/v1/DriverStatus.js';
import { SerialQueue } from './locks.js';
import type { CommandRunner } from './runner.js';

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
  /** Programs on PATH, or absolute paths (a program vcstor builds, e.g. dist/bin/...). */
  programs: readonly string[];
  /** Filesystem types that must be in /proc/filesystems. */
  kernelFilesystems?: readonly string[];
  /** Shared libraries (sonames, e.g. "libnfs.so.13") a program needs, found where the dynamic linker looks. */
  libraries?: readonly string[];
  /** Said in GetInfo whatever the availability (limits of the driver). */
  note?: string;
}

/** Find `program` on PATH (no shell, no `which`); a path with a slash is taken as it is. */
export async function findProgram(program: string, searchPath = process.env.PATH ?? ''): Promise<string | undefined> {
  if (program.includes('/')) {
    return access(program, constants.X_OK).then(
      () => program,
      () => undefined,
    );
  }
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

/** Debian's multiarch directory names, by Node's arch. */
const MULTIARCH: Readonly<Record<string, string>> = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu', arm: 'arm-linux-gnueabihf', ppc64: 'powerpc64le-linux-gnu', s390x: 's390x-linux-gnu' };

/**
 * Find a shared library by soname in the directories Debian's dynamic linker searches
 * (multiarch and the classic ones; /etc/ld.so.conf additions are not read).
 */
export async function findLibrary(soname: string): Promise<string | undefined> {
  const triplet = MULTIARCH[process.arch];
  const dirs = [...(triplet ? [`/lib/${triplet}`, `/usr/lib/${triplet}`] : []), '/lib', '/usr/lib', '/lib64', '/usr/lib64', '/usr/local/lib'];
  for (const dir of dirs) {
    const candidate = path.join(dir, soname);
    try {
      await access(candidate, constants.R_OK);
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

/** Versions already asked of dpkg, by the program's path: they do not change while an agent runs. */
const packageVersions = new Map<string, Promise<string>>();
/**
 * dpkg is asked one question at a time: each dpkg-query reads the whole package database
 * (~16 MB), and a GetInfo asking for every driver at once ran a dozen of them together,
 * which a lab guest's 192 MiB memory cgroup answered by killing its agent.
 */
const dpkgQueue = new SerialQueue();

/**
 * The Debian package that installed `programPath` and its version ("fio 3.33-3"), asked
 * of dpkg once per path and process; '' where dpkg is missing or does not know the file.
 * On a merged-/usr system dpkg may know /sbin/x rather than /usr/sbin/x: both are tried.
 */
export function packageVersion(runner: CommandRunner, programPath: string): Promise<string> {
  let known = packageVersions.get(programPath);
  if (!known) {
    known = (async () => {
      const real = await realpath(programPath).catch(() => programPath);
      const withoutUsr = (file: string) => file.replace(/^\/usr\//, '/');
      const candidates = [...new Set([programPath, withoutUsr(programPath), real, withoutUsr(real)])];
      for (const candidate of candidates) {
        const owner = await dpkgQueue.run(() => runner.run('dpkg-query', ['--search', candidate], { okExitCodes: [0, 1], timeoutMs: 10_000 })).catch(() => undefined);
        // "tgt: /usr/sbin/tgtd"; diversions ("diversion by ...") are not owners.
        const pkg = owner?.exitCode === 0 ? /^([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?: /m.exec(owner.stdout)?.[1] : undefined;
        if (!pkg) continue;
        const shown = await dpkgQueue.run(() => runner.run('dpkg-query', ['--show', '--showformat=${Version}', pkg], { okExitCodes: [0, 1], timeoutMs: 10_000 })).catch(() => undefined);
        const version = shown?.exitCode === 0 ? shown.stdout.trim() : '';
        return version ? `${pkg} ${version}` : pkg;
      }
      return '';
    })();
    packageVersions.set(programPath, known);
  }
  return known;
}

/**
 * Check every driver against this host.
 * @param selected the driver the config chose per concern.
 * @param runner asks the package manager for the version of each selected driver's
 *   main program (Table 1 of a run); without it versions are left empty.
 */
export async function describeDrivers(
  drivers: readonly DriverRequirements[],
  selected: Readonly<Record<string, string>>,
  runner?: CommandRunner,
): Promise<DriverStatus[]> {
  const filesystems = await kernelFilesystems();
  return Promise.all(
    drivers.map(async (d) => {
      const missing = (await Promise.all(d.programs.map(async (p) => ((await findProgram(p)) ? undefined : p)))).filter(
        (p): p is string => p !== undefined,
      );
      const missingFs = (d.kernelFilesystems ?? []).filter((fs) => !filesystems.has(fs));
      const missingLibs = (await Promise.all((d.libraries ?? []).map(async (l) => ((await findLibrary(l)) ? undefined : l)))).filter(
        (l): l is string => l !== undefined,
      );
      const details = [
        missing.length > 0 ? `not installed: ${missing.join(', ')}` : '',
        missingLibs.length > 0 ? `libraries not found: ${missingLibs.join(', ')}` : '',
        missingFs.length > 0 ? `this kernel has no ${missingFs.join(', ')} support` : '',
        d.note ?? '',
      ].filter(Boolean);
      const isSelected = selected[d.concern] === d.driver || d.concern === 'benchmark';
      const main = d.programs[0] !== undefined ? await findProgram(d.programs[0]) : undefined;
      return {
        concern: d.concern,
        driver: d.driver,
        selected: selected[d.concern] === d.driver,
        available: missing.length === 0 && missingFs.length === 0 && missingLibs.length === 0,
        missingPrograms: missing,
        detail: details.join('; '),
        version: runner && isSelected && main ? await packageVersion(runner, main) : '',
      };
    }),
  );
}
