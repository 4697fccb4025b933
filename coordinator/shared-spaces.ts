import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { unary } from '../common/clients.js';
import { VcstorError } from '../common/errors.js';
import type { GetInfoResponse__Output } from '../common/generated/vcstor/v1/GetInfoResponse.js';
import type { ClusterGuest } from './cluster-plan.js';
import type { ClusterAgents } from './cluster-records.js';
import { agentSet } from './cluster-records.js';
import { runLimited } from './cluster-schedule.js';
import { methodTarget } from './cluster.js';
import type { UndoJournal } from './journal.js';
import { clusterGuests } from './cluster-plan.js';
import { METHOD_SPECS, provisionMethod, runUndoSteps, type StepTiming, type UndoAgents, type UndoStep } from './methods.js';
import type { MethodName } from './methods/names.js';
import { SHARED_SPACES, type SharedPlan, type SharedSpaceName, type SpaceName } from './shared-plan.js';

/**
 * The spaces a shared-space run compares, set up for its guests and taken down again:
 * a parallel file system over every storage server that every guest mounts (GlusterFS),
 * and, for contrast, a method of the registry giving each guest a disk of its own. Each
 * step is journaled before it is taken (a group per space, or per space and guest), each
 * step naming its agent by its place in the plan (UndoStep.agentIndex: storage servers
 * and dom0 hosts in plan order, guests in clusterGuests order), so one resolver finds
 * every step's agent, also in `vcstor cleanup` after a crash.
 */

/** A space set up for the run's guests. */
export interface SpaceOnGuests {
  space: SpaceName;
  /** The guests see one another's files (a shared space), or each has a disk of its own. */
  shared: boolean;
  /** Each guest's directory in the space, by guest name. */
  directories: Map<string, string>;
  /** Its set-up, step by step. */
  setup: StepTiming[];
}

/** What setting a space up needs. */
export interface SpaceContext {
  plan: SharedPlan;
  /** Every guest of the plan, in the order the counts take them. */
  guests: ClusterGuest[];
  agents: ClusterAgents;
  journal: UndoJournal;
  signal: AbortSignal;
  /** Prefix of every name the run makes ("sh-x1y2z3"). */
  prefix: string;
  /** Progress for people (a step's message). */
  say(message: string): Promise<void>;
}

export function isSharedSpace(space: SpaceName): space is SharedSpaceName {
  return (SHARED_SPACES as readonly string[]).includes(space);
}

/** The journal groups of a space: one for a shared space, one per guest for a per-guest method. */
export function spaceGroups(space: SpaceName, journal: UndoJournal): string[] {
  return Object.keys(journal.pending()).filter((g) => g === space || g.startsWith(`${space}/`));
}

/** The client of an undo step's agent, by its role and place in the plan. */
export function planUndoAgents(plan: SharedPlan, agents: ClusterAgents): UndoAgents {
  const guests = clusterGuests(plan);
  const address = (step: UndoStep): string | undefined => {
    const i = step.agentIndex ?? 0;
    if (step.agent === 'storage') return plan.cluster.storage[i]?.address;
    if (step.agent === 'dom0') return plan.cluster.dom0[i]?.address;
    return guests[i]?.address;
  };
  return (step: UndoStep) => {
    const at = address(step);
    return at ? (agents.client(step.agent, at) as unknown as grpc.Client) : undefined;
  };
}

/**
 * Set `space` up for every guest of the plan (also those a count leaves idle: the space is
 * set up once). A failed step leaves what was made journaled, for tearDownSpace.
 * @throws VcstorError of the step that failed.
 */
export async function setUpSpace(space: SpaceName, k: SpaceContext): Promise<SpaceOnGuests> {
  if (space === 'parallel-fs') return setUpParallelFs(k);
  if (space === 'nas-head') return setUpNasHead(k);
  if (space === 'ip-san') {
    // Reached only where every guest reports an OCFS2 it can run (spaceUnavailable).
    throw new VcstorError('UNIMPLEMENTED', 'ip-san: one LUN logged in by every guest with OCFS2 on it needs the o2cb cluster stack configured on each guest (cluster.conf, heartbeat), which vcstor does not set up yet; see the README (Shared spaces)');
  }
  return setUpPerGuest(space, k);
}

