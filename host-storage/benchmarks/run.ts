import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, realpath, rm, stat, statfs, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../../common/errors.js';
import { Filesystems } from '../../common/filesystems.js';
import type { BenchmarkResult } from '../../common/generated/vcstor/v1/BenchmarkResult.js';
import type { BonnieSpec__Output } from '../../common/generated/vcstor/v1/BonnieSpec.js';
import type { FioDirectionResult__Output } from '../../common/generated/vcstor/v1/FioDirectionResult.js';
import type { FioSpec__Output } from '../../common/generated/vcstor/v1/FioSpec.js';
import type { PostmarkSpec__Output } from '../../common/generated/vcstor/v1/PostmarkSpec.js';
import type { Progress } from '../../common/generated/vcstor/v1/Progress.js';
import type { RunBenchmarkRequest__Output } from '../../common/generated/vcstor/v1/RunBenchmarkRequest.js';
import type { RunBenchmarkResponse } from '../../common/generated/vcstor/v1/RunBenchmarkResponse.js';
import type { SparseImagePass } from '../../common/generated/vcstor/v1/SparseImagePass.js';
import type { SparseImageSpec__Output } from '../../common/generated/vcstor/v1/SparseImageSpec.js';
import type { Logger } from '../../common/log.js';
import { LoopDevices } from '../../common/loop-devices.js';
import { processStartTicks } from '../../common/processes.js';
import { CommandError, type CommandRunner } from '../../common/runner.js';
import { isWithin } from '../../common/validate.js';
import { fioVerifyFailure } from './fio-json.js';
import { bonnieStderrReason, parseBonnieCsv, parseFioJson, parsePostmarkTerse } from './parsers.js';
import { FIO_MIXED_RW } from './requests.js';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

/** The paper's values (section 4), used where a request leaves a field at 0. */
export const PAPER_DEFAULTS = {
  bonnie: { fileSizeBytes: 1 * GIB, chunkSizeBytes: 8 * 1024 },
  postmark: { transactions: 100_000, files: 1_000, subdirectories: 100, minFileSizeBytes: 500, maxFileSizeBytes: 10_000, readBlockBytes: 8 * 1024, writeBlockBytes: 8 * 1024, readBias: 5, createBias: 5 },
  fio: { blockSizeBytes: 8 * 1024, iodepth: 1, sizeBytes: 256 * MIB, ioengine: 'psync', numjobs: 1, rwmixRead: 50 },
  sparseImage: { imageSizeBytes: 2 * GIB, fileSizeBytes: 1 * GIB, blockSizeBytes: 8 * 1024, passes: 5, fsType: 'ext4' },
} as const;

type Send = (message: RunBenchmarkResponse) => Promise<void>;

/** What the progress ticker reports; `watchFile`: count that file's size, not the private directory's bytes. */
interface ProgressState {
  phase: string;
  bytesTotal: number;
  expectedMs: number;
  watchFile?: string;
}

/** Where fio's shared files live, in the benchmark's directory: kept, unlike `.vcstor-bench-*`. */
export const SHARED_DIR = '.vcstor-shared';

/** A fio job that writes its file (a shared file is then replaced), as opposed to one that only reads it. */
function fioWrites(spec: { rw: string; verifyOnly: boolean }): boolean {
  return !spec.verifyOnly && spec.rw !== 'read' && spec.rw !== 'randread';
}

/** A path as fio's --filename takes it: ':' separates files there, so a literal one is escaped. */
function fioFilename(file: string): string {
  return file.replace(/:/g, '\\:');
}

/**
 * A failed verify as a user reads it: which file, fio's own words on the block that
 * failed, how far it got. Undefined when fio printed no verify failure.
 */
function verifyFailedError(err: CommandError, sharedFile: string | undefined): VcstorError | undefined {
  const failure = fioVerifyFailure(err.stderr);
  if (failure === undefined) return undefined;
  let progress = '';
  try {
    const report = parseFioJson(err.stdout);
    progress = ` (fio error ${report.error}; ${report.read?.ioBytes ?? 0} bytes read before it stopped)`;
  } catch {
    // no report: fio's words alone
  }
  return new VcstorError('INTERNAL', `fio's verify${sharedFile ? ` of ${sharedFile}` : ''} failed, the data read back differs from what was written: ${failure}${progress}`, { cause: err });
}

