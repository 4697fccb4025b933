import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { readStructured } from '../../common/structured.js';
import type { MeasurementRecord, RunRecord } from '../../coordinator/model.js';
import { renderSharedReport, sharedResultsTable } from '../../coordinator/report/index.js';
import { parsePlanText } from '../../coordinator/run-kinds.js';
import { MEASUREMENT, phaseResult, postmarkResult, storageIoBetween, type GuestPhase } from '../../coordinator/shared-figures.js';
import { sharedGuests, validateSharedPlan } from '../../coordinator/shared-plan.js';
import { clusterPlanValue } from './cluster-plan.test.js';

/** A shared-space plan over the cluster-plan test's hosts (2 storage servers, 2 dom0 x 2 guests). */
function sharedPlanValue(secret: string, shared: Record<string, unknown> = {}, cluster: Record<string, unknown> = {}): Record<string, any> {
  const value = clusterPlanValue(secret, { storages: 2 });
  delete value.cluster.method;
  Object.assign(value.cluster, { diskSize: '384MiB' }, cluster);
  const nasHead = { head: 'storage0', san: 'storage1', initiatorIqn: 'iqn.2026-11.org.vcstor.lab:storage0', exportDir: '/lab/hosts/storage0/exports' };
  return { ...value, name: 'spaces', shared: { spaces: ['nas-head', 'parallel-fs', 'iscsi'], guestCounts: [1, 2, 4], nasHead, ...shared } };
}

const guestPhase = (guest: string, startedUnixMs: number, runtimeMs: number, bytes: number): GuestPhase => ({
  guest,
  file: `w-${guest}`,
  writtenBy: guest,
  bytes,
  bytesPerSecond: (bytes * 1000) / runtimeMs,
  runtimeMs,
  startedUnixMs,
  finishedUnixMs: startedUnixMs + runtimeMs,
});

