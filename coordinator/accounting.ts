import { unary } from '../common/clients.js';
import { VcstorError } from '../common/errors.js';
import type { IoCounter__Output } from '../common/generated/vcstor/v1/IoCounter.js';
import type { SampleIoResponse__Output } from '../common/generated/vcstor/v1/SampleIoResponse.js';
import { benchmarkRole, methodSpec, type AgentSet, type MethodName } from './methods.js';

/**
 * Per-layer I/O accounting of a benchmark: caches dropped on every host first, then the
 * kernel's own counters (block devices, processes, links, memory cgroups) sampled on
 * every host before and after the run, and the difference put in the method's terms —
 * what the guest wrote, what each layer passed on, what reached the backing disk, and
 * which cache held the rest.
 */

export type HostRole = 'storage' | 'dom0' | 'guest';

/** One layer's counter over a run (the proto's LayerIo, as the run store keeps it). */
export interface LayerIo {
  host: string;
  layer: string;
  counter: string;
  detail: string;
  readBytes: number;
  writeBytes: number;
  readOps: number;
  writeOps: number;
  readChars: number;
  writeChars: number;
  dirtyBytesAfter: number;
}

/** A host's cache drop before a run (the proto's CacheDrop). */
export interface CacheDrop {
  host: string;
  scope: string;
  cachedBytesBefore: number;
  cachedBytesAfter: number;
  elapsedMs: number;
}

/** Where a run's bytes went (the proto's IoAccounting, as MeasurementRecord keeps it). */
export interface IoAccounting {
  benchmarkWriteBytes: number;
  backingWriteBytes: number;
  reachedBackingPercent: number;
  absorbedBytes: number;
  heldBy: string;
  layers: LayerIo[];
  drops: CacheDrop[];
  elapsedMs: number;
}
const ROLES: readonly HostRole[] = ['guest', 'dom0', 'storage'];

/** One host's sample, named by the agent and by its role in the method. */
export interface HostSample {
  role: HostRole;
  sample: SampleIoResponse__Output;
}

/** The host whose own disk holds the method's data (registry.ts): dom0 for local methods, else the storage server. */
function backingRole(method: string): HostRole {
  return methodSpec(method)?.backing ?? 'storage';
}

/** The paths of a provisioned method whose devices each host should report. */
export interface AccountingPaths {
  guest: string[];
  dom0: string[];
}

/**
 * Drop the caches of every host, one after the other (in the namespace lab each host's
 * memory cgroup; on real hosts each machine's whole page cache).
 * @throws VcstorError when an agent refuses (UNIMPLEMENTED from an older agent).
 */
export async function dropCaches(agents: AgentSet, timeoutMs: number, signal?: AbortSignal): Promise<CacheDrop[]> {
  const drops: CacheDrop[] = [];
  for (const role of ['storage', 'dom0', 'guest'] as const) {
    const client = agents[role];
    const r = await unary(client, client.DropCaches, {}, { timeoutMs, ...(signal ? { signal } : {}) });
    drops.push({ host: role, scope: r.scope, cachedBytesBefore: n(r.cachedBytesBefore), cachedBytesAfter: n(r.cachedBytesAfter), elapsedMs: n(r.elapsedMs) });
  }
  return drops;
}

/** Sample every host's counters at once. */
export async function sampleHosts(agents: AgentSet, paths: AccountingPaths, timeoutMs: number, signal?: AbortSignal): Promise<HostSample[]> {
  const opts = { timeoutMs, ...(signal ? { signal } : {}) };
  const [storage, dom0, guest] = await Promise.all([
    unary(agents.storage, agents.storage.SampleIo, { paths: [] }, opts),
    unary(agents.dom0, agents.dom0.SampleIo, { paths: paths.dom0 }, opts),
    unary(agents.guest, agents.guest.SampleIo, { paths: paths.guest }, opts),
  ]);
  return [
    { role: 'storage', sample: storage },
    { role: 'dom0', sample: dom0 },
    { role: 'guest', sample: guest },
  ];
}