const NO_IO: FioDirectionResult__Output = { ioBytes: 0, bandwidthBytesPerSecond: 0, iops: 0, meanLatencyNs: 0, completionLatency: [] };

/** A filled-in spec: the request's values with the paper's defaults. */
function orDefault<T extends object>(spec: T, defaults: Partial<Record<keyof T, unknown>>): T {
  const out = { ...spec } as Record<string, unknown>;
  for (const [key, value] of Object.entries(defaults)) if (!out[key]) out[key] = value;
  return out as T;
}

/** Bytes under `dir` (files only), for progress while a tool is silent. */
async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) total += await bytesUnder(full);
    else if (entry.isFile()) total += (await stat(full).catch(() => undefined))?.size ?? 0;
  }
  return total;
}

/**
 * The paper's benchmarks (section 4), for the guest agent and the dom0 agent alike:
 * bonnie++, PostMark and fio run for real in a private directory on a filesystem the
 * agent mounted (or, for dom0's local-disk baseline, under one of its local roots), and
 * the sparse-image test. Progress goes out at least once a second (estimated from file
 * growth or time where a tool prints nothing); then one result. Cancelling kills the
 * tool's whole process group and removes its files.
 */
export class HostBenchmarks {
  private readonly filesystems: Filesystems;
  private readonly loops: LoopDevices;

  constructor(
    private readonly o: {
      runner: CommandRunner;
      log: Logger;
      /** Benchmarks run on filesystems the agent mounted under this root... */
      mountRoot: string;
      /**
       * ...or in directories under these: the host's own local disk (dom0's image roots),
       * which no agent mounts. The guest has none: its root filesystem is not its disk.
       */
      localRoots?: readonly string[];
    },
  ) {
    this.filesystems = new Filesystems(o.runner);
    this.loops = new LoopDevices(o.runner);
  }

  /**
   * Refuse before starting: the directory must be on a filesystem mounted under the
   * agent's mount root, or under one of its local roots, with room for `neededBytes`.
   */
  private async preflight(directory: string, neededBytes: number): Promise<string> {
    const real = await realpath(directory).catch(() => {
      throw new VcstorError('NOT_FOUND', `${directory} does not exist`);
    });
    if (!(await stat(real)).isDirectory()) throw new VcstorError('FAILED_PRECONDITION', `${directory} is not a directory`);
    const mounts = await this.filesystems.mounts();
    const holder = mounts.filter((m) => isWithin(m.mountpoint, real)).sort((a, b) => b.mountpoint.length - a.mountpoint.length)[0];
    const onManagedMount = holder !== undefined && isWithin(this.o.mountRoot, holder.mountpoint) && holder.mountpoint !== '/';
    const localRoots = await this.realLocalRoots();
    if (!onManagedMount && !localRoots.some((root) => isWithin(root, real))) {
      const where = [`a filesystem this agent mounted (under ${this.o.mountRoot})`, ...localRoots.map((r) => `a directory under ${r}`)].join(' or ');
      throw new VcstorError('FAILED_PRECONDITION', `${directory} is not on ${where}; mount one first`);
    }
    const fs = await statfs(real);
    const free = fs.bavail * fs.bsize;
    if (neededBytes > free) {
      throw new VcstorError('FAILED_PRECONDITION', `the benchmark needs about ${neededBytes} bytes and ${holder?.mountpoint ?? real} has ${free} free; use a smaller size`);
    }
    return real;
  }

