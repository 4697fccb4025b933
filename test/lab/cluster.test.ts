import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { makeClient, unary } from '../../common/clients.js';
import { parseMountinfo } from '../../common/filesystems.js';
import { isWithin } from '../../common/validate.js';
import type { GuestRecord, GuestStatus } from '../../coordinator/cluster.js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { RunEventBus } from '../../coordinator/events.js';
import type { LabFile, LabOptions } from '../../lab/lab.js';
import { clusterLabPlan } from '../../lab/plan.js';
import { eventually, labClientCredentials, needsRoot, runner, TEST_LAB, testLab } from '../support/lab.js';

/**
 * A virtual cluster's storage in the lab, end to end: a lab of 2 dom0 hosts and 4 guests
 * (`vcstor lab up --dom0 2 --guests 4`), every guest given its disk by its own method and
 * left there; `vcstor status` finds every piece; provisioning the same plan again changes
 * nothing (the data written stays); `vcstor teardown` leaves nothing, and again does nothing.
 * Run as root: node --test --test-concurrency=1 dist/test/lab/cluster.test.js
 */
const CLI = fileURLToPath(new URL('../../cli/cli.js', import.meta.url));
const LAB: LabOptions = { ...TEST_LAB, dom0: 2, guests: 4 };
/** guest0, guest1 on host0; guest2, guest3 on host1 (clusterLabPlan's blocks). */
const METHODS = ['iscsi', 'phy-iscsi', 'file-local', 'file-iscsi'];
const exec = promisify(execFile);

