import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { VcstorError } from '../../common/errors.js';
import type { StartLoadSessionsRequest__Output } from '../../common/generated/vcstor/v1/StartLoadSessionsRequest.js';
import { histogramBins, histogramPercentile, loadFioArgs, mergeHistogram, parseFioJsonPlus } from '../../host-storage/load-fio.js';
import { validateLoadFioSpec, validateStartLoadSessionsRequest } from '../../host-storage/load-requests.js';
import { findKnee, samplePercentile, slope, stageHistogram } from '../../coordinator/scale.js';
import { isScalePlanText, parseScalePlan, rampCounts } from '../../coordinator/scale-plan.js';
import { scaleResultsTable } from '../../coordinator/report/index.js';

/** Beside the compiled tests in dist/, or from the repository root (a private build dir). */
function fixture(name: string): string {
  const besideBuild = fileURLToPath(new URL(`../../../test/fixtures/load/${name}`, import.meta.url));
  return readFileSync(existsSync(besideBuild) ? besideBuild : path.join(process.cwd(), 'test', 'fixtures', 'load', name), 'utf8');
}

const invalid = (field: RegExp) => (err: unknown) => err instanceof VcstorError && err.code === 'INVALID_ARGUMENT' && field.test(err.message);

describe('fio json+ of load sessions', () => {
  // Captured from fio 3.33: two nbd jobs, randrw 70/30, its "connected" lines first.
  const jobs = parseFioJsonPlus(fixture('fio-jsonplus-2jobs.json'));

  it('reads one result per job, skipping what the nbd engine printed first', () => {
    assert.deepEqual(jobs.map((j) => j.name), ['s0', 's1']);
    for (const j of jobs) {
      assert.ok(j.readIops > 0 && j.writeIops > 0 && j.readBytesPerSecond > j.writeBytesPerSecond, 'a 70/30 mix reads more than it writes');
      assert.equal(j.error, 0);
      assert.ok(j.histogram.size > 10);
    }
  });

  it('the histogram holds every I/O, and its percentiles match what fio computed', () => {
    const raw = JSON.parse(fixture('fio-jsonplus-2jobs.json').replace(/^[^{]*/, '')) as { jobs: Array<{ read: { clat_ns: { N: number; percentile: Record<string, number> } }; write: { clat_ns: { N: number } } }> };
    jobs.forEach((j, i) => {
      const total = [...j.histogram.values()].reduce((a, b) => a + b, 0);
      assert.equal(total, raw.jobs[i]!.read.clat_ns.N + raw.jobs[i]!.write.clat_ns.N);
    });
    // Only reads: the same percentile rule as fio's gives fio's number.
    const readOnly = new Map<number, number>();
    const bins = (JSON.parse(fixture('fio-jsonplus-2jobs.json').replace(/^[^{]*/, '')) as { jobs: Array<{ read: { clat_ns: { bins: Record<string, number> } } }> }).jobs[0]!.read.clat_ns.bins;
    for (const [k, v] of Object.entries(bins)) readOnly.set(Number(k), v);
    assert.equal(histogramPercentile(readOnly, 99), raw.jobs[0]!.read.clat_ns.percentile['99.000000']);
    assert.equal(histogramPercentile(readOnly, 50), raw.jobs[0]!.read.clat_ns.percentile['50.000000']);
  });

  it('merges histograms exactly and in order', () => {
    const merged = mergeHistogram(mergeHistogram(new Map(), jobs[0]!.histogram), histogramBins(jobs[1]!.histogram));
    const total = (h: Map<number, number>) => [...h.values()].reduce((a, b) => a + b, 0);
    assert.equal(total(merged), total(jobs[0]!.histogram) + total(jobs[1]!.histogram));
    const bins = histogramBins(merged);
    assert.ok(bins.every((b, i) => i === 0 || b.latencyNs > bins[i - 1]!.latencyNs));
    assert.ok(histogramPercentile(merged, 50) <= histogramPercentile(merged, 95) && histogramPercentile(merged, 95) <= histogramPercentile(merged, 99));
    assert.equal(histogramPercentile(new Map(), 99), 0);
  });

  it('refuses output without JSON', () => {
    assert.throws(() => parseFioJsonPlus('fio: connected to NBD server\nfio: error\n'), (err: unknown) => err instanceof VcstorError && err.code === 'INTERNAL');
  });

  it('one job per session on the daemon socket, threads, json+', () => {
    const args = loadFioArgs({ rw: 'randrw', blockSizeBytes: 4096, iodepth: 2, sizeBytes: 1 << 24, runtimeS: 3, rwmixRead: 70 }, [{ name: 's0', socket: '/s/n0.sock' }, { name: 's1', socket: '/s/n0.sock' }], '/s/fio0.json');
    assert.deepEqual(args.slice(0, 4), ['--output-format=json+', '--output=/s/fio0.json', '--thread', '--ioengine=nbd']);
    assert.ok(args.includes('--rwmixread=70') && args.includes('--time_based') && args.includes('--runtime=3'));
    assert.deepEqual(args.slice(-4), ['--name=s0', '--uri=nbd+unix:///s0?socket=/s/n0.sock', '--name=s1', '--uri=nbd+unix:///s1?socket=/s/n0.sock']);
  });
});

describe('load-session requests at the edge', () => {
  const target = { portal: '198.51.100.10:3260', iqn: 'iqn.2026-11.org.vcstor.lab:vol0', lun: 0 };
  const request = (over: Partial<StartLoadSessionsRequest__Output> = {}): StartLoadSessionsRequest__Output => ({
    setId: 'sc-1',
    sessions: [{ target, initiatorIqn: 'iqn.2026-11.org.vcstor.lab:g.0' }],
    chap: null,
    sessionsPerDaemon: 0,
    loginTimeoutMs: 0,
    ...over,
  });

  it('accepts a good request', () => validateStartLoadSessionsRequest(request()));
  it('refuses a bad set id, no sessions, too many, a bad IQN, a bad portal, duplicates, mutual CHAP', () => {
    assert.throws(() => validateStartLoadSessionsRequest(request({ setId: '../x' })), invalid(/^set_id/));
    assert.throws(() => validateStartLoadSessionsRequest(request({ setId: 'a'.repeat(33) })), invalid(/^set_id/));
    assert.throws(() => validateStartLoadSessionsRequest(request({ sessions: [] })), invalid(/^sessions/));
    assert.throws(() => validateStartLoadSessionsRequest(request({ sessions: Array.from({ length: 4097 }, (_, i) => ({ target, initiatorIqn: `iqn.2026-11.x:${i}` })) })), invalid(/more than 4096/));
    assert.throws(() => validateStartLoadSessionsRequest(request({ sessions: [{ target, initiatorIqn: 'IQN.bad' }] })), invalid(/sessions\[0\]\.initiator_iqn/));
    assert.throws(() => validateStartLoadSessionsRequest(request({ sessions: [{ target: { ...target, portal: 'a b' }, initiatorIqn: 'iqn.2026-11.x:a' }] })), invalid(/sessions\[0\]\.target\.portal/));
    assert.throws(() => validateStartLoadSessionsRequest(request({ sessions: [{ target, initiatorIqn: 'iqn.2026-11.x:a' }, { target, initiatorIqn: 'iqn.2026-11.x:a' }] })), invalid(/sessions\[1\]/));
    assert.throws(() => validateStartLoadSessionsRequest(request({ chap: { username: 'u', password: 'secretsecret12', mutualUsername: 'm', mutualPassword: 'othersecret123' } })), invalid(/mutual/));
    assert.throws(() => validateStartLoadSessionsRequest(request({ sessionsPerDaemon: 5000 })), invalid(/sessions_per_daemon/));
  });
  it('fills in the fio job and refuses bad values', () => {
    assert.deepEqual(validateLoadFioSpec('fio', { rw: 'randread', blockSizeBytes: 0, iodepth: 0, sizeBytes: 0, runtimeS: 0, rwmixRead: 0 }), { rw: 'randread', blockSizeBytes: 4096, iodepth: 1, sizeBytes: 16 << 20, runtimeS: 5, rwmixRead: 50 });
    assert.throws(() => validateLoadFioSpec('fio', null), invalid(/^fio/));
    assert.throws(() => validateLoadFioSpec('fio', { rw: 'trim', blockSizeBytes: 0, iodepth: 0, sizeBytes: 0, runtimeS: 0, rwmixRead: 0 }), invalid(/fio\.rw/));
    assert.throws(() => validateLoadFioSpec('fio', { rw: 'read', blockSizeBytes: 1000, iodepth: 0, sizeBytes: 0, runtimeS: 0, rwmixRead: 0 }), invalid(/block_size_bytes/));
    assert.throws(() => validateLoadFioSpec('fio', { rw: 'read', blockSizeBytes: 0, iodepth: 300, sizeBytes: 0, runtimeS: 0, rwmixRead: 0 }), invalid(/iodepth/));
  });
});

describe('the knee', () => {
  const rule = { p99LatencyMs: 10, minGainPercent: 10 };
  const step = (count: number, mbps: number, p99Ms = 1, failedLogins = 0) => ({ count, bytesPerSecond: mbps * 1e6, p99Ms, failedLogins });

  it('is the last count before throughput stops growing', () => {
    const knee = findKnee([step(1, 10), step(2, 19), step(4, 30), step(8, 31), step(16, 29)], rule);
    assert.deepEqual([knee.count, knee.reached, knee.limitedBy], [4, true, 'throughput']);
    assert.match(knee.reason, /peaked at 30\.0 MB\/s with 4 initiators; up to 16/);
  });
  it('is the last count before p99 passes the threshold, or before a login fails', () => {
    assert.deepEqual(findKnee([step(1, 10), step(2, 20, 5), step(4, 40, 11)], rule).count, 2);
    assert.equal(findKnee([step(1, 10), step(2, 20, 5), step(4, 40, 11)], rule).limitedBy, 'latency');
    assert.deepEqual([findKnee([step(1, 10), step(2, 20, 1, 1)], rule).count, findKnee([step(1, 10), step(2, 20, 1, 1)], rule).limitedBy], [1, 'logins']);
    assert.equal(findKnee([step(1, 10, 50)], rule).count, 0, 'even one initiator is too slow');
  });
  it('one noisy step does not end the ramp: growth is measured against the best so far', () => {
    const knee = findKnee([step(1, 14), step(2, 20), step(4, 25), step(8, 28), step(16, 37), step(32, 39), step(64, 45), step(128, 60), step(256, 27), step(512, 22, 152)], rule.p99LatencyMs === 10 ? { p99LatencyMs: 100, minGainPercent: 10 } : rule);
    assert.deepEqual([knee.count, knee.limitedBy], [128, 'throughput']);
  });
  it('is not reached when the ramp ends still growing; steps in any order', () => {
    const knee = findKnee([step(4, 40), step(1, 10), step(2, 20)], rule);
    assert.deepEqual([knee.count, knee.reached, knee.limitedBy], [4, false, 'none']);
  });
});

describe('control-plane statistics', () => {
  it('percentiles, power-of-two buckets, and the k-th export slope', () => {
    assert.equal(samplePercentile([5, 1, 3, 2, 4], 50), 3);
    assert.equal(samplePercentile([], 99), 0);
    const h = stageHistogram([0.5, 1, 3, 3.5, 100]);
    assert.deepEqual(h.buckets, { '<=1': 2, '<=4': 2, '<=128': 1 });
    assert.equal(h.maxMs, 100);
    assert.equal(slope([1, 3, 5, 7]), 2);
    assert.equal(slope([4, 4, 4]), 0);
  });
});

describe('scale plans', () => {
  let dir = '';
  let secret = '';
  const text = (scale: string) => `name: s
agents:
  storage: { address: 127.0.0.1:1, host: 127.0.0.1 }
  initiators:
    - { name: guest0, role: guest, address: 127.0.0.1:2, iqnPrefix: "iqn.2026-11.org.vcstor:g0-load" }
    - { name: host0, role: dom0, address: 127.0.0.1:3, iqnPrefix: "iqn.2026-11.org.vcstor:h0-load" }
tls: { insecure: true }
chap: { username: vcstor, passwordFile: ${secret} }
scale:
${scale}`;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-scale-plan-'));
    secret = path.join(dir, 'chap');
    await writeFile(secret, 'labsecret1234\n');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('a ramp becomes counts; defaults are filled in; it is told apart from a campaign', async () => {
    const t = text('  ramp: { to: 1000 }\n  allowedAddresses: 127.0.0.0/8\n  fio: { rw: randread }\n');
    assert.equal(isScalePlanText(t), true);
    assert.equal(isScalePlanText('name: x\ncampaign: {}\n'), false);
    const plan = await parseScalePlan(t, 's.yaml');
    assert.deepEqual(plan.counts, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000]);
    assert.equal(plan.scale.fio.blockSize, 4096);
    assert.equal(plan.scale.sessionsPerDaemon, 64);
    assert.equal(plan.chapPassword, 'labsecret1234');
    assert.deepEqual(rampCounts(1, 10, 3), [1, 3, 9, 10]);
  });
  it('errors name the line and field', async () => {
    await assert.rejects(parseScalePlan(text('  counts: [4, 2]\n  allowedAddresses: 127.0.0.0/8\n  fio: { rw: randread }\n'), 's.yaml'), (err: unknown) => err instanceof VcstorError && /s\.yaml:\d+: scale\.counts/.test(err.message));
    await assert.rejects(parseScalePlan(text('  counts: [1]\n  allowedAddresses: nowhere\n  fio: { rw: randread }\n'), 's.yaml'), (err: unknown) => err instanceof VcstorError && /scale\.allowedAddresses/.test(err.message));
    await assert.rejects(parseScalePlan(text('  counts: [1]\n  allowedAddresses: 127.0.0.0/8\n  fio: { rw: randread, size: 1GiB }\n'), 's.yaml'), (err: unknown) => err instanceof VcstorError && /scale\.fio\.size/.test(err.message));
    await assert.rejects(parseScalePlan(text('  allowedAddresses: 127.0.0.0/8\n  fio: { rw: randread }\n'), 's.yaml'), (err: unknown) => err instanceof VcstorError && /counts|ramp/.test(err.message));
  });
  it('the results table shows every step and the knee', () => {
    const run = { runId: 'r-1', planName: 's', kind: 'scale' as const, state: 'succeeded' as const, createdUnixMs: 0, finishedUnixMs: 0, stepsTotal: 3, stepsSucceeded: 3, stepsFailed: 0, error: '' };
    const stepResult = (count: number, mbps: number) => ({ count, loggedIn: count, failedLogins: 0, targetSessions: count, loginP50Ms: 3, loginP99Ms: 9, bytesPerSecond: mbps * 1e6, iops: mbps * 244, perInitiatorBytesPerSecond: { mean: (mbps * 1e6) / count, min: 0, max: 0 }, p50Ms: 0.2, p95Ms: 0.5, p99Ms: 1.5, initiatorRssBytes: 2e7, initiatorFds: 30 });
    const m = (benchmark: string, repetition: number, result: Record<string, unknown>) => ({ runId: 'r-1', method: 'scale', benchmark, repetition, guest: 'g', result, error: '' });
    const table = scaleResultsTable(run, [m('scale-step', 1, stepResult(1, 14)), m('scale-step', 2, stepResult(2, 20)), m('scale-knee', 0, { knee: { count: 2, reached: false, limitedBy: 'none', reason: 'still growing' } })]);
    assert.match(table, /^1 .* 14\.0 /m);
    assert.match(table, /^2 .* 20\.0 .* 10\.0 /m);
    assert.match(table, /knee: 2 initiators \(not reached\)/);
  });
});