  async run(request: RunBenchmarkRequest__Output, ctx: { signal: AbortSignal; deadlineMs: number }, send: Send): Promise<void> {
    const started = Date.now();
    const spec = request.spec;
    const needed = this.neededBytes(request);
    const directory = await this.preflight(request.directory, needed);
    const workDir = await mkdtemp(path.join(directory, '.vcstor-bench-'));
    const progress: ProgressState = { phase: `${spec}:start`, bytesTotal: needed, expectedMs: 0 };
    let bytesDone = -1;
    let ticking = true;
    let wake: () => void = () => undefined;
    const stopTicking = () => {
      ticking = false;
      wake();
    };
    // One message a second, never two sends at once: the stream is written in order.
    const ticker = (async () => {
      while (ticking) {
        const elapsedMs = Date.now() - started;
        const grown = bytesDone >= 0 ? bytesDone : progress.watchFile ? ((await stat(progress.watchFile).catch(() => undefined))?.size ?? 0) : await bytesUnder(workDir);
        const byBytes = progress.bytesTotal > 0 ? Math.min(99, (100 * grown) / progress.bytesTotal) : -1;
        const byTime = progress.expectedMs > 0 ? Math.min(99, (100 * elapsedMs) / progress.expectedMs) : -1;
        const message: Progress = { phase: progress.phase, percent: Math.max(byBytes, byTime), bytesDone: grown, bytesTotal: progress.bytesTotal, elapsedMs };
        if (ticking) await send({ progress: message }).catch(() => undefined);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 1000);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    })();
    const timeoutMs = Math.max(1000, ctx.deadlineMs - Date.now());
    try {
      let result: BenchmarkResult;
      switch (spec) {
        case 'bonnie':
          result = { bonnie: await this.bonnie(request.bonnie!, workDir, ctx.signal, timeoutMs, progress) };
          break;
        case 'postmark':
          result = { postmark: await this.postmark(request.postmark!, workDir, ctx.signal, timeoutMs, progress) };
          break;
        case 'fio':
          result = { fio: await this.fio(request.fio!, directory, workDir, ctx.signal, timeoutMs, progress) };
          break;
        case 'sparseImage':
          result = { sparseImage: await this.sparseImage(request.sparseImage!, workDir, ctx.signal, progress, (b) => (bytesDone = b), send) };
          break;
        default:
          throw new VcstorError('INVALID_ARGUMENT', 'spec: name a benchmark');
      }
      stopTicking();
      await ticker;
      await send({ result: { ...result, startedUnixMs: started, elapsedMs: Date.now() - started, label: request.label } });
    } finally {
      stopTicking();
      await ticker;
      await this.cleanup(workDir);
    }
  }

  private neededBytes(request: RunBenchmarkRequest__Output): number {
    switch (request.spec) {
      case 'bonnie':
        return request.bonnie!.fileSizeBytes || PAPER_DEFAULTS.bonnie.fileSizeBytes;
      case 'postmark': {
        const p = orDefault(request.postmark!, PAPER_DEFAULTS.postmark);
        return p.files * p.maxFileSizeBytes * 2;
      }
      case 'fio': {
        const f = orDefault(request.fio!, PAPER_DEFAULTS.fio);
        // A job that only reads a shared file adds nothing to the filesystem.
        if (f.sharedFile && !fioWrites(f)) return 0;
        return f.sizeBytes * f.numjobs;
      }
      case 'sparseImage': {
        const s = orDefault(request.sparseImage!, PAPER_DEFAULTS.sparseImage);
        // In place: one file at a time, deleted after each pass.
        if (s.inPlace) return Math.ceil(s.fileSizeBytes * 1.05) + 8 * MIB;
        // Deleted blocks are not given back to the image: it can grow to its full size.
        // Plus the image's filesystem metadata: a tenth, and 8 MiB at least.
        return Math.ceil(Math.min(s.imageSizeBytes, s.fileSizeBytes * s.passes) * 1.1) + 8 * MIB;
      }
      default:
        return 0;
    }
  }

