import { readdir, readFile, readlink, realpath, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from './errors.js';
import type { DropCachesResponse } from './generated/vcstor/v1/DropCachesResponse.js';
import type { IoCounter } from './generated/vcstor/v1/IoCounter.js';
import type { SampleIoResponse } from './generated/vcstor/v1/SampleIoResponse.js';
import type { HostAccountingHandlers } from './generated/vcstor/v1/HostAccounting.js';
import type { Operations } from './handlers.js';
import type { CommandRunner } from './runner.js';
import { isWithin, resolveConfinedPath } from './validate.js';

/**
 * A host's caches and I/O counters, read from the kernel's own files (no command runs
 * but `sync`): what the coordinator's per-layer accounting is made of.
 *
 * Which host's, in a lab where every host shares one kernel: the host's memory cgroup
 * (config `memoryCgroup`) bounds its page cache and names its processes; without one
 * the host is the machine (a real host), its processes those of the agent's network
 * namespace that are the agent's own or a known data-path daemon.
 */

/** Programs on a data path, reported without a memory cgroup (by /proc/PID/comm, 15 chars). */
const DATA_PATH_PROGRAMS = ['tgtd', 'ganesha.nfsd', 'qemu-storage-da', 'iscsid', 'nfsd', 'rpc.mountd', 'fio', 'bonnie++', 'postmark'];

/** At most this many paths per SampleIo: each is a few stat calls. */
export const MAX_SAMPLE_PATHS = 16;

export interface HostAccountingOptions {
  /** The agent's name (SampleIoResponse.host). */
  host: string;
  runner: CommandRunner;
  /** The host's memory cgroup under the memory controller, e.g. /vcstor.vct/storage0. */
  memoryCgroup?: string;
  /** Where the host's FUSE servers (initiators) run instead: their processes are the host's too. */
  fuseServerCgroup?: string;
  /** Loop devices whose backing file is under one of these are this host's. */
  loopRoots: readonly string[];
  /** The disks holding these directories are this host's disks (state dir, pool). */
  diskPaths: readonly string[];
  /** SampleIo's paths must be inside one of these. */
  pathRoots: readonly string[];
  /** Further block devices of this host, e.g. the guest's VBDs (paths like /dev/loop3). */
  extraDevices?: () => Promise<string[]>;
  /** Where the kernel's files are (tests point these at captured copies). */
  procRoot?: string;
  sysRoot?: string;
  cgroupRoot?: string;
  /** The agent's own pid (its descendants are its processes). */
  pid?: number;
}

/** /sys/block/NAME/stat: I/Os and 512-byte sectors, read and write. */
export function parseBlockStat(text: string): { readOps: number; readBytes: number; writeOps: number; writeBytes: number } {
  const f = text.trim().split(/\s+/).map(Number);
  if (f.length < 7 || f.some((v) => !Number.isFinite(v))) throw new Error(`unexpected block stat ${JSON.stringify(text.slice(0, 80))}`);
  return { readOps: f[0]!, readBytes: f[2]! * 512, writeOps: f[4]!, writeBytes: f[6]! * 512 };
}

/** /proc/PID/io. */
export function parseProcessIo(text: string): { readChars: number; writeChars: number; readOps: number; writeOps: number; readBytes: number; writeBytes: number } {
  const v = Object.fromEntries(
    text
      .split('\n')
      .map((l) => l.split(':').map((s) => s.trim()))
      .filter((p) => p.length === 2 && p[0])
      .map(([k, x]) => [k, Number(x)]),
  ) as Record<string, number | undefined>;
  return {
    readChars: v.rchar ?? 0,
    writeChars: v.wchar ?? 0,
    readOps: v.syscr ?? 0,
    writeOps: v.syscw ?? 0,
    readBytes: v.read_bytes ?? 0,
    // Bytes whose write-out was cancelled (truncated before writeback) never reached a disk.
    writeBytes: Math.max(0, (v.write_bytes ?? 0) - (v.cancelled_write_bytes ?? 0)),
  };
}

/** /proc/PID/stat: the command (which may hold spaces and parentheses) and the parent. */
export function parseProcessStat(text: string): { comm: string; ppid: number } {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) throw new Error('unexpected /proc/PID/stat');
  const rest = text.slice(close + 2).split(' ');
  return { comm: text.slice(open + 1, close), ppid: Number(rest[1]) };
}

