import { readFile } from 'node:fs/promises';
import { makeClient, unary } from '../../common/clients.js';
import { parseMountinfo } from '../../common/filesystems.js';
import { isWithin } from '../../common/validate.js';
import type { LabFile } from '../../lab/lab.js';
import { labClientCredentials, runner } from './lab.js';

/**
 * What the fault suite shares: the inventory of everything a run can leak in the lab,
 * and the counts each suite prints for the issue note (faults injected, resources
 * leaked, results lost).
 */

/** The programs the lab itself runs in its namespaces: anything else there is a leak. */
const LAB_DAEMONS = new Set(['node', 'tgtd', 'ganesha.nfsd', 'rpcbind', 'nats-server']);

/**
 * Everything the agents or the machine still hold of provisioned storage: volumes,
 * targets and their sessions, NFS exports, initiator sessions, running domains, images,
 * mounts and loop devices under the lab's directory, and processes in the lab's
 * namespaces that are not the lab's own daemons (qemu-storage-daemon, benchmarks).
 * Empty when nothing leaked.
 */
export async function labLeftovers(lab: LabFile): Promise<string[]> {
  const credentials = labClientCredentials(lab);
  const at = (role: string) => lab.hosts.find((h) => h.role === role)!.agentAddress;
  const storage = makeClient('storage', at('storage'), credentials);
  const dom0 = makeClient('dom0', at('dom0'), credentials);
  const guest = makeClient('guest', at('guest'), credentials);
  const T = { timeoutMs: 10_000 };
  try {
    const targets = (await unary(storage, storage.ListIscsiTargets, {}, T)).targets;
    const loops = (JSON.parse((await runner.run('losetup', ['--json', '--list', '--output', 'NAME,BACK-FILE'])).stdout || '{"loopdevices":[]}') as { loopdevices: Array<{ name: string; 'back-file': string | null }> }).loopdevices
      .filter((d) => d['back-file'] && isWithin(lab.dir, d['back-file'].replace(/ \(deleted\)$/, '')))
      .map((d) => `loop ${d.name} (${d['back-file']})`);
    const processes: string[] = [];
    for (const host of lab.hosts) {
      const pids = (await runner.run('ip', ['netns', 'pids', host.namespace], { okExitCodes: [0, 1] })).stdout.split('\n').filter(Boolean);
      for (const pid of pids) {
        const comm = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
        if (comm !== '' && !LAB_DAEMONS.has(comm)) processes.push(`process ${comm} ${pid} in ${host.name}`);
      }
    }
    return [
      ...(await unary(storage, storage.ListVolumes, {}, T)).volumes.map((v) => `volume ${v.name}`),
      ...targets.map((t) => `target ${t.iqn}`),
      ...targets.flatMap((t) => t.sessions.map((s) => `target session ${s.initiatorIqn}`)),
      ...(await unary(storage, storage.ListNfsExports, {}, T)).exports.map((e) => `export ${e.exportPath}`),
      ...(await unary(dom0, dom0.ListIscsiSessions, {}, T)).sessions.map((s) => `dom0 session ${s.target?.iqn}`),
      ...(await unary(guest, guest.ListIscsiSessions, {}, T)).sessions.map((s) => `guest session ${s.target?.iqn}`),
      ...(await unary(dom0, dom0.ListDomains, {}, T)).domains.filter((d) => d.state === 'DOMAIN_STATE_RUNNING').map((d) => `domain ${d.name}`),
      ...(await unary(dom0, dom0.ListImages, {}, T)).images.map((i) => `image ${i.location?.path}`),
      ...parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8')).filter((m) => isWithin(lab.dir, m.mountpoint)).map((m) => `mount ${m.mountpoint}`),
      ...loops,
      ...processes,
    ];
  } finally {
    for (const c of [storage, dom0, guest]) c.close();
  }
}

/** Poll until the lab holds nothing (teardown of sessions is asynchronous on tgtd's side). */
export async function settledLeftovers(lab: LabFile, timeoutMs = 15_000): Promise<string[]> {
  const until = Date.now() + timeoutMs;
  let left = await labLeftovers(lab);
  while (left.length > 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 300));
    left = await labLeftovers(lab).catch((err: unknown) => [`inventory failed: ${String(err)}`]);
  }
  return left;
}

/** The counts a fault suite reports: every injected fault, every leak, every result lost. */
export class FaultTally {
  faults = 0;
  leaked = 0;
  resultsLost = 0;
  readonly lines: string[] = [];

  constructor(readonly suite: string) {}

  /** One fault and what the system did about it, for the note. */
  record(fault: string, outcome: string, leaked: number, resultsLost: number): void {
    this.faults++;
    this.leaked += leaked;
    this.resultsLost += resultsLost;
    this.lines.push(`${fault}: ${outcome}; leaked ${leaked}, results lost ${resultsLost}`);
  }

  /** TAP diagnostics: `# faults ...` lines the runner prints and CI keeps. */
  print(): void {
    for (const line of this.lines) console.log(`# ${this.suite}: ${line}`);
    console.log(`# ${this.suite} totals: faults injected ${this.faults}, resources leaked ${this.leaked}, results lost ${this.resultsLost}`);
  }
}