  private async bonnie(spec: BonnieSpec__Output, workDir: string, signal: AbortSignal, timeoutMs: number, progress: { phase: string; bytesTotal: number }) {
    const s = orDefault(spec, PAPER_DEFAULTS.bonnie);
    const sizeMib = Math.max(1, Math.round(s.fileSizeBytes / MIB));
    // bonnie++ refuses a file smaller than twice the RAM it assumes: tell it half.
    const ramMib = s.ramBytes ? Math.round(s.ramBytes / MIB) : Math.max(1, Math.floor(sizeMib / 2));
    progress.phase = 'bonnie';
    progress.bytesTotal = sizeMib * MIB;
    const args = ['-d', workDir, '-s', `${sizeMib}:${s.chunkSizeBytes}`, '-r', String(ramMib), '-n', String(s.fileCountK), '-u', 'root', '-q', '-m', 'vcstor'];
    // Per-char tests write single bytes, which an O_DIRECT file refuses (bonnie++ then
    // says "disk full?"): direct I/O skips them.
    if (s.skipPerChar || s.directIo) args.push('-f');
    if (s.directIo) args.push('-D');
    try {
      // stderr too: with -q bonnie++ writes its text report there, the only place that
      // names the chunk size (its CSV leaves that column empty).
      const { stdout, stderr } = await this.o.runner.run('bonnie++', args, { signal, timeoutMs });
      return parseBonnieCsv(stdout, stderr);
    } catch (err) {
      const reason = err instanceof CommandError ? bonnieStderrReason(err.stderr) : undefined;
      if (reason) throw new VcstorError('FAILED_PRECONDITION', `bonnie++ refused to run: ${reason}`, { cause: err });
      throw err;
    }
  }

  private async postmark(spec: PostmarkSpec__Output, workDir: string, signal: AbortSignal, timeoutMs: number, progress: { phase: string; bytesTotal: number }) {
    const p = orDefault(spec, PAPER_DEFAULTS.postmark);
    const location = path.join(workDir, 'data');
    await mkdir(location);
    progress.phase = 'postmark';
    progress.bytesTotal = p.files * ((p.minFileSizeBytes + p.maxFileSizeBytes) / 2);
    const config = path.join(workDir, 'postmark.cfg');
    await writeFile(
      config,
      [
        // Relative to the work directory (postmark's cwd): postmark truncates a long
        // location path silently and then fails every file operation.
        `set location ${path.basename(location)}`,
        `set number ${p.files}`,
        `set subdirectories ${p.subdirectories}`,
        `set transactions ${p.transactions}`,
        `set size ${p.minFileSizeBytes} ${p.maxFileSizeBytes}`,
        `set read ${p.readBlockBytes}`,
        `set write ${p.writeBlockBytes}`,
        `set buffering ${p.buffering ? 'true' : 'false'}`,
        `set bias read ${p.readBias}`,
        `set bias create ${p.createBias}`,
        ...(p.seed ? [`set seed ${p.seed}`] : []),
        'set report terse',
        'run',
        'quit',
        '',
      ].join('\n'),
    );
    // postmark exits 0 even when every operation failed: its stderr decides.
    const started = performance.now();
    const { stdout, stderr } = await this.o.runner.run('postmark', [config], { signal, timeoutMs, cwd: workDir });
    const wallMs = performance.now() - started;
    const result = parsePostmarkTerse(stdout, stderr);
    return { ...result, wallMs: Math.round(wallMs), transactionsPerWallSecond: (p.transactions * 1000) / wallMs };
  }

