import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../common/errors.js';
import type { LoadResourceUsage } from '../common/generated/vcstor/v1/LoadResourceUsage.js';
import type { LoadSessionLogin } from '../common/generated/vcstor/v1/LoadSessionLogin.js';
import type { RunLoadResponse } from '../common/generated/vcstor/v1/RunLoadResponse.js';
import type { RunLoadResult } from '../common/generated/vcstor/v1/RunLoadResult.js';
import type { StartLoadSessionsRequest__Output } from '../common/generated/vcstor/v1/StartLoadSessionsRequest.js';
import type { StartLoadSessionsResponse } from '../common/generated/vcstor/v1/StartLoadSessionsResponse.js';
import type { StopLoadSessionsResponse } from '../common/generated/vcstor/v1/StopLoadSessionsResponse.js';
import { OperationLocks } from '../common/locks.js';
import type { Logger } from '../common/log.js';
import { isRunning, startDetached, stopProcess, type DetachedProcess } from '../common/processes.js';
import type { CommandRunner } from '../common/runner.js';
import { validateHostPort } from '../common/validate.js';
import { histogramBins, histogramPercentile, loadFioArgs, mergeHistogram, parseFioJsonPlus, type Histogram, type LoadFio } from './load-fio.js';
import { DEFAULT_SESSIONS_PER_DAEMON } from './load-requests.js';
import { QmpClient, QmpError } from './qmp.js';

/**
 * Load sessions: many real iSCSI logins from one host, light enough for a thousand.
 *
 * What a full session costs here (qsd-initiator.ts: a daemon, a FUSE file and a loop
 * device each) stops at a few hundred: /dev/loop* and FUSE mounts are machine-wide and
 * every daemon is ~10 MB. A load session instead is one libiscsi block node inside a
 * shared qemu-storage-daemon (its own initiator IQN and TCP connection: a real login the
 * target lists), exported over NBD on the daemon's unix socket, and driven by fio's nbd
 * engine. Measured here: 1,024 sessions in one daemon took 47 MB and 1,038 fds.
 *
 * Sessions are spread over several daemons (`sessions_per_daemon`): a daemon opens its
 * block nodes one after another (qemu's libiscsi connect is synchronous), so daemons side
 * by side make the login storm concurrent, and one fio per daemon keeps fio's start-up
 * short (one fio with 1,024 jobs spent ~36 s setting up; 64 jobs 0.4 s).
 *
 * Each set lives in STATE/load/<set>/ with a record written as soon as its daemons start,
 * so Stop (or an agent restarted meanwhile) finds and ends every process it started.
 */

interface DaemonRecord {
  index: number;
  process: DetachedProcess;
  qmpSocket: string;
  nbdSocket: string;
  /** Indexes into the set's sessions. */
  sessions: number[];
}

interface SetRecord {
  setId: string;
  specHash: string;
  createdUnixMs: number;
  daemons: DaemonRecord[];
  sessions: LoadSessionLogin[];
  stormMs: number;
  /** False until every login has an answer. */
  complete: boolean;
}

/** The node name (and NBD export name, and fio job name) of session `i`. */
export function loadNodeName(i: number): string {
  return `s${i}`;
}