/** What each space needs of its hosts' drivers: [role, concern], as GetInfo reports them. */
export function spaceNeeds(space: SpaceName): ReadonlyArray<readonly ['storage' | 'dom0' | 'guest', string]> {
  if (space === 'parallel-fs') return [['storage', 'parallel-fs'], ['guest', 'parallel-fs-client']];
  if (space === 'nas-head') return [['storage', 'iscsi-target'], ['storage', 'iscsi-initiator'], ['storage', 'nfs-server'], ['guest', 'nfs-client']];
  if (space === 'ip-san') return [['storage', 'iscsi-target'], ['guest', 'iscsi-initiator'], ['guest', 'cluster-filesystem']];
  return METHOD_SPECS[space].needs;
}

/**
 * Why `space` cannot run on these hosts (a driver it needs is not selected, or selected
 * and unavailable), in the agents' own words; undefined when it can. Pure.
 */
export function spaceUnavailable(space: SpaceName, infos: ReadonlyArray<{ role: 'storage' | 'dom0' | 'guest'; name: string; info: GetInfoResponse__Output }>): string | undefined {
  for (const [role, concern] of spaceNeeds(space)) {
    for (const host of infos.filter((i) => i.role === role)) {
      const driver = host.info.drivers.find((d) => d.concern === concern && d.selected);
      if (!driver) return `${host.name} has no ${concern} driver selected`;
      if (!driver.available) return `${host.name}'s ${concern} driver (${driver.driver}) is not available: ${driver.detail}`;
    }
  }
  return undefined;
}

/**
 * Undo every step the journal holds for `space`, each group in reverse, stopping a
 * group at its first failure (what is left stays journaled).
 * @returns what was left behind, in words (empty: nothing).
 */
export async function tearDownSpace(space: SpaceName, k: Pick<SpaceContext, 'plan' | 'agents' | 'journal'>): Promise<string[]> {
  const left: string[] = [];
  const resolver = planUndoAgents(k.plan, k.agents);
  const timeoutMs = k.plan.cluster.stepTimeoutS * 1000;
  await runLimited(spaceGroups(space, k.journal), k.plan.cluster.concurrency, (group) => [group], async (group) => {
    try {
      await runUndoSteps(k.journal.pending()[group] ?? [], resolver, timeoutMs, k.journal.of(group));
    } catch (err) {
      left.push(`${group}: ${err instanceof Error ? err.message : String(err)}`);
    }
  });
  await k.journal.settled();
  return left;
}

/** The place of each agent in the plan, for UndoStep.agentIndex. */
function indexes(k: SpaceContext, g: ClusterGuest): Record<'storage' | 'dom0' | 'guest', number> {
  return {
    storage: k.plan.cluster.storage.findIndex((s) => s.name === g.storage.name),
    dom0: k.plan.cluster.dom0.findIndex((d) => d.name === g.dom0.name),
    guest: clusterGuests(k.plan).findIndex((x) => x.name === g.name),
  };
}

/** A method of the registry for each guest, set up at once within the plan's limits: each guest's directory is its own disk. */
async function setUpPerGuest(method: MethodName, k: SpaceContext): Promise<SpaceOnGuests> {
  const directories = new Map<string, string>();
  const setup: StepTiming[] = [];
  const c = k.plan.cluster;
  await runLimited(k.guests, c.concurrency, (g) => [g.storage.address, g.dom0.address, g.address], async (g) => {
    const at = indexes(k, g);
    const group = `${method}/${g.name}`;
    // Each step stamped with its agent's place in the plan: one resolver undoes them all.
    const stamp = (pending: readonly UndoStep[]) => k.journal.set(group, pending.map((s) => ({ ...s, agentIndex: at[s.agent] })));
    const guest = { ...g, method, prefix: `${k.prefix}-${g.name}`.slice(0, 40) };
    const target = methodTarget(k.plan, guest, agentSet(k.agents, { storage: g.storage.address, dom0: g.dom0.address, guest: g.address }));
    // A failure keeps its steps journaled: tearDownSpace undoes every guest's alike.
    const provisioned = await provisionMethod(method, target, k.signal, stamp, { keepOnFailure: true });
    directories.set(g.name, provisioned.benchmarkDirectory);
    setup.push(...provisioned.setup.map((s) => ({ step: `${g.name}: ${s.step}`, ms: s.ms })));
    await k.say(`${g.name}: ${method} set up (${provisioned.setup.reduce((n, s) => n + s.ms, 0)} ms)`);
  });
  return { space: method, shared: false, directories, setup };
}

