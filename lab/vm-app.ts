import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../common/log.js';
import type { CommandRunner } from '../common/runner.js';
import { VM_APP_LABEL } from './vm-image.js';

/**
 * The app disk of the VM tier: this machine's node binary and vcstor as built here
 * (dist, proto, production node_modules), as an ext4 image a guest mounts read-only at
 * boot. Made at each `lab up --vm` (seconds), so guests run exactly the code under test
 * while the Debian image stays cached however often the code changes.
 */

/** The repository this module was built from: dist/lab/ is two levels down. */
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Only for building and type-checking: not needed by an agent. */
const DEV_ONLY_MODULES = ['typescript', '@types'];

export interface AppDisk {
  file: string;
  bytes: number;
  ms: number;
}

/**
 * Build the app disk at `file` (replaced if there). Layout inside: `bin/node`,
 * `app/{package.json,proto,dist,node_modules}`; the guest's unit runs
 * `/opt/vcstor/bin/node /opt/vcstor/app/dist/cli/cli.js vm-init`.
 */
export async function buildAppDisk(options: { runner: CommandRunner; file: string; log?: Logger; signal?: AbortSignal }): Promise<AppDisk> {
  const { runner, file, log, signal } = options;
  const started = performance.now();
  const staging = `${file}.d`;
  const run = (command: string, args: readonly string[]) => runner.run(command, args, { timeoutMs: 300_000, ...(signal ? { signal } : {}) });
  await run('rm', ['-rf', '--one-file-system', '--', staging]);
  try {
    await mkdir(path.join(staging, 'bin'), { recursive: true });
    await mkdir(path.join(staging, 'app'), { recursive: true });
    await run('cp', ['--dereference', process.execPath, path.join(staging, 'bin', 'node')]);
    for (const entry of ['package.json', 'proto', 'dist', 'node_modules']) {
      await run('cp', ['-a', path.join(REPO_ROOT, entry), path.join(staging, 'app', entry)]);
    }
    // Tests and benchmarks stay on this machine; dev-only modules too.
    for (const extra of ['dist/test', 'dist/bench', ...DEV_ONLY_MODULES.map((m) => `node_modules/${m}`)]) {
      await rm(path.join(staging, 'app', extra), { recursive: true, force: true });
    }
    const { stdout } = await run('du', ['-s', '-B1', staging]);
    const used = Number(stdout.split(/\s/)[0]);
    // ext4's own metadata and a margin: a quarter more, at least 64 MiB.
    const size = Math.ceil((used * 1.25 + 64 * 2 ** 20) / 2 ** 20);
    await rm(file, { force: true });
    await run('mkfs.ext4', ['-q', '-F', '-L', VM_APP_LABEL, '-d', staging, file, `${size}M`]);
  } finally {
    await run('rm', ['-rf', '--one-file-system', '--', staging]).catch(() => undefined);
  }
  const result = { file, bytes: (await stat(file)).size, ms: Math.round(performance.now() - started) };
  log?.info(result, 'vm app disk built');
  return result;
}
