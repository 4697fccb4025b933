import type * as grpc from '@grpc/grpc-js';
import { unaryByName } from '../../common/clients.js';
import { VcstorError } from '../../common/errors.js';
import type { AgentRole, AgentSet, StepTiming } from './types.js';

/**
 * An undo step as data, so it can be journaled and replayed by another process (cleanup
 * after a crash). Every one is idempotent: undoing what was never done succeeds.
 * `data` steps delete what holds the guest's data (volume, image).
 */
export interface UndoStep {
  step: string;
  /** The role of the agent that answers `rpc`. */
  agent: AgentRole;
  /**
   * Which agent of that role, when a plan has several (a scale plan's initiators, by
   * their index in the plan); absent: the plan's only one.
   */
  agentIndex?: number;
  rpc:
    | 'DeleteVolume'
    | 'UnexportIscsi'
    | 'IscsiLogout'
    | 'DeleteImage'
    | 'StopDomain'
    | 'UnmountFilesystem'
    | 'UnexportNfs'
    | 'UnmountNfs'
    | 'DetachVbd'
    | 'StopLoadSessions'
    | 'UnexportBrick'
    | 'DeleteParallelFs'
    | 'UnmountParallelFs';
  request: Record<string, unknown>;
  data?: boolean;
}

/**
 * Where undo steps are sent: a campaign's three agents, or a function that finds the
 * client of a step's agent (a scale plan has many initiators).
 */
export type UndoAgents = AgentSet | ((step: UndoStep) => grpc.Client | undefined);

/**
 * Carry out one undo step (idempotent, as every undo step is), within `timeoutMs`.
 * @throws VcstorError INTERNAL when no agent or method answers for it; else the call's error.
 */
export function runUndoStep(step: UndoStep, agents: UndoAgents, timeoutMs: number): Promise<unknown> {
  const found = typeof agents === 'function' ? agents(step) : agents[step.agent];
  if (!found) throw new VcstorError('INTERNAL', `no ${step.agent} agent ${step.agentIndex ?? ''} for ${step.step}`);
  return unaryByName(step.agent, found, step.rpc, step.request, { timeoutMs });
}

/**
 * Run undo steps in reverse; each done step leaves the journal. Stops at the first
 * failure, leaving it and every step below it in the journal (for `vcstor cleanup`):
 * the steps are layers, each resting on the ones undone after it, and removing a lower
 * layer under one still in place (a session under a mounted filesystem, a VBD under a
 * guest's mount) leaves I/O that never completes — the fault suite saw umount and
 * blockdev hang in D state, and qemu-storage-daemon unkillable, after a guest agent
 * was killed mid-teardown and the steps below its unmount went on.
 * @throws VcstorError naming the step that failed, why, and what was not attempted.
 */
export async function runUndoSteps(
  undo: UndoStep[],
  agents: UndoAgents,
  timeoutMs: number,
  journal: (pending: readonly UndoStep[]) => Promise<void> = async () => undefined,
): Promise<StepTiming[]> {
  const timings: StepTiming[] = [];
  for (const u of [...undo].reverse()) {
    const started = performance.now();
    try {
      await runUndoStep(u, agents, timeoutMs);
    } catch (err) {
      const below = undo.slice(0, undo.indexOf(u)).reverse().map((x) => x.step);
      const why = err instanceof Error ? err.message : String(err);
      throw new VcstorError(err instanceof VcstorError && err.retryable ? err.code : 'INTERNAL', `teardown stopped at ${u.step}: ${why}${below.length > 0 ? `; not attempted, to keep the layers below it intact: ${below.join(', ')}` : ''}`, { cause: err });
    }
    undo.splice(undo.indexOf(u), 1);
    await journal(undo);
    timings.push({ step: u.step, ms: Math.round(performance.now() - started) });
  }
  return timings;
}