  private async fio(spec: FioSpec__Output, directory: string, workDir: string, signal: AbortSignal, timeoutMs: number, progress: ProgressState) {
    const f = orDefault(spec, PAPER_DEFAULTS.fio);
    const writes = fioWrites(f);
    progress.phase = f.verifyOnly ? 'fio:verify' : `fio:${f.rw}`;
    progress.bytesTotal = writes && /write|rw/.test(f.rw) ? f.sizeBytes * f.numjobs : 0;
    progress.expectedMs = f.runtimeS * 1000;
    const sharedFile = f.sharedFile ? await this.prepareSharedFile(directory, f.sharedFile, writes, f.sizeBytes) : undefined;
    if (sharedFile && writes) progress.watchFile = sharedFile;
    const args = [
      '--name=vcstor',
      // A shared file is named; otherwise fio makes its own files in the private directory.
      sharedFile ? `--filename=${fioFilename(sharedFile)}` : `--directory=${workDir}`,
      `--rw=${f.rw}`,
      `--bs=${f.blockSizeBytes}`,
      `--iodepth=${f.iodepth}`,
      `--size=${f.sizeBytes}`,
      `--ioengine=${f.ioengine}`,
      `--numjobs=${f.numjobs}`,
      `--rwmixread=${f.rwmixRead}`,
      '--output-format=json',
      ...(f.direct ? ['--direct=1'] : []),
      ...(f.runtimeS ? [`--runtime=${f.runtimeS}`, '--time_based'] : []),
      // A shared file's writer leaves the check to a later verify_only job (FioSpec.shared_file).
      ...(f.verify ? ['--verify=crc32c', `--do_verify=${sharedFile && writes ? 0 : 1}`, '--verify_fatal=1'] : []),
      // A shared file's run saves no verify state at all (fio's cwd would take it anyway).
      ...(sharedFile ? ['--verify_state_save=0'] : []),
      ...(f.verifyOnly ? ['--verify_only'] : []),
      ...(f.endFsync ? ['--end_fsync=1'] : []),
    ];
    // In the private directory: fio writes its verify state files (*-verify.state) to
    // its working directory, and they go with the directory.
    let stdout: string;
    try {
      ({ stdout } = await this.o.runner.run('fio', args, { signal, timeoutMs, cwd: workDir }));
    } catch (err) {
      throw (f.verify && err instanceof CommandError && verifyFailedError(err, sharedFile)) || err;
    }
    const result = parseFioJson(stdout);
    if (result.error !== 0) throw new VcstorError('INTERNAL', `fio reported error ${result.error}${f.verify ? ' (verify failed: data read back differs)' : ''}`);
    // A verify-only job writes nothing, but fio's report counts the writes it skipped
    // (write.io_bytes the whole size, bandwidth 0): the result says no writes.
    if (f.verifyOnly) result.write = { ...NO_IO };
    // fio reports success when its verify phase never ran: a verify that read nothing failed.
    const written = result.write?.ioBytes ?? 0;
    if (f.verify && !(sharedFile && writes) && written > 0 && (result.read?.ioBytes ?? 0) < written) {
      throw new VcstorError('INTERNAL', `fio verified ${result.read?.ioBytes ?? 0} of the ${written} bytes it wrote: the verify did not read everything back`);
    }
    // A mixed job's reads are its own and the verify's together: no count of the verified bytes.
    result.verifiedBytes = f.verify && !FIO_MIXED_RW.includes(f.rw) && !(sharedFile && writes) ? (result.read?.ioBytes ?? 0) : 0;
    if (sharedFile) {
      const size = (await stat(sharedFile).catch(() => undefined))?.size;
      if (size === undefined) throw new VcstorError('NOT_FOUND', `${sharedFile} is gone: it was removed while fio ran`);
      result.sharedFilePath = sharedFile;
      result.sharedFileSizeBytes = size;
      // A reader's verify must cover the whole file: fio checks size_bytes of it only.
      if (f.verify && !writes && result.verifiedBytes < size) {
        throw new VcstorError(
          'INTERNAL',
          `fio verified ${result.verifiedBytes} of the ${size} bytes of ${sharedFile}: the rest was not checked (size_bytes ${f.sizeBytes}; use the size its writer's job had)`,
        );
      }
    }
    return result;
  }

