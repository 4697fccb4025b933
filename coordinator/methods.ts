/**
 * The methods of giving storage to a benchmark (coordinator/methods/): the registry of
 * methods and dom0 baselines (registry.ts), the building blocks of their provisioning
 * (provisioner.ts), and their undo steps (undo.ts). This module is their public face.
 */
export { benchmarkRole, dom0BaselineOf, DOM0_BASELINES, isDom0Baseline, METHOD_ORDER, METHOD_SPECS, methodSpec, METHODS, provisionMethod, REPORT_BASELINE_METHOD, unavailableMethods } from './methods/registry.js';
export type { AgentInfos, BaselineName, MethodName, MethodSpec } from './methods/registry.js';
export { Provisioner, type Placement } from './methods/provisioner.js';
export type { AgentRole, AgentSet, IscsiSessionFacts, MethodTarget, PathLayers, ProvisionedMethod, StepTiming } from './methods/types.js';
export { runUndoStep, runUndoSteps, type UndoAgents, type UndoStep } from './methods/undo.js';