describe('shared-space plans', () => {
  let dir = '';
  let secret = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-shared-plan-'));
    secret = path.join(dir, 'chap');
    await writeFile(secret, 'labsecret1234\n', { mode: 0o600 });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const parse = (value: unknown) => validateSharedPlan(readStructured(stringify(value), 's.yaml'), 's.yaml');
  const refusal = async (value: unknown, pattern: RegExp) => {
    await assert.rejects(parse(value), (err: Error) => {
      assert.match(err.message, pattern);
      return true;
    });
  };

  it('are a kind of their own, asked before cluster plans (they name their hosts in `cluster` too), with defaults', async () => {
    const parsed = await parsePlanText(stringify(sharedPlanValue(secret)), 's.yaml');
    assert.equal(parsed.kind, 'shared');
    assert.equal(parsed.runId, undefined, 'every run is a new one');
    assert.equal(parsed.description, 'shared spaces nas-head, parallel-fs, iscsi with 1, 2, 4 guests at once');
    const plan = await parse(sharedPlanValue(secret));
    assert.deepEqual(plan.shared.fio, { size: 64 * 2 ** 20, blockSize: 2 ** 20, direct: true });
    assert.equal(plan.shared.repetitions, 1);
  });

  it('take the guests round-robin over the dom0 hosts: two at once are on two hosts', async () => {
    const plan = await parse(sharedPlanValue(secret));
    const order = sharedGuests(plan).map((g) => `${g.name}@${g.dom0.name}/${g.storage.name}`);
    assert.deepEqual(order, ['guest0@host0/storage0', 'guest2@host1/storage1', 'guest1@host0/storage0', 'guest3@host1/storage1'], 'and the storage servers in turn in that order');
    const pinned = sharedPlanValue(secret);
    pinned.cluster.dom0[1].guests[0].storage = 'storage0';
    assert.equal(sharedGuests(await parse(pinned)).find((g) => g.name === 'guest2')!.storage.name, 'storage0', 'a guest that names its server keeps it');
  });

  it('refuse what cannot run: more guests than the plan has, counts not ascending, a space twice, parallel-fs on one server, files that do not fit', async () => {
    await refusal(sharedPlanValue(secret, { guestCounts: [1, 8] }), /shared\.guestCounts\.1.*8 guests at once, but the plan has 4/s);
    await refusal(sharedPlanValue(secret, { guestCounts: [2, 1] }), /must ascend/);
    await refusal(sharedPlanValue(secret, { spaces: ['iscsi', 'iscsi'] }), /named twice/);
    await refusal(sharedPlanValue(secret, { spaces: ['nas-lead'] }), /shared\.spaces\.0/);
    const one = sharedPlanValue(secret);
    one.cluster.storage = one.cluster.storage.slice(0, 1);
    await refusal(one, /two or more/);
    await refusal(sharedPlanValue(secret, { spaces: ['parallel-fs'], fio: { size: '128MiB' } }), /do not fit one brick/);
    await refusal(sharedPlanValue(secret, { spaces: ['nas-head'], fio: { size: '128MiB' } }), /do not fit the NAS head's LUN/);
    await refusal(sharedPlanValue(secret, { nasHead: undefined }), /nas-head needs shared\.nasHead/);
    const same = sharedPlanValue(secret);
    same.shared.nasHead.san = 'storage0';
    await refusal(same, /name two storage servers/);
    const unknown = sharedPlanValue(secret);
    unknown.shared.nasHead.head = 'storage9';
    await refusal(unknown, /shared\.nasHead\.head.*no storage server "storage9"/s);
    await refusal(sharedPlanValue(secret, { spaces: ['iscsi'], fio: { size: '300MiB' } }, { diskSize: '384MiB' }), /does not fit a guest's own disk/);
  });
});

describe('shared-space figures', () => {
  it('aggregate: every byte over the span from the first I/O to the last, and how much the guests overlapped', () => {
    // Two guests of 100 MB each: one 0-2 s, the other 1-3 s: 200 MB over 3 s.
    const r = phaseResult('parallel-fs', true, 'write', [guestPhase('a', 1000, 2000, 100e6), guestPhase('b', 2000, 2000, 100e6)], 'a 0 MiB');
    assert.equal(r.totalBytes, 200e6);
    assert.equal(r.spanMs, 3000);
    assert.ok(Math.abs(r.aggregateBytesPerSecond - 200e6 / 3) < 1);
    assert.ok(Math.abs(r.overlap - 2 / 3) < 1e-9);
    assert.equal(r.verified, false, 'a write verifies nothing');
    // Their rates summed would say 100 MB/s: the span does not let overlapping jobs inflate it.
    assert.ok(r.aggregateBytesPerSecond < r.perGuest.reduce((n, p) => n + p.bytesPerSecond, 0));
    assert.equal(phaseResult('iscsi', false, 'read', [guestPhase('a', 0, 1000, 1e6)], '').verified, true);
  });

  it("storage I/O: each host's processes' block-layer bytes between two samples; a process that appeared counts from 0", () => {
    const sample = (entries: Array<[string, Array<[string, number, number]>]>) => new Map(entries.map(([host, ps]) => [host, new Map(ps.map(([id, read, write]) => [id, { read, write }]))]));
    const before = sample([['storage0', [['process:tgtd:10', 100, 1000]]], ['storage1', []]]);
    const after = sample([['storage0', [['process:tgtd:10', 600, 1500]]], ['storage1', [['process:glusterfsd:20', 300, 0]]]]);
    assert.deepEqual(storageIoBetween(before, after), [
      { host: 'storage0', readBytes: 500, writeBytes: 500 },
      { host: 'storage1', readBytes: 300, writeBytes: 0 },
    ]);
  });

  it('a read phase whose servers\' disks saw under 90% of the bytes is flagged as a cache, in the table and the report', () => {
    const run: RunRecord = { runId: 'r-2', planName: 'spaces', kind: 'shared', state: 'succeeded', createdUnixMs: 0, finishedUnixMs: 0, stepsTotal: 0, stepsSucceeded: 0, stepsFailed: 0, error: '' };
    const read = (space: string, served: number) =>
      ({ runId: 'r-2', method: space, benchmark: MEASUREMENT.read, repetition: 1, guest: 'guest0', error: '', result: phaseResult(space, true, 'read', [guestPhase('guest0', 0, 1000, 100e6)], '', [{ host: 'storage0', readBytes: served / 2, writeBytes: 0 }, { host: 'storage1', readBytes: served / 2, writeBytes: 0 }]) as unknown as Record<string, unknown> }) as MeasurementRecord;
    const table = sharedResultsTable(run, [read("parallel-fs", 30e6), read("nas-head", 200e6)]);
    assert.match(table, /parallel-fs\s+read.*storage0 15% storage1 15% \(cache!\)/);
    assert.match(table, /nas-head\s+read.*storage0 100% storage1 100%\s/);
    assert.match(table, /measured a cache .*: parallel-fs read 1$/m);
    const html = renderSharedReport(run, [read('parallel-fs', 30e6)]);
    assert.match(html, /class="warning">Part of this space's figures came from a cache/);
  });

  it('the report: a chart per space with a point per count and series, the table with spread and knee, failures listed', () => {
    const run: RunRecord = { runId: 'r-1', planName: 'spaces', kind: 'shared', state: 'succeeded', createdUnixMs: 0, finishedUnixMs: 0, stepsTotal: 0, stepsSucceeded: 0, stepsFailed: 0, error: '' };
    const measurements: MeasurementRecord[] = [];
    // parallel-fs: 40 MB/s per guest alone, 30 each with 2, 15 each with 4: aggregate 40, 60, 60.
    const per: Record<number, number> = { 1: 40e6, 2: 30e6, 4: 15e6 };
    for (const n of [1, 2, 4]) {
      for (const rep of [1, 2]) {
        for (const phase of ['write', 'read'] as const) {
          const guests = Array.from({ length: n }, (_, i) => guestPhase(`guest${i}`, 0, 1000, per[n]! * (rep === 1 ? 1 : 1.02)));
          measurements.push({ runId: 'r-1', method: 'parallel-fs', benchmark: MEASUREMENT[phase], repetition: rep, guest: guests.map((g) => g.guest).join(','), result: phaseResult('parallel-fs', true, phase, guests, '') as unknown as Record<string, unknown>, error: '' });
        }
      }
    }
    measurements.push({ runId: 'r-1', method: 'iscsi', benchmark: MEASUREMENT.write, repetition: 1, guest: 'guest0', error: 'fio on guest0: no space left' });
    // PostMark: two guests of 500 transactions each, 0-2 s and 1-2 s: 1000 over 2 s.
    const pm = postmarkResult('parallel-fs', true, [
      { guest: 'guest0', transactions: 500, transactionsPerSecond: 250, wallMs: 2000, startedUnixMs: 0, finishedUnixMs: 2000 },
      { guest: 'guest1', transactions: 500, transactionsPerSecond: 500, wallMs: 1000, startedUnixMs: 1000, finishedUnixMs: 2000 },
    ], '', [{ host: 'storage0', readBytes: 0, writeBytes: 4096 }]);
    assert.equal(pm.aggregateTransactionsPerSecond, 500);
    measurements.push({ runId: 'r-1', method: 'parallel-fs', benchmark: MEASUREMENT.postmark, repetition: 1, guest: 'guest0,guest1', result: pm as unknown as Record<string, unknown>, error: '' });
    const table = sharedResultsTable(run, measurements);
    assert.match(table, /parallel-fs\s+write\s+4\s+60\.6±0\.8\s+2/);
    assert.match(table, /knee parallel-fs write: 2 guests/);
    assert.match(table, /intact, read by another guest/);
    assert.match(table, /iscsi shared-write guest0 rep 1: fio on guest0: no space left/);
    assert.match(table, /^parallel-fs\s+2\s+500\s+1\s+375\s+250-500\s+no \(cache!\)$/m, 'PostMark: the aggregate over the span, the per-guest mean and range; no bytes reached the servers');
    assert.match(table, /PostMark measured a cache .*: parallel-fs 2$/m);
    const html = renderSharedReport(run, measurements);
    const points = [...html.matchAll(/<circle class="point"[^>]*data-series="write, all" data-count="(\d+)" data-value="([\d.]+)"/g)].map((m) => [Number(m[1]), Math.round(Number(m[2]))]);
    assert.deepEqual(points, [[1, 40], [2, 61], [4, 61]]);
    assert.match(html, /data-space="parallel-fs"/);
    assert.match(html, /class="knee"/);
    assert.match(html, /<svg id="postmark-parallel-fs"[\s\S]*data-series="all" data-count="2" data-value="500"/);
  });
});
