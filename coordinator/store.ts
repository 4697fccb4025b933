import { appendFile, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../common/errors.js';
import { writeFileAtomic } from './files.js';
import type { UndoStep } from './methods.js';
import type { MeasurementRecord, RunEventRecord, RunRecord, RunSetup } from './model.js';

/**
 * The coordinator's durable record of runs, one directory each: run.json, plan (its
 * text), events.jsonl (every event, in order), measurements.json, and undo.json — the
 * undo steps of everything provisioned and not yet torn down, written before each
 * change, so `cleanup` can finish what a killed coordinator left.
 */
export class RunStore {
  constructor(readonly root: string) {}

  dir(runId: string): string {
    if (!/^[a-z0-9-]{1,64}$/.test(runId)) throw new VcstorError('INVALID_ARGUMENT', `run_id: ${JSON.stringify(runId)} is not a run id`);
    return path.join(this.root, runId);
  }

  private writeAtomic(file: string, text: string): Promise<void> {
    return writeFileAtomic(file, text);
  }

  private async readJson<T>(file: string): Promise<T | undefined> {
    try {
      return JSON.parse(await readFile(file, 'utf8')) as T;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async create(run: RunRecord, planText: string): Promise<void> {
    await this.writeAtomic(path.join(this.dir(run.runId), 'plan'), planText);
    await this.saveRun(run);
  }

  saveRun(run: RunRecord): Promise<void> {
    return this.writeAtomic(path.join(this.dir(run.runId), 'run.json'), `${JSON.stringify(run, null, 2)}\n`);
  }

  async run(runId: string): Promise<RunRecord> {
    const run = await this.readJson<RunRecord>(path.join(this.dir(runId), 'run.json'));
    if (!run) throw new VcstorError('NOT_FOUND', `no run ${runId}`);
    return run;
  }

  async planText(runId: string): Promise<string> {
    return readFile(path.join(this.dir(runId), 'plan'), 'utf8').catch(() => {
      throw new VcstorError('NOT_FOUND', `no plan for run ${runId}`);
    });
  }

  /** Runs, newest first. */
  async list(limit = 50): Promise<RunRecord[]> {
    const ids = await readdir(this.root).catch(() => [] as string[]);
    const runs = (await Promise.all(ids.map((id) => this.readJson<RunRecord>(path.join(this.root, id, 'run.json')).catch(() => undefined)))).filter((r): r is RunRecord => r !== undefined);
    return runs.sort((a, b) => b.createdUnixMs - a.createdUnixMs).slice(0, limit);
  }

  appendEvent(event: RunEventRecord): Promise<void> {
    return appendFile(path.join(this.dir(event.runId), 'events.jsonl'), `${JSON.stringify(event)}\n`);
  }

  async events(runId: string, afterSeq = 0): Promise<RunEventRecord[]> {
    const text = await readFile(path.join(this.dir(runId), 'events.jsonl'), 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as RunEventRecord)
      .filter((e) => e.seq > afterSeq);
  }

  saveMeasurements(runId: string, measurements: readonly MeasurementRecord[]): Promise<void> {
    return this.writeAtomic(path.join(this.dir(runId), 'measurements.json'), `${JSON.stringify(measurements, null, 1)}\n`);
  }

  async measurements(runId: string): Promise<MeasurementRecord[]> {
    return (await this.readJson<MeasurementRecord[]>(path.join(this.dir(runId), 'measurements.json'))) ?? [];
  }

  saveSetup(runId: string, setup: RunSetup): Promise<void> {
    return this.writeAtomic(path.join(this.dir(runId), 'setup.json'), `${JSON.stringify(setup, null, 1)}\n`);
  }

  /** What the run ran on; undefined for runs from before it was kept. */
  async setup(runId: string): Promise<RunSetup | undefined> {
    return this.readJson<RunSetup>(path.join(this.dir(runId), 'setup.json'));
  }

  /** The pending undo steps of everything a run provisioned, by setup (e.g. "iscsi/rep2"). */
  async undo(runId: string): Promise<Record<string, UndoStep[]>> {
    return (await this.readJson<Record<string, UndoStep[]>>(path.join(this.dir(runId), 'undo.json'))) ?? {};
  }

  saveUndo(runId: string, undo: Record<string, UndoStep[]>): Promise<void> {
    return this.writeAtomic(path.join(this.dir(runId), 'undo.json'), `${JSON.stringify(undo, null, 1)}\n`);
  }
}
