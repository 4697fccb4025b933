import { VcstorError } from '../common/errors.js';
import { readStructured } from '../common/structured.js';
import { campaignKind } from './campaign.js';
import { clusterKind } from './cluster.js';
import type { PlanKind } from './model.js';
import { anyKind, type AnyRunKind, type ParsedPlan, type RunReport } from './run-kind.js';
import { scaleKind } from './scale.js';
import { sharedKind } from './shared.js';

/**
 * The kinds of run the coordinator knows, in the order they are asked whether a plan
 * is theirs: the first that claims it takes it (the campaign takes any plan).
 */
// A shared-space plan names its hosts in a `cluster` section too: it is asked before the cluster kind.
const KINDS: readonly AnyRunKind[] = [anyKind(scaleKind), anyKind(sharedKind), anyKind(clusterKind), anyKind(campaignKind)];

/**
 * Read a plan's text once, find its kind, validate it and read its secrets: the plan the
 * coordinator runs. Reads the files the plan names; nothing is provisioned.
 * @throws VcstorError INVALID_ARGUMENT naming the file, line and field at fault.
 */
export async function parsePlanText(text: string, source = 'plan'): Promise<ParsedPlan> {
  const structured = readStructured(text, source);
  const kind = KINDS.find((k) => k.claims(structured.value))!;
  return kind.parse(structured, text, source);
}

/**
 * How runs of `kind` are reported.
 * @throws VcstorError INTERNAL for a kind this coordinator has no runs of.
 */
export function reportOf(kind: PlanKind): RunReport {
  // A teardown is a cluster run's last act: its run is reported as the cluster's.
  const found = KINDS.find((k) => k.kind === (kind === 'teardown' ? 'provision' : kind));
  if (!found) throw new VcstorError('INTERNAL', `no ${kind} runs here: this coordinator runs ${KINDS.map((k) => k.kind).join(' and ')}`);
  return found.report;
}
