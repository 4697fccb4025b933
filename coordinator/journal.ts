import { runUndoSteps, type UndoAgents, type UndoStep } from './methods.js';
import type { RunStore } from './store.js';

/** What a cleanup did: each undo step done, and what is left (with why). */
export interface CleanupReport {
  removed: string[];
  leftBehind: string[];
}

/**
 * A run's undo journal: the undo steps of everything the run provisioned and has not
 * yet torn down, by group (a campaign's setup, "iscsi/rep2"; a scale run's volume or
 * load set), kept in the run store (undo.json) and written before each change, so that
 * `vcstor cleanup` can finish what a killed coordinator left. Every kind of run uses it.
 * Writes are serialised; a write that has not started yet takes every later change too.
 */
export class UndoJournal {
  private readonly groups: Record<string, UndoStep[]>;
  private writing: Promise<unknown> = Promise.resolve();
  private queued: Promise<void> | undefined;

  private constructor(
    /** Where the journal is kept, and whose it is. */
    readonly store: RunStore,
    readonly runId: string,
    groups: Record<string, UndoStep[]>,
  ) {
    this.groups = groups;
  }

  /**
   * The run's journal as the store has it (empty for a new run).
   * @throws the store's error when undo.json cannot be read.
   */
  static async open(store: RunStore, runId: string): Promise<UndoJournal> {
    return new UndoJournal(store, runId, await store.undo(runId));
  }

  /** The pending steps, by group (a copy). */
  pending(): Record<string, UndoStep[]> {
    return Object.fromEntries(Object.entries(this.groups).map(([group, steps]) => [group, [...steps]]));
  }

  /** Replace a group's pending steps (none: the group is gone); resolves once stored. */
  set(group: string, steps: readonly UndoStep[]): Promise<void> {
    if (steps.length > 0) this.groups[group] = [...steps];
    else delete this.groups[group];
    return this.write();
  }

  /** The journal callback of one group, as provisionMethod and runUndoSteps take it. */
  of(group: string): (pending: readonly UndoStep[]) => Promise<void> {
    return (pending) => this.set(group, pending);
  }

  /** Add a step on top of a group (a step equal to one there is not added twice); resolves once stored. */
  add(group: string, step: UndoStep): Promise<void> {
    const steps = this.groups[group] ?? [];
    if (!steps.some((s) => sameStep(s, step))) this.groups[group] = [...steps, step];
    return this.write();
  }

  /** A step was carried out: it leaves its group; resolves once stored. */
  done(group: string, step: UndoStep): Promise<void> {
    return this.set(group, (this.groups[group] ?? []).filter((s) => !sameStep(s, step)));
  }

  /** Resolves once every write asked for so far is stored (never rejects). */
  async settled(): Promise<void> {
    await this.writing;
  }

  /**
   * Undo every group: its steps in reverse, each one leaving the journal when done; a
   * group stops at its first failure (the steps below it stay, see runUndoSteps). Groups
   * go in `phases` (default: one, as journaled), a phase only once the one before it is
   * over, up to `concurrency` groups at once. Idempotent.
   */
  async replay(agents: UndoAgents, o: { timeoutMs: number; concurrency?: number; phases?: (groups: string[]) => string[][] }): Promise<CleanupReport> {
    const report: CleanupReport = { removed: [], leftBehind: [] };
    const phases = (o.phases ?? ((g) => [g]))(Object.keys(this.groups));
    for (const groups of phases) await this.replayGroups(groups, agents, o.timeoutMs, o.concurrency ?? 1, report);
    return report;
  }

  private async replayGroups(groups: string[], agents: UndoAgents, timeoutMs: number, concurrency: number, report: CleanupReport): Promise<void> {
    await pool(groups, concurrency, async (group) => {
      const steps = [...(this.groups[group] ?? [])];
      try {
        const timings = await runUndoSteps(steps, agents, timeoutMs, this.of(group));
        report.removed.push(...timings.map((t) => `${group}: ${t.step}`));
      } catch (err) {
        report.leftBehind.push(`${group}: ${err instanceof Error ? err.message : String(err)}`);
      }
    });
  }

  private write(): Promise<void> {
    if (!this.queued) {
      const write = this.writing.then(() => {
        this.queued = undefined;
        return this.store.saveUndo(this.runId, this.groups);
      });
      this.queued = write;
      this.writing = write.catch(() => undefined);
    }
    return this.queued;
  }
}

function sameStep(a: UndoStep, b: UndoStep): boolean {
  return a.rpc === b.rpc && a.agent === b.agent && a.agentIndex === b.agentIndex && JSON.stringify(a.request) === JSON.stringify(b.request);
}

/**
 * Run `work` over `items` with at most `limit` at once.
 * @throws the first error of `work` (the others run on).
 */
export async function pool<T>(items: readonly T[], limit: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await work(items[i]!, i);
      }
    }),
  );
}