/** A one-line account of dropped caches, for the run's events. */
export function describeDrops(drops: readonly CacheDrop[]): string {
  return drops.map((d) => `${d.host}: ${d.scope} ${mib(d.cachedBytesBefore)} -> ${mib(d.cachedBytesAfter)} cached`).join('; ');
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

const MIB = 2 ** 20;
const n = (v: unknown): number => (typeof v === 'number' ? v : Number(v ?? 0)) || 0;

/** What a counter is in the method's path, or undefined to leave it out. */
export function layerOf(role: HostRole, counter: IoCounter__Output, method: string): string | undefined {
  // A block device that is not a loop device is the machine's disk, even when it was
  // reported as the device holding a path (file-local's image lies on it).
  const isDisk = counter.kind === 'IO_COUNTER_KIND_BLOCK_DEVICE' && !counter.id.startsWith('block:loop');
  switch (counter.kind) {
    case 'IO_COUNTER_KIND_BLOCK_DEVICE':
      if (isDisk) {
        // The machine's disk is the backing disk of the host that holds the data.
        return role === backingRole(method) ? 'backing disk' : undefined;
      }
      if (counter.forPath) return role === benchmarkRole(method) ? `${role} device` : `${role} image device`;
      return role === 'storage' ? 'storage volume device' : `${role} loop device`;
    case 'IO_COUNTER_KIND_PROCESS': {
      const program = counter.id.split(':')[1] ?? '';
      // The kernel adds a reaped child's I/O to its parent's: the agent's counter holds
      // the benchmarks it ran.
      if (program === 'node') return role === benchmarkRole(method) ? `${role} benchmark (agent)` : `${role} agent`;
      if (role === 'storage') return program === 'tgtd' || program.startsWith('ganesha') ? 'storage daemon' : `storage ${program}`;
      if (program.startsWith('qemu-storage-d')) return role === 'guest' ? 'guest initiator' : 'dom0 backend';
      return `${role} ${program}`;
    }
    case 'IO_COUNTER_KIND_NETWORK':
      return `${role} link`;
    case 'IO_COUNTER_KIND_MEMORY':
      return `${role} memory`;
    default:
      return undefined;
  }
}

/** The difference of one counter between two samples (a counter new in `after` counts from 0). */
function delta(before: IoCounter__Output | undefined, after: IoCounter__Output): Omit<LayerIo, 'host' | 'layer' | 'counter' | 'detail' | 'dirtyBytesAfter'> {
  const d = (k: keyof IoCounter__Output) => Math.max(0, n(after[k]) - n(before?.[k]));
  return {
    readBytes: d('readBytes'),
    writeBytes: d('writeBytes'),
    readOps: d('readOps'),
    writeOps: d('writeOps'),
    readChars: d('readChars'),
    writeChars: d('writeChars'),
  };
}

/**
 * The accounting of one run from the samples before and after it.
 * @param benchmarkWriteBytes what the tool itself wrote, when it says (bonnie++);
 *   otherwise the guest's device (or its link, for nfs) stands for it.
 */
export function account(o: {
  method: MethodName | string;
  before: readonly HostSample[];
  after: readonly HostSample[];
  drops: readonly CacheDrop[];
  elapsedMs: number;
  benchmarkWriteBytes?: number;
}): IoAccounting {
  const layers: LayerIo[] = [];
  for (const role of ROLES) {
    const after = o.after.find((h) => h.role === role);
    const before = o.before.find((h) => h.role === role);
    if (!after) continue;
    const host = after.sample.host || role;
    // A device reported for a path is also listed plainly: keep one, the path's for a
    // loop device (it says what the device is in the method), the plain one for a disk.
    const seen = new Set<string>();
    const rank = (c: IoCounter__Output) => (c.id.startsWith('block:loop') === Boolean(c.forPath) ? 0 : 1);
    const counters = [...after.sample.counters].sort((a, b) => rank(a) - rank(b));
    for (const counter of counters) {
      if (seen.has(counter.id)) continue;
      seen.add(counter.id);
      const layer = layerOf(role, counter, o.method);
      if (!layer) continue;
      const previous = before?.sample.counters.find((c) => c.id === counter.id && c.forPath === counter.forPath);
      if (counter.kind === 'IO_COUNTER_KIND_MEMORY') {
        layers.push({ host, layer, counter: counter.id, detail: counter.detail, readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0, readChars: 0, writeChars: 0, dirtyBytesAfter: n(counter.dirtyBytes) + n(counter.writebackBytes) });
        continue;
      }
      const moved = delta(previous, counter);
      if (moved.readBytes + moved.writeBytes + moved.readChars + moved.writeChars === 0) continue;
      layers.push({ host, layer, counter: counter.id, detail: counter.forPath ? `${counter.detail} (holds ${counter.forPath})` : counter.detail, ...moved, dirtyBytesAfter: 0 });
    }
  }
  const bench = benchmarkRole(o.method);
  const benchDevice = layers.find((l) => l.layer === `${bench} device`);
  const benchLink = layers.find((l) => l.layer === `${bench} link`);
  const written = o.benchmarkWriteBytes ?? (benchDevice ? benchDevice.writeBytes : benchLink ? benchLink.writeBytes : 0);
  const backing = layers.filter((l) => l.layer === 'backing disk').reduce((sum, l) => sum + l.writeBytes, 0);
  const absorbed = Math.max(0, written - backing);
  const holder = layers.filter((l) => l.layer.endsWith(' memory') && l.dirtyBytesAfter > 0).sort((a, b) => b.dirtyBytesAfter - a.dirtyBytesAfter)[0];
  return {
    benchmarkWriteBytes: written,
    backingWriteBytes: backing,
    reachedBackingPercent: written > 0 ? Math.round((1000 * backing) / written) / 10 : 0,
    absorbedBytes: absorbed,
    // Less than a MiB is metadata and rounding, not a cache that held the run's data.
    heldBy: absorbed >= MIB && holder ? `${holder.host} page cache (${mib(holder.dirtyBytesAfter)} dirty at the end)` : '',
    layers,
    drops: [...o.drops],
    elapsedMs: o.elapsedMs,
  };
}

/** bonnie++'s own writes: block write and rewrite (and per-char write unless skipped) of its file. */
export function bonnieWriteBytes(request: { bonnie?: { fileSizeBytes?: number | string | null; directIo?: boolean | null; skipPerChar?: boolean | null } | null }): number | undefined {
  const b = request.bonnie;
  if (!b?.fileSizeBytes) return undefined;
  const passes = b.directIo || b.skipPerChar ? 2 : 3;
  return n(b.fileSizeBytes) * passes;
}

/** Wrap an accounting failure so it says what it was doing. */
export function accountingError(err: unknown): VcstorError {
  const why = err instanceof Error ? err.message : String(err);
  return new VcstorError(err instanceof VcstorError ? err.code : 'INTERNAL', `I/O accounting: ${why}`, { cause: err });
}
