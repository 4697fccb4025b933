import type { LabFile, LabOptions } from '../../lab/lab.js';
import { labMethodTarget as labTarget } from '../../lab/plan.js';
import type { MethodTarget } from '../../coordinator/methods.js';
import { labClientCredentials } from './lab.js';

/** A MethodTarget for a test lab: its three agents over the lab's client credentials, a known CHAP secret. */
export function labMethodTarget(record: LabFile, lab: LabOptions, overrides: Partial<MethodTarget> = {}): MethodTarget {
  return labTarget({ ...record, dir: record.dir ?? lab.dir }, labClientCredentials(record), { chap: { username: 'alice', password: 'secretpass12' }, ...overrides });
}