/** A shared space's set-up steps, each timed; every call with the plan's deadline and the run's signal. */
function stepClock(k: SpaceContext): { setup: StepTiming[]; timed: <T>(step: string, work: () => Promise<T>) => Promise<T>; opts: { timeoutMs: number; signal: AbortSignal } } {
  const setup: StepTiming[] = [];
  const timed = async <T>(step: string, work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    const result = await work();
    setup.push({ step, ms: Math.round(performance.now() - started) });
    return result;
  };
  return { setup, timed, opts: { timeoutMs: k.plan.cluster.stepTimeoutS * 1000, signal: k.signal } };
}

/**
 * parallel-fs: a volume on every storage server given as a brick, one parallel file
 * system over all the bricks (created by the first server, which probes the others),
 * mounted by every guest.
 */
async function setUpParallelFs(k: SpaceContext): Promise<SpaceOnGuests> {
  const c = k.plan.cluster;
  const group = 'parallel-fs';
  const name = `${k.prefix}-pfs`;
  const { setup, timed, opts } = stepClock(k);
  const bricks = new Array<{ host: string; path: string }>(c.storage.length);
  await Promise.all(
    c.storage.map(async (s, i) => {
      const client = k.agents.client('storage', s.address);
      const volume = `${name}-b${i}`;
      await k.journal.add(group, { step: `delete brick volume ${volume} on ${s.name}`, agent: 'storage', agentIndex: i, rpc: 'DeleteVolume', request: { name: volume, force: true }, data: true });
      await timed(`${s.name}: create volume`, () => unary(client, client.CreateVolume, { name: volume, sizeBytes: c.diskSize, provisioning: c.sparse ? 'PROVISIONING_SPARSE' : 'PROVISIONING_PREALLOCATED' }, opts));
      await k.journal.add(group, { step: `unexport brick ${volume} on ${s.name}`, agent: 'storage', agentIndex: i, rpc: 'UnexportBrick', request: { volume } });
      const { brick } = await timed(`${s.name}: export brick`, () => unary(client, client.ExportBrick, { volume, makeFilesystem: 'ext4' }, opts));
      bricks[i] = { host: s.host, path: brick!.path };
    }),
  );
  const first = k.agents.client('storage', c.storage[0]!.address);
  await k.journal.add(group, { step: `delete parallel file system ${name}`, agent: 'storage', agentIndex: 0, rpc: 'DeleteParallelFs', request: { name } });
  await timed('create parallel file system', () => unary(first, first.CreateParallelFs, { name, bricks }, opts));
  await k.say(`parallel file system ${name} over ${bricks.map((b) => `${b.host}:${b.path}`).join(', ')}`);
  const directories = new Map<string, string>();
  await runLimited(k.guests, c.concurrency, (g) => [g.address], async (g) => {
    const client = k.agents.client('guest', g.address);
    const mountpoint = path.join(g.mountDir, name);
    await k.journal.add(group, { step: `${g.name}: unmount ${name}`, agent: 'guest', agentIndex: indexes(k, g).guest, rpc: 'UnmountParallelFs', request: { mountpoint } });
    await timed(`${g.name}: mount`, () => unary(client, client.MountParallelFs, { server: c.storage[0]!.host, name, mountpoint }, opts));
    directories.set(g.name, mountpoint);
  });
  return { space: 'parallel-fs', shared: true, directories, setup };
}

/**
 * nas-head: a volume on the SAN server exported over iSCSI to the NAS head (CHAP, its
 * initiator only), which logs in, puts ext4 on the LUN, mounts it under its export root
 * and re-exports it over NFS to the plan's clients; every guest mounts that export.
 */
