import type { IoAccounting } from './accounting.js';

/**
 * What the coordinator records of a run, as plain JSON: kept in the run's directory,
 * published on NATS, returned over gRPC (the proto's Run, RunEvent and Measurement carry
 * the same fields), and read by the report.
 */

export type RunState = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export type StepState = 'started' | 'progress' | 'succeeded' | 'failed' | 'skipped' | 'cancelled';
export type PlanKind = 'provision' | 'teardown' | 'campaign' | 'scale' | 'shared';

export interface RunRecord {
  runId: string;
  planName: string;
  kind: PlanKind;
  state: RunState;
  createdUnixMs: number;
  finishedUnixMs: number;
  stepsTotal: number;
  stepsSucceeded: number;
  stepsFailed: number;
  error: string;
}

export interface ProgressInfo {
  phase: string;
  percent: number;
  bytesDone: number;
  bytesTotal: number;
  elapsedMs: number;
  message: string;
}

/** One benchmark result of a campaign. `result` is the guest's BenchmarkResult, as JSON. */
export interface MeasurementRecord {
  runId: string;
  method: string;
  /** "bonnie", "postmark", "fio", "sparse-image". */
  benchmark: string;
  repetition: number;
  guest: string;
  result?: Record<string, unknown>;
  error: string;
  /** Where the benchmark's bytes went, layer by layer (coordinator/accounting.ts). */
  accounting?: IoAccounting;
}

/** One event of a run, in order (seq 1, 2, 3, ...). */
export interface RunEventRecord {
  runId: string;
  seq: number;
  timeUnixMs: number;
  /** e.g. "file-nfs/rep1/setup/create volume", "file-nfs/rep1/bonnie". */
  stepId: string;
  state: StepState;
  progress?: ProgressInfo;
  measurement?: MeasurementRecord;
  message: string;
  /** Set on the last event of a run. */
  runState?: RunState;
}

/**
 * What a campaign ran on (the paper's Table 1): each host as its agent describes itself
 * at the start of the run, with the memory it has (its memory cgroup's limit, or the
 * machine's), and the campaign's parameters. Kept as setup.json beside the results.
 */
export interface RunSetup {
  hosts: Array<{
    role: 'storage' | 'dom0' | 'guest';
    name: string;
    hostname: string;
    version: string;
    /** "memory cgroup /vcstor.vcs/guest0" or "machine", and its limit (0: unknown). */
    memoryScope: string;
    memoryBytes: number;
    /** The selected driver of each concern: "iscsi-target=tgt". */
    drivers: string[];
    /** Table 1: the host's kernel release and CPUs as its agent reports them. */
    kernel?: string;
    cpus?: number;
    /** Table 1: the installed version of each tool the host's drivers run ("fio": "3.33-3"). */
    tools?: Record<string, string>;
  }>;
  /** Table 1: the rate every lab link is shaped to ("1gbit"), or "unshaped". */
  linkRate?: string;
  /** Table 2: the iSCSI session parameters the plan asked for (absent: the drivers' defaults). */
  iscsiParams?: Record<string, string>;
  /**
   * Table 2: each method's iSCSI session — what it negotiated where its initiator can
   * say, else what the target offered; `basis` says which.
   */
  iscsiSessions?: Array<{ method: string; initiator: string; target: string; params: Record<string, string>; basis?: string }>;
  /** Table 2: how each NFS client reached its export (mount options, or libnfs's URL options). */
  nfsClients?: Array<{ method: string; client: string; options: string }>;
  repetitions: number;
  volumeSizeBytes: number;
  provisioning: 'sparse' | 'zero-filled';
  /** Each benchmark as the plan gave it, e.g. bonnie: "fileSize=402653184 chunk=8192 directIo=true ram=201326592". */
  benchmarks: Record<string, string>;
}

/** NATS subjects of a run. */
export function eventSubject(runId: string): string {
  return `vcstor.run.${runId}.event`;
}

export function resultSubject(runId: string): string {
  return `vcstor.run.${runId}.result`;
}

/** The figures a report draws, per benchmark: name, unit, and how to read it from a result. */
export const REPORT_FIGURES: Array<{
  benchmark: string;
  figure: string;
  unit: string;
  read: (result: Record<string, unknown>) => number | undefined;
  /** The tool reported the figure, measured or not (bonnie++'s "+++++" is reported, unmeasured). */
  reported?: (result: Record<string, unknown>) => boolean;
}> = [
  { benchmark: 'bonnie', figure: 'block write', unit: 'KB/s', read: (r) => figure(r, 'bonnie', 'writeBlock'), reported: (r) => reported(r, 'bonnie', 'writeBlock') },
  { benchmark: 'bonnie', figure: 'rewrite', unit: 'KB/s', read: (r) => figure(r, 'bonnie', 'rewrite'), reported: (r) => reported(r, 'bonnie', 'rewrite') },
  { benchmark: 'bonnie', figure: 'block read', unit: 'KB/s', read: (r) => figure(r, 'bonnie', 'readBlock'), reported: (r) => reported(r, 'bonnie', 'readBlock') },
  // The agent's ms clock around the whole run: postmark's own rate is counted in whole
  // seconds (every lab run was 40,000 or 20,000 tx/s), a timer's figure, not storage's.
  { benchmark: 'postmark', figure: 'transactions (whole run)', unit: 'tx/s', read: (r) => num((r.postmark as Record<string, unknown> | undefined)?.transactionsPerWallSecond) },
  { benchmark: 'fio', figure: 'write bandwidth', unit: 'MB/s', read: (r) => mb((r.fio as Record<string, Record<string, unknown>> | undefined)?.write?.bandwidthBytesPerSecond) },
  { benchmark: 'fio', figure: 'read bandwidth', unit: 'MB/s', read: (r) => mb((r.fio as Record<string, Record<string, unknown>> | undefined)?.read?.bandwidthBytesPerSecond) },
];

function reported(r: Record<string, unknown>, tool: string, name: string): boolean {
  const f = (r[tool] as Record<string, unknown> | undefined)?.[name];
  return typeof f === 'object' && f !== null;
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : undefined;
}

function mb(v: unknown): number | undefined {
  const n = num(v);
  return n === undefined ? undefined : n / 1e6;
}

function figure(r: Record<string, unknown>, tool: string, name: string): number | undefined {
  const f = (r[tool] as Record<string, Record<string, unknown>> | undefined)?.[name];
  return f && f.measured ? num(f.perSecond) : undefined;
}
