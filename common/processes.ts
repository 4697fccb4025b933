import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** A long-running process vcstor started, recorded so that it can be stopped later. */
export interface DetachedProcess {
  /** What it is, e.g. "tgtd", "agent". */
  name: string;
  /** The lab host (namespace) it runs in. */
  host: string;
  pid: number;
  /** Kernel start time of the pid (clock ticks), so a reused pid is never signalled. */
  startTicks: number;
  command: string[];
  log: string;
}

/** The start time of `pid` in clock ticks, or undefined when no such process exists. */
export async function processStartTicks(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Field 22; the command name (field 2) may hold spaces, so count after its ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = fields[0];
    if (state === 'Z' || state === 'X') return undefined;
    return Number(fields[19]);
  } catch {
    return undefined;
  }
}

/** True when the recorded process is still the one running under its pid. */
export async function isRunning(proc: Pick<DetachedProcess, 'pid' | 'startTicks'>): Promise<boolean> {
  return (await processStartTicks(proc.pid)) === proc.startTicks;
}

/**
 * Start `command` detached inside network namespace `namespace`, its output appended to
 * `log`. nsenter execs the command, so the pid is the daemon's own.
 */
export function startInNamespace(
  name: string,
  host: string,
  namespace: string,
  command: string[],
  log: string,
  env: Record<string, string> = {},
): Promise<DetachedProcess> {
  return startDetached(name, host, ['nsenter', `--net=/run/netns/${namespace}`, '--', ...command], log, env);
}

/**
 * Start `command` detached (its own session and process group, surviving this process),
 * its output appended to `log`. For daemons that outlive their caller: the lab's, and an
 * agent's qemu-storage-daemon sessions, which survive an agent restart like kernel
 * iSCSI sessions survive iscsid's.
 */
export async function startDetached(
  name: string,
  host: string,
  command: string[],
  log: string,
  env: Record<string, string> = {},
): Promise<DetachedProcess> {
  const [program, ...args] = command as [string, ...string[]];
  // Not execa: execa pipes output targets through this process, and a lab daemon must
  // outlive `lab up`. spawn with an argument array (no shell) hands it the log's fd.
  const fd = openSync(log, 'a');
  try {
    const child = spawn(program, args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env, LC_ALL: 'C' },
      shell: false,
    });
    child.unref();
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid!));
      child.once('error', (err) => reject(new Error(`${name}: could not start ${program}: ${err.message}`)));
    });
    // A program that fails at once (a refused login) may be gone before its start time
    // can be read: it is returned as not running (-1 matches no process), and callers
    // read its log for why, as for any exit.
    const startTicks = (await processStartTicks(pid)) ?? -1;
    return { name, host, pid, startTicks, command, log };
  } finally {
    closeSync(fd);
  }
}

/**
 * Stop a process: `signal` (default SIGTERM), then SIGKILL after `graceMs`. Returns once
 * it is gone. A process that is already gone is fine.
 */
export async function stopProcess(proc: Pick<DetachedProcess, 'pid' | 'startTicks'>, graceMs = 5000, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!(await isRunning(proc))) return;
  try {
    process.kill(proc.pid, signal);
  } catch {
    return;
  }
  const until = Date.now() + graceMs;
  while (Date.now() < until) {
    if (!(await isRunning(proc))) return;
    await sleep(50);
  }
  try {
    process.kill(proc.pid, 'SIGKILL');
  } catch {
    return;
  }
  for (let i = 0; i < 100 && (await isRunning(proc)); i++) await sleep(20);
}

/** Wait until `probe` resolves true, polling; throws with `what` after `timeoutMs`. */
export async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs: number, intervalMs = 50): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/**
 * Move a process into a cgroup v1 memory group (`controller` + `cgroup`), e.g. a FUSE
 * server into its host's fuseServerCgroup before it serves anything. Not idempotent in
 * effect only in that a moved process stays moved.
 * @throws Error with the group's cgroup.procs path and the system's reason.
 */
export async function moveToMemoryCgroup(pid: number, cgroup: string, controller = '/sys/fs/cgroup/memory'): Promise<void> {
  const procs = path.join(controller, cgroup, 'cgroup.procs');
  try {
    await writeFile(procs, String(pid));
  } catch (err) {
    throw new Error(`${procs}: ${(err as Error).message}`, { cause: err });
  }
}