async function setUpNasHead(k: SpaceContext): Promise<SpaceOnGuests> {
  const c = k.plan.cluster;
  const nas = k.plan.shared.nasHead!;
  const group = 'nas-head';
  const name = `${k.prefix}-nas`;
  const { setup, timed, opts } = stepClock(k);
  const sanIndex = c.storage.findIndex((s) => s.name === nas.san);
  const headIndex = c.storage.findIndex((s) => s.name === nas.head);
  const san = k.agents.client('storage', c.storage[sanIndex]!.address);
  const head = k.agents.client('storage', c.storage[headIndex]!.address);
  const chap = { username: k.plan.chap.username, password: k.plan.chapPassword };
  const journal = (u: Omit<UndoStep, 'agent'> & { agent?: UndoStep['agent'] }, at: number) => k.journal.add(group, { agent: 'storage', ...u, agentIndex: at });

  await journal({ step: `delete volume ${name} on ${nas.san}`, rpc: 'DeleteVolume', request: { name, force: true }, data: true }, sanIndex);
  await timed(`${nas.san}: create volume`, () => unary(san, san.CreateVolume, { name, sizeBytes: c.diskSize, provisioning: c.sparse ? 'PROVISIONING_SPARSE' : 'PROVISIONING_PREALLOCATED' }, opts));
  await journal({ step: `unexport iscsi ${name} on ${nas.san}`, rpc: 'UnexportIscsi', request: { volume: name, force: true } }, sanIndex);
  const { target } = await timed(`${nas.san}: export iscsi`, () => unary(san, san.ExportIscsi, { volume: name, allowedInitiators: [nas.initiatorIqn], chap }, opts));
  const ref = { portal: `${c.storage[sanIndex]!.host}:3260`, iqn: target!.iqn, lun: 0 };
  await journal({ step: `${nas.head}: iscsi logout`, rpc: 'IscsiLogout', request: { target: ref, initiatorIqn: nas.initiatorIqn } }, headIndex);
  const login = await timed(`${nas.head}: iscsi login`, () => unary(head, head.IscsiLogin, { target: ref, initiatorIqn: nas.initiatorIqn, chap }, opts));
  const device = login.session!.devicePath;
  await timed(`${nas.head}: mkfs`, () => unary(head, head.MakeFilesystem, { device, fsType: 'ext4' }, opts));
  const exportPath = path.join(nas.exportDir, name);
  await journal({ step: `${nas.head}: unmount ${exportPath}`, rpc: 'UnmountFilesystem', request: { mountpoint: exportPath } }, headIndex);
  await timed(`${nas.head}: mount`, () => unary(head, head.MountFilesystem, { device, mountpoint: exportPath }, opts));
  await journal({ step: `${nas.head}: unexport nfs ${exportPath}`, rpc: 'UnexportNfs', request: { exportPath } }, headIndex);
  await timed(`${nas.head}: export nfs`, () => unary(head, head.ExportNfs, { directory: exportPath, clients: [{ match: c.nfsClients, squash: 'NFS_SQUASH_NONE' }] }, opts));
  await k.say(`${nas.head} re-exports ${nas.san}'s LUN ${target!.iqn} (ext4 at ${exportPath}) over NFS`);
  const directories = new Map<string, string>();
  await runLimited(k.guests, c.concurrency, (g) => [g.address], async (g) => {
    const client = k.agents.client('guest', g.address);
    const mountpoint = path.join(g.mountDir, name);
    await k.journal.add(group, { step: `${g.name}: unmount ${name}`, agent: 'guest', agentIndex: indexes(k, g).guest, rpc: 'UnmountNfs', request: { mountpoint } });
    await timed(`${g.name}: nfs mount`, () => unary(client, client.MountNfs, { server: c.storage[headIndex]!.host, exportPath, mountpoint, nfsVersion: 3, options: [...c.nfsMountOptions] }, opts));
    directories.set(g.name, mountpoint);
  });
  return { space: 'nas-head', shared: true, directories, setup };
}

/** The words of a space's data path, for the report. */
export function spaceDataPath(space: SpaceName, storageServers: number): string {
  if (space === 'ip-san') return 'a volume on a storage server → its iSCSI target → every guest logs in to the one LUN → a cluster file system (OCFS2) mounted by all';
  if (space === 'nas-head') {
    return "a volume on the SAN server → its iSCSI target → the NAS head's initiator → ext4 on the NAS head → the NAS head's NFS server → each guest's NFS client (one file system, one server in the way)";
  }
  if (space === 'parallel-fs') {
    return `GlusterFS: a distributed volume over a brick (ext4 on a volume) on each of ${storageServers} storage servers → each guest's GlusterFS FUSE client (files hashed to bricks by name)`;
  }
  return `${space}: each guest its own disk (${METHOD_SPECS[space].backing === 'storage' ? 'from a storage server' : "on its dom0's disk"}), not shared`;
}