/** /proc/net/dev: bytes and packets per interface (read = received). */
export function parseNetDev(text: string): Array<{ name: string; readBytes: number; readOps: number; writeBytes: number; writeOps: number }> {
  return text
    .split('\n')
    .slice(2)
    .filter((l) => l.includes(':'))
    .map((l) => {
      const [name, counters] = l.split(':') as [string, string];
      const f = counters.trim().split(/\s+/).map(Number);
      return { name: name.trim(), readBytes: f[0] ?? 0, readOps: f[1] ?? 0, writeBytes: f[8] ?? 0, writeOps: f[9] ?? 0 };
    });
}

/** Key-value files: memory.stat, /proc/meminfo (values in kB there). */
export function parseKeyValues(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z0-9_()]+):?\s+(\d+)(\s+kB)?$/.exec(line.trim());
    if (m) values.set(m[1]!, Number(m[2]) * (m[3] ? 1024 : 1));
  }
  return values;
}

/** A cgroup v1 limit of "no limit" is a page-rounded LONG_MAX. */
const UNLIMITED = 2 ** 62;

/** Linux's dev_t: "major:minor" of a stat's dev or rdev (stat with bigint: true). */
export function majorMinor(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

export class HostAccounting {
  private readonly proc: string;
  private readonly sys: string;
  private readonly cgroupDir: string | undefined;

  constructor(private readonly o: HostAccountingOptions) {
    this.proc = o.procRoot ?? '/proc';
    this.sys = o.sysRoot ?? '/sys';
    this.cgroupDir = o.memoryCgroup ? path.join(o.cgroupRoot ?? '/sys/fs/cgroup/memory', o.memoryCgroup) : undefined;
  }

  /** "memory cgroup /x" or "machine": what a drop empties and what the memory counter is. */
  get scope(): string {
    return this.o.memoryCgroup ? `memory cgroup ${this.o.memoryCgroup}` : 'machine';
  }

  /**
   * Write back every dirty page, then drop the host's page cache: the cgroup's (every
   * page charged to it is reclaimed; tasks may stay in it) or the machine's.
   * @throws VcstorError FAILED_PRECONDITION when the kernel refuses (no such cgroup).
   */
  async dropCaches(signal: AbortSignal): Promise<DropCachesResponse> {
    const started = performance.now();
    const before = await this.memory();
    await this.o.runner.run('sync', [], { signal });
    const target = this.cgroupDir ? path.join(this.cgroupDir, 'memory.force_empty') : path.join(this.proc, 'sys/vm/drop_caches');
    try {
      await writeFile(target, this.cgroupDir ? '0' : '3');
    } catch (err) {
      throw new VcstorError('FAILED_PRECONDITION', `cannot drop the caches of ${this.scope} (${target}): ${(err as Error).message}`, { cause: err });
    }
    const after = await this.memory();
    return {
      scope: this.scope,
      cachedBytesBefore: before.cacheBytes,
      cachedBytesAfter: after.cacheBytes,
      dirtyBytesBefore: before.dirtyBytes,
      elapsedMs: Math.round(performance.now() - started),
    };
  }

  /**
   * Every counter of this host now. `paths` must be inside the agent's path roots
   * (symbolic links resolved); a path that does not exist is skipped.
   * @throws VcstorError INVALID_ARGUMENT for a path outside them.
   */
  async sample(paths: readonly string[]): Promise<SampleIoResponse> {
    if (paths.length > MAX_SAMPLE_PATHS) throw new VcstorError('INVALID_ARGUMENT', `paths: at most ${MAX_SAMPLE_PATHS}, got ${paths.length}`);
    const resolved: Array<{ asked: string; real: string }> = [];
    for (const [i, asked] of paths.entries()) resolved.push({ asked, real: await resolveConfinedPath(`paths[${i}]`, asked, this.o.pathRoots) });
    const time = Date.now();
    const counters: IoCounter[] = [];
    const memory = await this.memory();
    counters.push({ id: 'memory', kind: 'IO_COUNTER_KIND_MEMORY', detail: this.scope, ...memory });
    const seen = new Set<string>();
    for (const loop of await this.loopDevices()) {
      seen.add(loop.name);
      counters.push(await this.blockCounter(loop.name, loop.detail, loop.directIo));
    }
    for (const device of (await this.o.extraDevices?.()) ?? []) {
      const name = await this.deviceName(device, true);
      if (name && !seen.has(name)) {
        seen.add(name);
        counters.push(await this.blockCounter(name, device, await this.directIo(name)));
      }
    }
    for (const dir of this.o.diskPaths) {
      const name = await this.deviceName(dir, false);
      if (name && !seen.has(name)) {
        seen.add(name);
        counters.push(await this.blockCounter(name, `disk holding ${dir}`, false));
      }
    }
    for (const { asked, real } of resolved) {
      const name = await this.deviceName(real, true);
      if (name) counters.push({ ...(await this.blockCounter(name, `/dev/${name}`, await this.directIo(name))), forPath: asked });
    }
    for (const p of await this.processes()) {
      const io = await readFile(path.join(this.proc, String(p.pid), 'io'), 'utf8').catch(() => undefined);
      if (io !== undefined) counters.push({ id: `process:${p.comm.replace(/:/g, '_')}:${p.pid}`, kind: 'IO_COUNTER_KIND_PROCESS', detail: p.comm, ...parseProcessIo(io) });
    }
    const netDev = await readFile(path.join(this.proc, 'self/net/dev'), 'utf8').catch(() => '');
    for (const link of parseNetDev(netDev)) {
      if (link.name !== 'lo') counters.push({ id: `net:${link.name}`, kind: 'IO_COUNTER_KIND_NETWORK', detail: link.name, readBytes: link.readBytes, readOps: link.readOps, writeBytes: link.writeBytes, writeOps: link.writeOps });
    }
    return { host: this.o.host, timeUnixMs: time, counters };
  }

  /** What the scope's page cache holds now, and its limit. */
  private async memory(): Promise<{ cacheBytes: number; dirtyBytes: number; writebackBytes: number; limitBytes: number }> {
    if (this.cgroupDir) {
      const dir = this.cgroupDir;
      let stat: Map<string, number>;
      let limit: number;
      try {
        stat = parseKeyValues(await readFile(path.join(dir, 'memory.stat'), 'utf8'));
        limit = Number((await readFile(path.join(dir, 'memory.limit_in_bytes'), 'utf8')).trim());
      } catch (err) {
        throw new VcstorError('FAILED_PRECONDITION', `memory cgroup ${this.o.memoryCgroup} cannot be read (${(err as Error).message}); is it created and is the memory controller mounted?`, { cause: err });
      }
      return {
        cacheBytes: stat.get('total_cache') ?? stat.get('cache') ?? 0,
        dirtyBytes: stat.get('total_dirty') ?? stat.get('dirty') ?? 0,
        writebackBytes: stat.get('total_writeback') ?? stat.get('writeback') ?? 0,
        limitBytes: limit >= UNLIMITED ? 0 : limit,
      };
    }
    const info = parseKeyValues(await readFile(path.join(this.proc, 'meminfo'), 'utf8'));
    return { cacheBytes: info.get('Cached') ?? 0, dirtyBytes: info.get('Dirty') ?? 0, writebackBytes: info.get('Writeback') ?? 0, limitBytes: info.get('MemTotal') ?? 0 };
  }

  /** Attached loop devices whose backing file is under the loop roots. */
  private async loopDevices(): Promise<Array<{ name: string; detail: string; directIo: boolean }>> {
    const found: Array<{ name: string; detail: string; directIo: boolean }> = [];
    const names = (await readdir(path.join(this.sys, 'block')).catch(() => [] as string[])).filter((n) => /^loop\d+$/.test(n));
    for (const name of names.sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)))) {
      const backing = (await readFile(path.join(this.sys, 'block', name, 'loop/backing_file'), 'utf8').catch(() => '')).trim().replace(/ \(deleted\)$/, '');
      if (!backing || !this.o.loopRoots.some((root) => isWithin(root, backing))) continue;
      const directIo = await this.directIo(name);
      found.push({ name, detail: `${backing}${directIo ? ' (direct I/O)' : ' (buffered)'}`, directIo });
    }
    return found;
  }

  private async directIo(name: string): Promise<boolean> {
    return (await readFile(path.join(this.sys, 'block', name, 'loop/dio'), 'utf8').catch(() => '0')).trim() === '1';
  }

  /**
   * The block device's kernel name: of the device itself when `file` is one (and
   * `itselfIfDevice`), else of the device holding the file. Undefined when none (a
   * filesystem with no block device, such as tmpfs or FUSE, or a missing path).
   */
  private async deviceName(file: string, itselfIfDevice: boolean): Promise<string | undefined> {
    const s = await stat(file, { bigint: true }).catch(() => undefined);
    if (!s) return undefined;
    const dev = itselfIfDevice && s.isBlockDevice() ? s.rdev : s.dev;
    const link = await realpath(path.join(this.sys, 'dev/block', majorMinor(dev))).catch(() => undefined);
    return link ? path.basename(link) : undefined;
  }

  private async blockCounter(name: string, detail: string, directIo: boolean): Promise<IoCounter> {
    const statFile = await this.blockStatFile(name);
    const counters = parseBlockStat(await readFile(statFile, 'utf8'));
    return { id: `block:${name}`, kind: 'IO_COUNTER_KIND_BLOCK_DEVICE', detail, directIo, ...counters };
  }

  /** /sys/block/NAME/stat, or a partition's /sys/class/block/NAME/stat. */
  private async blockStatFile(name: string): Promise<string> {
    const disk = path.join(this.sys, 'block', name, 'stat');
    return (await stat(disk).catch(() => undefined)) ? disk : path.join(this.sys, 'class/block', name, 'stat');
  }

  /**
   * The host's processes: its memory cgroup's, or else the agent, its descendants and
   * the data-path daemons that share its network namespace.
   */
  private async processes(): Promise<Array<{ pid: number; comm: string }>> {
    const read = async (pid: number) => {
      const text = await readFile(path.join(this.proc, String(pid), 'stat'), 'utf8').catch(() => undefined);
      return text === undefined ? undefined : { pid, ...parseProcessStat(text) };
    };
    if (this.cgroupDir) {
      const groups = [this.cgroupDir, ...(this.o.fuseServerCgroup ? [path.join(this.o.cgroupRoot ?? '/sys/fs/cgroup/memory', this.o.fuseServerCgroup)] : [])];
      const pids = (await Promise.all(groups.map((g) => readFile(path.join(g, 'cgroup.procs'), 'utf8').catch(() => ''))))
        .join('\n')
        .split('\n')
        .filter(Boolean)
        .map(Number);
      const all = await Promise.all(pids.map(read));
      return all.filter((p): p is NonNullable<typeof p> => p !== undefined).map(({ pid, comm }) => ({ pid, comm }));
    }
    const self = this.o.pid ?? process.pid;
    const ownNet = await readlink(path.join(this.proc, String(self), 'ns/net')).catch(() => '');
    const pids = (await readdir(this.proc).catch(() => [] as string[])).filter((n) => /^\d+$/.test(n)).map(Number);
    const all = (await Promise.all(pids.map(read))).filter((p): p is NonNullable<typeof p> => p !== undefined);
    const children = new Map<number, number[]>();
    for (const p of all) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
    const mine = new Set<number>();
    const stack = [self];
    while (stack.length > 0) {
      const pid = stack.pop()!;
      if (mine.has(pid)) continue;
      mine.add(pid);
      stack.push(...(children.get(pid) ?? []));
    }
    const selected: Array<{ pid: number; comm: string }> = [];
    for (const p of all) {
      if (mine.has(p.pid)) selected.push({ pid: p.pid, comm: p.comm });
      else if (DATA_PATH_PROGRAMS.includes(p.comm) && (await readlink(path.join(this.proc, String(p.pid), 'ns/net')).catch(() => '')) === ownNet) selected.push({ pid: p.pid, comm: p.comm });
    }
    return selected;
  }
}

/** The HostAccounting service's operations, all of them (every agent serves it). */
export type HostAccountingOperations = Required<Operations<HostAccountingHandlers>>;

/** DropCaches and SampleIo, the same on every agent. */
export function hostAccountingOperations(accounting: HostAccounting): HostAccountingOperations {
  return {
    DropCaches: async (_request, { signal }) => accounting.dropCaches(signal),
    SampleIo: async (request) => accounting.sample(request.paths),
  };
}