  /**
   * The path of a shared file, `<directory>/.vcstor-shared/<name>`, ready for fio. For a
   * job that writes: the directory made if missing (0755), an old file removed, so each
   * writer starts from a new file of its own size. For a job that only reads: the file
   * must be there and hold `sizeBytes` at least (NOT_FOUND otherwise), since fio would
   * "lay out" (write) a missing or shorter file itself, destroying what is there, and then
   * read its own data. Anything but a directory and a regular file there (a symlink) is
   * refused: the directory is shared with other hosts.
   */
  private async prepareSharedFile(directory: string, name: string, writes: boolean, sizeBytes: number): Promise<string> {
    const dir = path.join(directory, SHARED_DIR);
    const file = path.join(dir, name);
    if (writes) {
      const made = await mkdir(dir, { mode: 0o755 }).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code === 'EEXIST') return false;
          throw new VcstorError('FAILED_PRECONDITION', `cannot make ${dir} for the shared file: ${err.message}`, { cause: err });
        },
      );
      // mkdir's mode is masked by the umask.
      if (made) await chmod(dir, 0o755);
    }
    const dirStat = await lstat(dir).catch(() => undefined);
    if (dirStat === undefined) throw new VcstorError('NOT_FOUND', `${file} does not exist (no ${SHARED_DIR} in ${directory}): write it first with a fio job with this shared_file`);
    if (!dirStat.isDirectory()) throw new VcstorError('FAILED_PRECONDITION', `${dir} is not a directory (a symlink or a file): remove it`);
    const fileStat = await lstat(file).catch(() => undefined);
    if (fileStat !== undefined && !fileStat.isFile()) throw new VcstorError('FAILED_PRECONDITION', `${file} is not a regular file (a symlink, a directory or a device): remove it`);
    if (writes) {
      if (fileStat !== undefined) await rm(file);
      return file;
    }
    if (fileStat === undefined) throw new VcstorError('NOT_FOUND', `${file} does not exist: write it first with a fio job with this shared_file`);
    if (fileStat.size < sizeBytes) {
      throw new VcstorError(
        'NOT_FOUND',
        `${file} holds ${fileStat.size} bytes, fewer than size_bytes ${sizeBytes}: not the whole file a job of this size writes (fio would write over it to make up the size); use the writer's size_bytes`,
      );
    }
    return file;
  }

  private async sparseImage(
    spec: SparseImageSpec__Output,
    workDir: string,
    signal: AbortSignal,
    progress: { phase: string; bytesTotal: number },
    setBytes: (bytes: number) => void,
    send: Send,
  ) {
    const s = orDefault(spec, PAPER_DEFAULTS.sparseImage);
    const image = path.join(workDir, 'sparse.img');
    // In place, the passes go to the benchmark's own directory on the guest's disk.
    const mountpoint = s.inPlace ? workDir : path.join(workDir, 'mnt');
    progress.bytesTotal = s.fileSizeBytes * s.passes;
    progress.phase = 'sparse:prepare';
    if (!s.inPlace) {
      let device = s.device;
      if (!device) {
        const handle = await open(image, 'w');
        await handle.truncate(s.imageSizeBytes);
        await handle.close();
        device = await this.loops.attach(image, signal);
      }
      await this.filesystems.ensure(device, s.fsType, { force: true, signal });
      await this.filesystems.mount(device, mountpoint, { fsType: s.fsType, signal });
    }
    const block = randomBytes(s.blockSizeBytes);
    const passes: SparseImagePass[] = [];
    for (let pass = 1; pass <= s.passes; pass++) {
      progress.phase = `sparse:pass ${pass}/${s.passes}`;
      const file = path.join(mountpoint, 'data');
      const started = performance.now();
      const handle = await open(file, 'w');
      try {
        for (let written = 0; written < s.fileSizeBytes; ) {
          if (signal.aborted) throw new VcstorError('CANCELLED', 'the benchmark was cancelled');
          const length = Math.min(block.length, s.fileSizeBytes - written);
          written += (await handle.write(block, 0, length)).bytesWritten;
          setBytes((pass - 1) * s.fileSizeBytes + written);
        }
        await handle.sync();
      } finally {
        await handle.close();
      }
      const elapsedMs = performance.now() - started;
      await rm(file);
      await this.o.runner.run('sync', ['-f', mountpoint], { signal });
      const allocated = s.device || s.inPlace ? 0 : (await stat(image)).blocks * 512;
      passes.push({ pass, writeBytesPerSecond: s.fileSizeBytes / (elapsedMs / 1000), elapsedMs: Math.round(elapsedMs), imageAllocatedBytes: allocated });
      await send({ progress: { phase: progress.phase, percent: (100 * pass) / s.passes, bytesDone: pass * s.fileSizeBytes, bytesTotal: progress.bytesTotal, elapsedMs: Math.round(elapsedMs), message: s.inPlace ? `pass ${pass}` : `pass ${pass}: image holds ${allocated} bytes` } });
    }
    return { imageSizeBytes: s.imageSizeBytes, passes };
  }

  /**
   * Stop benchmarks a previous agent process left running, and remove their files.
   * Called at start. A benchmark runs in its own process group, so that cancelling it
   * kills all of it; that also lets it outlive an agent killed with SIGKILL, and left
   * alone it keeps the guest's filesystem busy, so teardown's and cleanup's unmount fail
   * (the fault suite hit this). A benchmark's files are in a `.vcstor-bench-*` directory
   * on a filesystem under mountRoot (or in or just under a local root), and its processes run there or name it in their
   * arguments; only this agent makes such directories. Never throws.
   * @returns the directories it cleaned up.
   */
  async reapOrphans(): Promise<string[]> {
    try {
      const workDirs: string[] = [];
      const holders = (await this.filesystems.mounts()).filter((m) => isWithin(this.o.mountRoot, m.mountpoint)).map((m) => m.mountpoint);
      // A local root's benchmarks run in it or in a directory of it.
      for (const root of await this.realLocalRoots()) {
        holders.push(root);
        for (const entry of await readdir(root, { withFileTypes: true }).catch(() => [])) if (entry.isDirectory() && !entry.name.startsWith('.vcstor-bench-')) holders.push(path.join(root, entry.name));
      }
      for (const holder of holders) {
        for (const entry of await readdir(holder).catch(() => [] as string[])) if (entry.startsWith('.vcstor-bench-')) workDirs.push(path.join(holder, entry));
      }
      if (workDirs.length === 0) return [];
      const killed: Array<{ pid: number; ticks: number }> = [];
      for (const entry of await readdir('/proc')) {
        const pid = Number(entry);
        if (!/^\d+$/.test(entry) || pid === process.pid) continue;
        const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => '');
        const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
        const uses = workDirs.some((w) => (cwd !== '' && isWithin(w, cwd)) || args.some((a) => a.includes(w)));
        const ticks = uses ? await processStartTicks(pid) : undefined;
        if (ticks === undefined) continue;
        try {
          process.kill(pid, 'SIGKILL');
          killed.push({ pid, ticks });
        } catch {
          // gone already
        }
      }
      // A process in uninterruptible I/O dies when its I/O completes: give it a moment.
      for (const k of killed) for (let i = 0; i < 100 && (await processStartTicks(k.pid)) === k.ticks; i++) await new Promise((r) => setTimeout(r, 100));
      for (const w of workDirs) await this.cleanup(w);
      this.o.log.warn({ workDirs, killed: killed.map((k) => k.pid) }, 'stopped benchmarks a previous agent left running, and removed their files');
      return workDirs;
    } catch (err) {
      this.o.log.error({ err }, 'could not check for benchmarks a previous agent left running');
      return [];
    }
  }

  /** The local roots as real paths (symlinks resolved); those that do not exist are left out. */
  private async realLocalRoots(): Promise<string[]> {
    const roots = await Promise.all((this.o.localRoots ?? []).map((r) => realpath(r).catch(() => undefined)));
    return roots.filter((r): r is string => r !== undefined);
  }

  /** Remove a run's files: unmount and detach what the sparse test made, then the directory. */
  private async cleanup(workDir: string): Promise<void> {
    const never = new AbortController().signal;
    try {
      await this.filesystems.unmount(path.join(workDir, 'mnt'), never);
      await this.loops.detachFile(path.join(workDir, 'sparse.img'), never);
    } catch (err) {
      this.o.log.error({ err, workDir }, 'benchmark cleanup: could not release the sparse image');
    }
    await rm(workDir, { recursive: true, force: true });
  }
}
