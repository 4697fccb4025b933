import type { StructuredText } from '../common/structured.js';
import type { Logger } from '../common/log.js';
import type { CleanupReport, UndoJournal } from './journal.js';
import type { MeasurementRecord, PlanKind, RunRecord, RunSetup } from './model.js';
import type { PlanHeader, PlanSecrets } from './plan-header.js';
import type { RunEvents } from './run-events.js';
import type { RunStore } from './store.js';

/**
 * The seam every kind of run plugs into (campaign.ts, scale.ts; provision and teardown
 * of virtual clusters later): a plan is read and validated once, then executed with one
 * context, cleaned up from one undo journal, and reported. The coordinator, the CLI and
 * the gRPC service know runs only through this.
 */

/** What a run is executed with. */
export interface RunContext {
  /** The run's record: the kind updates its state and step counts, and saves it. */
  run: RunRecord;
  store: RunStore;
  events: RunEvents;
  /** Every change the run makes is journaled here before it is made. */
  journal: UndoJournal;
  log: Logger;
  /** Aborts the run (cancel, shutdown): what is set up is then taken down. */
  signal: AbortSignal;
}

/** A run's results, for people. */
export interface RunReport {
  /** A plain-text table of the results (`vcstor results`). */
  table(run: RunRecord, measurements: MeasurementRecord[], setup?: RunSetup): string;
  /** A standalone HTML report (`vcstor report`). */
  html(run: RunRecord, measurements: MeasurementRecord[], setup?: RunSetup): string;
}

/** One kind of run. `P` is its plan as parsed (header, secrets and its own section). */
export interface RunKind<P extends PlanHeader & PlanSecrets> {
  readonly kind: PlanKind;
  /** Whether a plan's top-level value is of this kind (a scale plan has a `scale` section). Pure. */
  claims(value: unknown): boolean;
  /**
   * Validate the plan (already read from its text) and read its secrets.
   * @throws VcstorError INVALID_ARGUMENT naming the file, line and field at fault.
   */
  parse(text: StructuredText, source: string): Promise<P>;
  /** One line for people: what the plan will do. */
  describe(plan: P): string;
  /**
   * The run id every run of this plan has, for a kind whose runs are one thing kept up
   * over time (a cluster's storage: provisioned again, it converges on the same run);
   * absent: each submit is a new run. Pure.
   */
  runId?(plan: P): string;
  /**
   * Run the plan to its end (also when cancelled: what it set up is taken down first);
   * resolves with the final record. Failures of steps are recorded, not thrown.
   * @throws only when the run store cannot be written.
   */
  execute(plan: P, context: RunContext): Promise<RunRecord>;
  /** Undo what the journal still holds (after a crash or kill). Idempotent. */
  cleanup(plan: P, journal: UndoJournal): Promise<CleanupReport>;
  /**
   * Take down what earlier runs of the plan left on purpose (a cluster's storage), as a
   * run of its own with events: resolves with the final record (kind `teardown`).
   * Idempotent. Absent: the kind leaves nothing on purpose (cleanup is enough).
   */
  teardown?(plan: P, context: RunContext): Promise<RunRecord>;
  readonly report: RunReport;
}

/** A plan read and validated once, bound to its kind: what the coordinator runs. */
export interface ParsedPlan {
  readonly kind: PlanKind;
  readonly text: string;
  readonly source: string;
  /** The header every kind shares (name, TLS, CHAP, NATS) and its secrets. */
  readonly header: PlanHeader & PlanSecrets;
  /** The kind's one line about it. */
  readonly description: string;
  /** The run id every run of the plan has (RunKind.runId), if its kind has one. */
  readonly runId?: string;
  execute(context: RunContext): Promise<RunRecord>;
  /** RunKind.teardown, bound to the plan, if its kind has one. */
  teardown?(context: RunContext): Promise<RunRecord>;
  cleanup(journal: UndoJournal): Promise<CleanupReport>;
}

/** A kind of run with its plan's type hidden: what a list of kinds holds. */
export interface AnyRunKind {
  readonly kind: PlanKind;
  claims(value: unknown): boolean;
  /** Validate the plan (read from `text`) and bind it to the kind. @throws as RunKind.parse. */
  parse(structured: StructuredText, text: string, source: string): Promise<ParsedPlan>;
  readonly report: RunReport;
}

/** A kind, for a list of kinds: parsing binds its plan to it. */
export function anyKind<P extends PlanHeader & PlanSecrets>(kind: RunKind<P>): AnyRunKind {
  return {
    kind: kind.kind,
    claims: (value) => kind.claims(value),
    report: kind.report,
    parse: async (structured, text, source) => {
      const plan = await kind.parse(structured, source);
      return {
        kind: kind.kind,
        text,
        source,
        header: plan,
        description: kind.describe(plan),
        ...(kind.runId ? { runId: kind.runId(plan) } : {}),
        execute: (context) => kind.execute(plan, context),
        ...(kind.teardown ? { teardown: (context: RunContext) => kind.teardown!(plan, context) } : {}),
        cleanup: (journal) => kind.cleanup(plan, journal),
      };
    },
  };
}
