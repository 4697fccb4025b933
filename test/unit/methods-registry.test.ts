import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GetInfoResponse__Output } from '../../common/generated/vcstor/v1/GetInfoResponse.js';
import { benchmarkRole, dom0BaselineOf, DOM0_BASELINES, METHOD_ORDER, METHOD_SPECS, METHODS, unavailableMethods } from '../../coordinator/methods.js';

const info = (drivers: Array<{ concern: string; driver: string; available: boolean; detail?: string }>) =>
  ({ drivers: drivers.map((d) => ({ ...d, selected: true, detail: d.detail ?? '', version: '' })) }) as unknown as GetInfoResponse__Output;

describe('the method registry', () => {
  it('has an entry for every method and baseline, in the report order', () => {
    assert.deepEqual(Object.keys(METHOD_SPECS).sort(), [...METHODS, ...DOM0_BASELINES].sort());
    assert.deepEqual(METHOD_ORDER, [...DOM0_BASELINES, ...METHODS]);
    for (const m of METHODS) assert.ok(DOM0_BASELINES.includes(dom0BaselineOf(m)!), `${m} is held against a dom0 baseline`);
  });

  it('says who runs the benchmarks, where the data lies and which methods take the section 4.3 test', () => {
    assert.deepEqual(METHOD_ORDER.filter((m) => benchmarkRole(m) === 'dom0'), [...DOM0_BASELINES]);
    assert.equal(benchmarkRole('scale'), 'guest');
    assert.deepEqual(METHOD_ORDER.filter((m) => METHOD_SPECS[m].backing === 'dom0'), ['dom0-local', 'file-local', 'phy-local']);
    assert.deepEqual(METHOD_ORDER.filter((m) => METHOD_SPECS[m].imageDisk), ['file-local', 'file-nfs', 'file-iscsi']);
  });

  it('skips a method whose driver is not available, in the agent\'s words, and dom0-nfs over libnfs', () => {
    const skips = unavailableMethods({ guest: info([{ concern: 'nfs-client', driver: 'kernel', available: false, detail: 'no nfs module' }]), dom0: info([{ concern: 'nfs-client', driver: 'libnfs', available: true }]) });
    assert.deepEqual([...skips.keys()].sort(), ['dom0-nfs', 'nfs']);
    assert.equal(skips.get('nfs'), "the guest agent's nfs-client driver (kernel) is not available: no nfs module");
    assert.match(skips.get('dom0-nfs')!, /^dom0's NFS client here is libnfs/);
  });
});
