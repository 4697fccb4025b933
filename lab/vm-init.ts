import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VcstorError } from '../common/errors.js';
import { isRunning, startDetached, waitFor, type DetachedProcess } from '../common/processes.js';
import type { CommandRunner } from '../common/runner.js';
import { tcpOpen } from './lab.js';
import { VM_FAILED_MARK, VM_READY_MARK, type VmSeed } from './vm-seed.js';

/**
 * `vcstor vm-init`: runs inside a VM-tier guest at boot (the image's systemd unit starts
 * it from the app disk) and turns the plain Debian host into a lab host from its seed:
 * addresses on eth0, the kernel modules of its real-host drivers, its volume group, and
 * its agents, started detached so they outlive this command. It converges: run again,
 * it adds only what is missing. Prints VM_READY_MARK on the console when every agent
 * serves, which is what the lab on the machine waits for.
 */

const CLI = fileURLToPath(new URL('../cli/cli.js', import.meta.url));
const CONFIG_DIR = '/etc/vcstor';
const LOG_DIR = '/var/log/vcstor';
/** Node under TCG starts slowly: an agent may take tens of seconds to serve. */
const AGENT_START_MS = 300_000;

export async function readVmSeed(file: string): Promise<VmSeed> {
  let seed: VmSeed;
  try {
    seed = JSON.parse(await readFile(file, 'utf8')) as VmSeed;
  } catch (err) {
    throw new VcstorError('NOT_FOUND', `no usable seed at ${file} (is this guest started by vcstor lab up --vm?): ${(err as Error).message}`, { cause: err });
  }
  if (typeof seed.hostname !== 'string' || !Array.isArray(seed.addresses) || !Array.isArray(seed.agents) || !Array.isArray(seed.modules)) {
    throw new VcstorError('INVALID_ARGUMENT', `${file}: not a vcstor VM seed (hostname, addresses, modules, agents)`);
  }
  return seed;
}

async function configureNetwork(runner: CommandRunner, addresses: readonly string[]): Promise<void> {
  await runner.run('ip', ['link', 'set', 'lo', 'up']);
  await runner.run('ip', ['link', 'set', 'eth0', 'up']);
  const { stdout } = await runner.run('ip', ['-j', 'addr', 'show', 'dev', 'eth0']);
  const present = new Set((JSON.parse(stdout) as Array<{ addr_info?: Array<{ local: string; prefixlen: number }> }>).flatMap((l) => (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`)));
  for (const address of addresses) if (!present.has(address)) await runner.run('ip', ['addr', 'add', address, 'dev', 'eth0']);
}

/** Make the volume group on its disk unless it is there (a reboot of the same disk keeps it). */
async function ensureVolumeGroup(runner: CommandRunner, vg: { name: string; device: string }): Promise<void> {
  const found = await runner.run('vgs', ['--noheadings', '-o', 'vg_name', vg.name], { okExitCodes: [0, 5] });
  if (found.exitCode === 0) return;
  await runner.run('pvcreate', ['-y', vg.device], { timeoutMs: 60_000 });
  await runner.run('vgcreate', [vg.name, vg.device], { timeoutMs: 60_000 });
}

/**
 * An agent is taken as up when its port accepts connections: the guest holds no client
 * certificate (a tenant's root must not get one), so the health check over mTLS is the
 * lab host's, once the guest says ready.
 */
async function serving(listen: string): Promise<boolean> {
  const separator = listen.lastIndexOf(':');
  return tcpOpen(listen.slice(0, separator), Number(listen.slice(separator + 1)));
}

export async function vmInit(runner: CommandRunner, seedFile: string, print: (line: string) => void): Promise<number> {
  try {
    const started = performance.now();
    const seed = await readVmSeed(seedFile);
    await configureNetwork(runner, seed.addresses);
    for (const module of seed.modules) await runner.run('modprobe', [module], { timeoutMs: 60_000 });
    if (seed.volumeGroup) await ensureVolumeGroup(runner, seed.volumeGroup);
    await mkdir(CONFIG_DIR, { recursive: true, mode: 0o700 });
    await mkdir(LOG_DIR, { recursive: true });
    for (const file of seed.files ?? []) {
      await mkdir(path.dirname(file.path), { recursive: true, mode: 0o700 });
      await writeFile(file.path, file.content, { mode: file.mode });
      // writeFile's mode applies only to a new file; a rerun must not leave a key readable.
      await chmod(file.path, file.mode);
    }

    const logs: string[] = [];
    const agents: DetachedProcess[] = [];
    for (const agent of seed.agents) {
      const configFile = path.join(CONFIG_DIR, `${agent.name}.json`);
      await writeFile(configFile, `${JSON.stringify(agent.config, null, 2)}\n`, { mode: 0o600 });
      const log = path.join(LOG_DIR, `${agent.name}.log`);
      logs.push(log);
      if (await serving(agent.listen)) continue;
      agents.push(await startDetached('agent', agent.name, [process.execPath, CLI, 'agent', agent.role, '--config', configFile], log));
    }
    if (seed.logDevice) {
      // The host reads the agents' logs live from the guest's second serial port; tail
      // (not the agents themselves) writes there, so a slow port never blocks an agent.
      await startDetached('logs', seed.hostname, ['tail', '-q', '-n', '+1', '-F', ...logs], seed.logDevice);
    }
    for (const proc of agents) {
      const agent = seed.agents.find((a) => a.name === proc.host)!;
      await waitFor(
        `agent ${agent.name} on ${agent.listen}`,
        async () => {
          if (!(await isRunning(proc))) throw new VcstorError('UNAVAILABLE', `agent ${agent.name} exited; see ${path.join(LOG_DIR, `${agent.name}.log`)}`);
          return serving(agent.listen);
        },
        AGENT_START_MS,
        500,
      );
    }
    print(`${VM_READY_MARK} ${seed.hostname} (${seed.agents.map((a) => `${a.name}@${a.listen}`).join(', ')}) in ${Math.round(performance.now() - started)} ms`);
    return 0;
  } catch (err) {
    print(`${VM_FAILED_MARK} ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