describe('a cluster of 2 dom0 x 2 guests in the lab: provision, status, provision again, teardown', { skip: needsRoot }, () => {
  const lab = testLab();
  let record: LabFile;
  let scratch: string;
  let bus: RunEventBus;

  before(async () => {
    await lab.down(LAB.name, LAB.dir);
    record = await lab.up(LAB);
    scratch = await mkdtemp(path.join(tmpdir(), 'vcstor-cluster-'));
    bus = await RunEventBus.connect({ servers: record.natsUrl, name: 'cluster test' });
  });
  after(async () => {
    await bus?.close();
    await lab.down(LAB.name, LAB.dir);
    await rm(scratch, { recursive: true, force: true });
  });

  /** Everything the agents or the machine still hold, on every host of the lab. */
  async function leftovers(): Promise<string[]> {
    const credentials = labClientCredentials(record);
    const of = (role: string) => record.hosts.filter((h) => h.role === role);
    const storages = of('storage').map((h) => [h.name, makeClient('storage', h.agentAddress, credentials)] as const);
    const dom0s = of('dom0').map((h) => [h.name, makeClient('dom0', h.agentAddress, credentials)] as const);
    const guests = of('guest').map((h) => [h.name, makeClient('guest', h.agentAddress, credentials)] as const);
    const T = { timeoutMs: 10_000 };
    try {
      const out: string[] = [];
      for (const [name, s] of storages) {
        out.push(...(await unary(s, s.ListVolumes, {}, T)).volumes.map((v) => `${name} volume ${v.name}`));
        out.push(...(await unary(s, s.ListIscsiTargets, {}, T)).targets.map((t) => `${name} target ${t.iqn}`));
        out.push(...(await unary(s, s.ListNfsExports, {}, T)).exports.map((e) => `${name} export ${e.exportPath}`));
      }
      for (const [name, d] of dom0s) {
        out.push(...(await unary(d, d.ListIscsiSessions, {}, T)).sessions.map((x) => `${name} session ${x.target?.iqn}`));
        out.push(...(await unary(d, d.ListDomains, {}, T)).domains.filter((x) => x.state === 'DOMAIN_STATE_RUNNING').map((x) => `${name} domain ${x.name}`));
        out.push(...(await unary(d, d.ListImages, {}, T)).images.map((i) => `${name} image ${i.location?.path}`));
        out.push(...(await unary(d, d.ListFilesystems, {}, T)).mounts.map((m) => `${name} mount ${m.mountpoint}`));
      }
      for (const [name, g] of guests) {
        out.push(...(await unary(g, g.ListIscsiSessions, {}, T)).sessions.map((x) => `${name} session ${x.target?.iqn}`));
        out.push(...(await unary(g, g.ListFilesystems, {}, T)).mounts.map((m) => `${name} mount ${m.mountpoint}`));
      }
      out.push(...parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8')).filter((m) => isWithin(LAB.dir, m.mountpoint)).map((m) => `mount ${m.mountpoint}`));
      out.push(...(await runner.run('pgrep', ['-f', 'qemu-storage-daemon'], { okExitCodes: [0, 1] })).stdout.split('\n').filter(Boolean).map((p) => `qsd ${p}`));
      return out;
    } finally {
      for (const [, c] of [...storages, ...dom0s, ...guests]) c.close();
    }
  }

  /** `vcstor ARGS --runs-dir RUNS`: its exit code and output. */
  async function cli(runsDir: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await exec(process.execPath, [CLI, ...args, '--runs-dir', runsDir], { maxBuffer: 16 * 2 ** 20 });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  }

  it('every guest keeps its disk; status finds every piece; a second provision changes nothing; teardown leaves nothing, twice', async () => {
    // What a fresh lab holds (nothing, as the campaign test finds): teardown must come back to it.
    const baseline = await leftovers();
    const runsDir = path.join(scratch, 'runs');
    const planFile = path.join(scratch, 'cluster.json');
    const plan = clusterLabPlan(record, 'ci-cluster', { methods: METHODS, diskSize: '64MiB', sparse: true, concurrency: { overall: 4, perAgent: 2 }, stepTimeoutS: 300 });
    await writeFile(planFile, JSON.stringify(plan, null, 2));
    const text = await readFile(planFile, 'utf8');

    // Provision: every guest its method's disk, left in place.
    const coordinator = new Coordinator({ runsDir, log: pino({ level: 'silent' }), publisher: bus });
    const { run, created } = await coordinator.submit(text, { source: 'cluster.json' });
    assert.ok(created);
    assert.equal(run.runId, 'cl-ci-cluster', 'the run is named after the plan');
    assert.equal(run.kind, 'provision');
    const first = await coordinator.wait(run.runId);
    const failed = (await coordinator.store.events(run.runId)).filter((e) => e.state === 'failed').map((e) => `${e.stepId}: ${e.message}`);
    assert.equal(first.state, 'succeeded', failed.join('\n') || first.error);
    const records = (await coordinator.results(run.runId)).measurements;
    assert.deepEqual(records.map((m) => [m.guest, m.method, (m.result as unknown as GuestRecord).state, (m.result as unknown as GuestRecord).dom0.name]).sort(), [
      ['guest0', 'iscsi', 'provisioned', 'host0'],
      ['guest1', 'phy-iscsi', 'provisioned', 'host0'],
      ['guest2', 'file-local', 'provisioned', 'host1'],
      ['guest3', 'file-iscsi', 'provisioned', 'host1'],
    ]);
    assert.deepEqual(Object.keys(await coordinator.store.undo(run.runId)).sort(), ['guest0', 'guest1', 'guest2', 'guest3'], 'journaled per guest');
    const held = (await leftovers()).filter((l) => !baseline.includes(l));
    assert.equal(held.filter((l) => / volume /.test(l)).length, 3, `iscsi, phy-iscsi and file-iscsi each have a volume: ${held.join(', ')}`);
    // The lab's dom0 hosts share one sandbox root: every dom0 lists every running domain.
    const domains = [...new Set(held.filter((l) => / domain /.test(l)).map((l) => l.replace(/^\S+ /, '')))].sort();
    assert.deepEqual(domains, ['domain guest1', 'domain guest2', 'domain guest3'], 'a domain for each guest with a VBD (the iscsi guest logs in itself)');
    for (const g of ['guest0', 'guest1', 'guest2', 'guest3']) assert.ok(held.some((l) => l.startsWith(`${g} mount `)), `${g} has its filesystem mounted: ${held.join(', ')}`);

    // Data written into every guest's filesystem (its mounts are the machine's too).
    const marks = records.map((m) => path.join((m.result as unknown as GuestRecord).guestMountpoint!, 'cluster-test-mark'));
    for (const mark of marks) await writeFile(mark, `${mark}\n`);

    // Status: every piece there, said by the agents.
    const status = await cli(runsDir, 'status', run.runId, '--json');
    assert.equal(status.code, 0, status.stderr || status.stdout);
    const guests = (JSON.parse(status.stdout) as { guests: GuestStatus[] }).guests;
    assert.deepEqual(guests.map((g) => [g.guest, g.state, g.method, g.intact]), [
      ['guest0', 'provisioned', 'iscsi', true],
      ['guest1', 'provisioned', 'phy-iscsi', true],
      ['guest2', 'provisioned', 'file-local', true],
      ['guest3', 'provisioned', 'file-iscsi', true],
    ]);
    for (const g of guests) assert.ok(g.pieces.length >= 3 && g.pieces.every((p) => p.present === true), `${g.guest}: ${JSON.stringify(g.pieces)}`);
    const human = await cli(runsDir, 'status', 'ci-cluster');
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /guest3: provisioned file-iscsi on host1, from storage0: .* — intact/);

    // Provision again: the same run, nothing changed, the data still there.
    const undo = await coordinator.store.undo(run.runId);
    const again = await coordinator.submit(text, { source: 'cluster.json' });
    assert.ok(again.created && again.afterSeq > 0, 'run again, its events after the first run\'s');
    const second = await coordinator.wait(run.runId);
    assert.equal(second.state, 'succeeded', second.error);
    const events = await coordinator.store.events(run.runId, again.afterSeq);
    assert.deepEqual(events.filter((e) => e.stepId.startsWith('guest/') && e.state === 'succeeded').map((e) => e.message.split(':')[0]), ['unchanged', 'unchanged', 'unchanged', 'unchanged']);
    assert.deepEqual(await coordinator.store.undo(run.runId), undo, 'the journal is as it was');
    assert.deepEqual((await coordinator.results(run.runId)).measurements, records, 'the records are as they were');
    for (const mark of marks) assert.equal(await readFile(mark, 'utf8'), `${mark}\n`, 'the data written stays');
    const stored = await coordinator.store.events(run.runId);
    assert.deepEqual(stored.map((e) => e.seq), stored.map((_, i) => i + 1), 'the runs\' events are numbered 1..N');
    // On NATS too, in order: the first run's events, and the second's after them.
    const replay = async (afterSeq: number) => {
      const out: string[] = [];
      for await (const e of bus.watch(run.runId, { afterSeq })) out.push(`${e.seq} ${e.stepId} ${e.state}`);
      return out;
    };
    const line = (e: { seq: number; stepId: string; state: string }) => `${e.seq} ${e.stepId} ${e.state}`;
    assert.deepEqual(await replay(0), stored.filter((e) => e.seq <= again.afterSeq).map(line));
    assert.deepEqual(await replay(again.afterSeq), stored.filter((e) => e.seq > again.afterSeq).map(line));

    // Teardown (the CLI, as an operator runs it): nothing left, and again nothing to do.
    const down = await cli(runsDir, 'teardown', run.runId);
    assert.equal(down.code, 0, `${down.stdout}\n${down.stderr}`);
    assert.match(down.stdout, /torn down, nothing left provisioned/);
    let left: string[] = [];
    await eventually('nothing left', async () => (left = await leftovers()).length === baseline.length, 20_000).catch(() => undefined);
    assert.deepEqual(left, baseline, 'nothing left after teardown');
    for (const mark of marks) await assert.rejects(stat(mark), 'the marks went with the filesystems');
    assert.deepEqual(await coordinator.store.undo(run.runId), {}, 'the journal is empty');
    assert.equal((await coordinator.get(run.runId)).kind, 'teardown');
    const downAgain = await cli(runsDir, 'teardown', run.runId);
    assert.equal(downAgain.code, 0, downAgain.stderr || downAgain.stdout);
    assert.match(downAgain.stdout, /nothing is provisioned/);
    const after = await cli(runsDir, 'status', run.runId, '--json');
    assert.deepEqual((JSON.parse(after.stdout) as { guests: GuestStatus[] }).guests.map((g) => g.state), ['not-provisioned', 'not-provisioned', 'not-provisioned', 'not-provisioned']);
  });
});