/** The portal as qemu's iscsi driver takes it ("host:port", "[v6]:port"). */
function qemuPortal(portal: string): string {
  const { host, port } = validateHostPort('portal', portal, 3260);
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export type LoadSend = (message: RunLoadResponse) => Promise<void>;

export class LoadSessions {
  private readonly locks = new OperationLocks();
  private readonly root: string;

  constructor(private readonly o: { runner: CommandRunner; log: Logger; stateDir: string }) {
    this.root = path.join(o.stateDir, 'load');
  }

  private dir(setId: string): string {
    return path.join(this.root, setId);
  }

  private async read(setId: string): Promise<SetRecord | undefined> {
    try {
      return JSON.parse(await readFile(path.join(this.dir(setId), 'set.json'), 'utf8')) as SetRecord;
    } catch {
      return undefined;
    }
  }

  private save(record: SetRecord): Promise<void> {
    return writeFile(path.join(this.dir(record.setId), 'set.json'), `${JSON.stringify(record)}\n`, { mode: 0o600 });
  }

  /** What identifies a set's spec; the CHAP secret counts only as a digest. */
  private specHash(request: StartLoadSessionsRequest__Output): string {
    const spec = {
      sessions: request.sessions.map((s) => [s.target?.portal, s.target?.iqn, s.target?.lun || 1, s.initiatorIqn]),
      chap: request.chap && request.chap.username !== '' ? [request.chap.username, createHash('sha256').update(request.chap.password).digest('hex')] : null,
      perDaemon: request.sessionsPerDaemon || DEFAULT_SESSIONS_PER_DAEMON,
    };
    return createHash('sha256').update(JSON.stringify(spec)).digest('hex');
  }

  private response(record: SetRecord, alreadyStarted: boolean, usage: LoadResourceUsage): StartLoadSessionsResponse {
    const loggedIn = record.sessions.filter((s) => s.loggedIn).length;
    return { sessions: record.sessions, alreadyStarted, loggedIn, failed: record.sessions.length - loggedIn, stormMs: record.stormMs, usage };
  }

  /**
   * Log every session of the set in at once. Idempotent: a running set with the same
   * spec is returned (already_started); a broken one (a daemon died) is stopped and
   * started again. A failed login is reported per session, not thrown: counting failed
   * logins is what a storm is for. A cancelled or failed start leaves nothing running.
   * @throws VcstorError ALREADY_EXISTS (another spec under this id), ABORTED (another
   *   call on this set), UNAVAILABLE (qemu-storage-daemon missing or dying), CANCELLED.
   */
  async start(request: StartLoadSessionsRequest__Output, signal: AbortSignal): Promise<StartLoadSessionsResponse> {
    return this.locks.with(`load:${request.setId}`, `load set ${request.setId}`, async () => {
      const specHash = this.specHash(request);
      const existing = await this.read(request.setId);
      if (existing) {
        if (existing.specHash !== specHash) throw new VcstorError('ALREADY_EXISTS', `load set ${request.setId} is running with other sessions; stop it first (StopLoadSessions)`);
        const alive = await Promise.all(existing.daemons.map((d) => isRunning(d.process)));
        if (existing.complete && alive.every(Boolean)) return this.response(existing, true, await this.usage(existing));
        await this.stopSet(existing);
      }
      return this.startSet(request, specHash, signal);
    });
  }

  private async startSet(request: StartLoadSessionsRequest__Output, specHash: string, signal: AbortSignal): Promise<StartLoadSessionsResponse> {
    const dir = this.dir(request.setId);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const perDaemon = request.sessionsPerDaemon || DEFAULT_SESSIONS_PER_DAEMON;
    const loginTimeoutMs = request.loginTimeoutMs || 30_000;
    const chap = request.chap && request.chap.username !== '' ? request.chap : undefined;
    const secretFile = path.join(dir, 'secret');
    if (chap) await writeFile(secretFile, chap.password, { mode: 0o600 });
    const record: SetRecord = {
      setId: request.setId,
      specHash,
      createdUnixMs: Date.now(),
      daemons: [],
      sessions: request.sessions.map((s) => ({ initiatorIqn: s.initiatorIqn, target: { portal: s.target!.portal, iqn: s.target!.iqn, lun: s.target!.lun || 1 }, loggedIn: false, loginMs: 0, exportMs: 0, error: '' })),
      stormMs: 0,
      complete: false,
    };
    const clients: QmpClient[] = [];
    try {
      const groups: number[][] = [];
      for (let i = 0; i < request.sessions.length; i += perDaemon) groups.push(Array.from({ length: Math.min(perDaemon, request.sessions.length - i) }, (_, k) => i + k));
      // Start every daemon, recording each before anything else can fail.
      for (const [index, sessions] of groups.entries()) {
        const qmpSocket = path.join(dir, `q${index}.sock`);
        const nbdSocket = path.join(dir, `n${index}.sock`);
        if (Buffer.byteLength(qmpSocket) > 100) throw new VcstorError('FAILED_PRECONDITION', `the agent's state directory is too deep for unix sockets (${qmpSocket}); use a shorter stateDir`);
        const args = [
          ...(chap ? ['--object', `secret,id=sec0,file=${secretFile}`] : []),
          '--chardev', `socket,id=qmp0,path=${qmpSocket},server=on,wait=off`,
          '--monitor', 'chardev=qmp0,mode=control',
          '--nbd-server', `addr.type=unix,addr.path=${nbdSocket}`,
        ];
        const process = await startDetached('qemu-storage-daemon', request.setId, ['qemu-storage-daemon', ...args], path.join(dir, `qsd${index}.log`));
        record.daemons.push({ index, process, qmpSocket, nbdSocket, sessions });
      }
      await this.save(record);
      for (const d of record.daemons) {
        clients.push(
          await QmpClient.connect(d.qmpSocket, 10_000, signal).catch(async (err: unknown) => {
            const log = await readFile(d.process.log, 'utf8').catch(() => '');
            throw new VcstorError('UNAVAILABLE', `qemu-storage-daemon ${d.index} of load set ${request.setId} did not start: ${log.trim().split('\n').pop() ?? (err as Error).message}`);
          }),
        );
      }
      // The storm: every daemon logs its sessions in, all daemons at once.
      const stormStart = performance.now();
      await Promise.all(
        record.daemons.map(async (d, k) => {
          const qmp = clients[k]!;
          for (const i of d.sessions) {
            if (signal.aborted) throw new VcstorError('CANCELLED', 'the login storm was cancelled');
            const spec = request.sessions[i]!;
            const s = record.sessions[i]!;
            const node = loadNodeName(i);
            try {
              await qmp.command(
                'blockdev-add',
                {
                  driver: 'iscsi',
                  'node-name': node,
                  transport: 'tcp',
                  portal: qemuPortal(spec.target!.portal),
                  target: spec.target!.iqn,
                  lun: spec.target!.lun || 1,
                  'initiator-name': spec.initiatorIqn,
                  timeout: Math.max(1, Math.ceil(loginTimeoutMs / 1000)),
                  ...(chap ? { user: chap.username, 'password-secret': 'sec0' } : {}),
                },
                loginTimeoutMs + 5000,
                signal,
              );
              s.loginMs = performance.now() - stormStart;
              const loggedInAt = performance.now();
              await qmp.command('block-export-add', { type: 'nbd', id: `e${i}`, 'node-name': node, name: node, writable: true }, 30_000, signal);
              s.exportMs = performance.now() - loggedInAt;
              s.loggedIn = true;
            } catch (err) {
              if (!(err instanceof QmpError)) throw err;
              s.loginMs = performance.now() - stormStart;
              s.error = err.desc.replace(/^.*?iSCSI: /, 'iSCSI: ');
            }
          }
        }),
      );
      record.stormMs = performance.now() - stormStart;
      record.complete = true;
      await rm(secretFile, { force: true });
      await this.save(record);
      const failed = record.sessions.filter((s) => !s.loggedIn);
      if (failed.length > 0) this.o.log.warn({ setId: request.setId, failed: failed.length, first: failed[0]?.error }, 'load sessions failed to log in');
      return this.response(record, false, await this.usage(record));
    } catch (err) {
      await this.stopSet(record);
      throw err;
    } finally {
      for (const c of clients) c.close();
    }
  }

  /** Memory, fds and threads of the set's daemons, from /proc. */
  async usage(record: Pick<SetRecord, 'daemons'>): Promise<LoadResourceUsage> {
    let rssBytes = 0;
    let openFds = 0;
    let threads = 0;
    for (const d of record.daemons) {
      const status = await readFile(`/proc/${d.process.pid}/status`, 'utf8').catch(() => '');
      rssBytes += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
      threads += Number(/Threads:\s+(\d+)/.exec(status)?.[1] ?? 0);
      openFds += (await readdir(`/proc/${d.process.pid}/fd`).catch(() => [])).length;
    }
    return { daemons: record.daemons.length, rssBytes, openFds, threads };
  }

  /**
   * Run `spec` on every logged-in session of the set: one fio per daemon, all at once;
   * progress every second, then per-session results and the merged latency histogram.
   * Cancelling kills every fio (the runner signals their process groups).
   * @throws VcstorError NOT_FOUND (no such set), FAILED_PRECONDITION (no session logged
   *   in), ABORTED (another call on this set), INTERNAL (fio failed without a result).
   */
  async run(setId: string, spec: LoadFio, ctx: { signal: AbortSignal; deadlineMs: number }, send: LoadSend): Promise<void> {
    await this.locks.with(`load:${setId}`, `load set ${setId}`, async () => {
      const record = await this.read(setId);
      if (!record || !record.complete) throw new VcstorError('NOT_FOUND', `no load set ${setId} on this host; StartLoadSessions first`);
      const started = Date.now();
      const expectedMs = spec.runtimeS * 1000;
      const work = record.daemons
        .map((d) => ({ d, jobs: d.sessions.filter((i) => record.sessions[i]!.loggedIn).map((i) => ({ name: loadNodeName(i), socket: d.nbdSocket })) }))
        .filter((w) => w.jobs.length > 0);
      if (work.length === 0) throw new VcstorError('FAILED_PRECONDITION', `no session of load set ${setId} is logged in`);
      let ticking = true;
      const ticker = (async () => {
        while (ticking) {
          const elapsedMs = Date.now() - started;
          await send({ progress: { phase: 'fio', percent: Math.min(99, (100 * elapsedMs) / expectedMs), elapsedMs, message: `${work.reduce((n, w) => n + w.jobs.length, 0)} sessions` } }).catch(() => undefined);
          await new Promise((r) => setTimeout(r, 1000));
        }
      })();
      // fio's set-up grows with its job count (fio with 64 jobs starts in ~0.4 s): allow
      // for it on top of the runtime, within the call's deadline.
      const timeoutMs = Math.max(10_000, Math.min(ctx.deadlineMs - Date.now(), expectedMs + 60_000 + 100 * work.reduce((n, w) => n + w.jobs.length, 0)));
      const usageDuring = new Promise<LoadResourceUsage>((resolve) => setTimeout(() => void this.usage(record).then(resolve), Math.min(expectedMs / 2, 5000)));
      try {
        const outputs = await Promise.all(
          work.map(async ({ d, jobs }) => {
            const out = path.join(this.dir(setId), `fio${d.index}.json`);
            await rm(out, { force: true });
            const result = await this.o.runner.run('fio', loadFioArgs(spec, jobs, out), { signal: ctx.signal, timeoutMs, okExitCodes: [0, 1] });
            const text = await readFile(out, 'utf8').catch(() => '');
            if (!text.includes('{')) throw new VcstorError('INTERNAL', `fio for daemon ${d.index} of load set ${setId} gave no result: ${result.stderr.trim().split('\n').pop() ?? ''}`);
            return parseFioJsonPlus(text);
          }),
        );
        const total: Histogram = new Map();
        const sessions: RunLoadResult['sessions'] = [];
        let bytesPerSecond = 0;
        let iops = 0;
        let failed = 0;
        const byNode = new Map(record.sessions.map((s, i) => [loadNodeName(i), s.initiatorIqn]));
        for (const job of outputs.flat()) {
          mergeHistogram(total, job.histogram);
          bytesPerSecond += job.readBytesPerSecond + job.writeBytesPerSecond;
          iops += job.readIops + job.writeIops;
          if (job.error !== 0) failed++;
          sessions.push({
            initiatorIqn: byNode.get(job.name) ?? job.name,
            readBytesPerSecond: job.readBytesPerSecond,
            writeBytesPerSecond: job.writeBytesPerSecond,
            readIops: job.readIops,
            writeIops: job.writeIops,
            p50Ns: histogramPercentile(job.histogram, 50),
            p95Ns: histogramPercentile(job.histogram, 95),
            p99Ns: histogramPercentile(job.histogram, 99),
            error: job.error,
          });
        }
        const usage = await usageDuring;
        ticking = false;
        await ticker;
        await send({
          result: {
            sessions,
            latencyHistogram: histogramBins(total),
            bytesPerSecond,
            iops,
            p50Ns: histogramPercentile(total, 50),
            p95Ns: histogramPercentile(total, 95),
            p99Ns: histogramPercentile(total, 99),
            elapsedMs: Date.now() - started,
            failed,
            usage,
          },
        });
      } finally {
        ticking = false;
        await ticker;
      }
    });
  }

  /**
   * Log every session of the set out (each daemon closes its block nodes, libiscsi logs
   * out) and remove its processes and files. Idempotent: a missing set is was_started=false.
   * @throws VcstorError ABORTED when another call on this set is running.
   */
  async stop(setId: string): Promise<StopLoadSessionsResponse> {
    return this.locks.with(`load:${setId}`, `load set ${setId}`, async () => {
      const record = await this.read(setId);
      if (!record) {
        await rm(this.dir(setId), { recursive: true, force: true });
        return { wasStarted: false, loggedOut: 0, logoutMs: 0 };
      }
      const started = performance.now();
      await this.stopSet(record);
      return { wasStarted: true, loggedOut: record.sessions.filter((s) => s.loggedIn).length, logoutMs: performance.now() - started };
    });
  }

  private async stopSet(record: SetRecord): Promise<void> {
    // SIGTERM: qemu closes every block node on the way out, and its iscsi driver sends a
    // logout for each; SIGKILL after 15 s only if it hangs (the target then drops the
    // sessions when their connections close).
    await Promise.all(record.daemons.map((d) => stopProcess(d.process, 15_000)));
    await rm(this.dir(record.setId), { recursive: true, force: true });
  }

  /** The sets on this host (for listings and cleanup). */
  async list(): Promise<string[]> {
    return (await readdir(this.root).catch(() => [] as string[])).sort();
  }
}
