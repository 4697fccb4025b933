import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { unary } from '../../common/clients.js';
import { isRunning } from '../../common/processes.js';
import type { LabFile } from '../../lab/lab.js';
import { provisionMethod, type MethodTarget } from '../../coordinator/methods.js';
import { FaultTally, settledLeftovers } from '../support/faults.js';
import { eventually, needsRoot, runner, TEST_LAB, testLab } from '../support/lab.js';
import { labMethodTarget } from '../support/methods.js';

/**
 * Fault suite: tgtd and nfs-ganesha killed with SIGKILL and started again (empty: a
 * restarted tgtd knows no targets) while an initiator is logged in and a filesystem
 * on it is mounted. The storage agent must put its exports back by itself; the
 * initiator's session must be reported as it is; I/O must work again afterwards and
 * data written before the fault must still be there.
 */

const MIB = 1024 * 1024;
/** How long I/O may take to come back after the daemon restarts (agent reconcile 1 s + reconnect). */
const IO_DEADLINE_MS = 30_000;

describe('fault suite: target and NFS daemons restarted under a logged-in initiator', { skip: needsRoot }, () => {
  const lab = testLab();
  const tally = new FaultTally('faults-daemons');
  let record: LabFile;
  let target: MethodTarget;

  before(async () => {
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
    record = await lab.up(TEST_LAB);
    target = labMethodTarget(record, TEST_LAB, { prefix: 'fd', sizeBytes: 32 * MIB, sparse: true, timeoutMs: 30_000 });
  });
  after(async () => {
    tally.print();
    for (const c of [target?.storage, target?.dom0, target?.guest]) c?.close();
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
  });

  /** Write `bytes` of random data to `file` and fsync it, within the I/O deadline; its sha256. */
  async function writeSynced(file: string, bytes: number): Promise<string> {
    const data = randomBytes(bytes);
    const source = path.join(tmpdir(), `vcstor-faults-${randomBytes(4).toString('hex')}.bin`);
    await writeFile(source, data);
    try {
      // dd in a child: a write stuck in the kernel must not hang the test process, and
      // its timeout (SIGKILL) is the deadline.
      await runner.run('dd', [`if=${source}`, `of=${file}`, 'bs=1M', 'conv=fsync', 'status=none'], { timeoutMs: IO_DEADLINE_MS });
    } finally {
      await rm(source, { force: true });
    }
    return createHash('sha256').update(data).digest('hex');
  }
  const sha = async (file: string) => createHash('sha256').update(await readFile(file)).digest('hex');

  /** SIGKILL a lab daemon and start it again through `lab up` (it converges: only the dead one). */
  async function restartDaemon(name: 'tgtd' | 'ganesha'): Promise<number> {
    const proc = record.processes.find((p) => p.name === name)!;
    process.kill(proc.pid, 'SIGKILL');
    for (let i = 0; i < 100 && (await isRunning(proc)); i++) await new Promise((r) => setTimeout(r, 20));
    const started = Date.now();
    record = await lab.up(TEST_LAB);
    assert.notEqual(record.processes.find((p) => p.name === name)!.pid, proc.pid, `${name} restarted`);
    return Date.now() - started;
  }

  it('tgtd restarted under the guest\'s session: the agent re-exports, the session comes back, I/O resumes, data kept', async (t) => {
    const provisioned = await provisionMethod('iscsi', target);
    try {
      const before = path.join(provisioned.guestMountpoint, 'before.bin');
      const beforeSum = await writeSynced(before, 4 * MIB);
      const iqn = `iqn.2026-11.org.vcstor.lab:${provisioned.volume}`;
      const restartMs = await restartDaemon('tgtd');
      // The storage agent's reconcile loop puts the target back (ACL, CHAP, LUN)...
      await eventually('the target back on the restarted tgtd', async () => (await unary(target.storage, target.storage.ListIscsiTargets, {}, { timeoutMs: 5000 })).targets.some((x) => x.iqn === iqn), 15_000);
      // ...and the guest's initiator logs in again by itself: the target lists it.
      const reconnectStarted = Date.now();
      await eventually('the guest\'s session back on the target', async () => {
        const found = (await unary(target.storage, target.storage.ListIscsiTargets, {}, { timeoutMs: 5000 })).targets.find((x) => x.iqn === iqn);
        return (found?.sessions ?? []).some((s) => s.initiatorIqn === target.guestInitiatorIqn);
      }, IO_DEADLINE_MS);
      const reconnectMs = Date.now() - reconnectStarted;
      const sessions = (await unary(target.guest, target.guest.ListIscsiSessions, {}, { timeoutMs: 5000 })).sessions.filter((s) => s.target?.iqn === iqn);
      assert.deepEqual(sessions.map((s) => s.state), ['ISCSI_SESSION_STATE_LOGGED_IN'], 'the guest reports its one session logged in, as the target sees it');
      const afterSum = await writeSynced(path.join(provisioned.guestMountpoint, 'after.bin'), 4 * MIB);
      assert.equal(await sha(path.join(provisioned.guestMountpoint, 'after.bin')), afterSum);
      assert.equal(await sha(before), beforeSum, 'data written before the restart is intact');
      const outcome = `tgtd back in ${restartMs} ms, target re-exported and the guest's session re-established ${reconnectMs} ms later, I/O resumed, data intact`;
      t.diagnostic(outcome);
      await provisioned.teardown();
      const left = await settledLeftovers(record);
      tally.record('kill -9 tgtd under a logged-in guest session (iscsi method, fs mounted)', outcome, left.length, 0);
      assert.deepEqual(left, []);
    } finally {
      await provisioned.teardown().catch(() => undefined);
    }
  });

  it('ganesha restarted under dom0\'s NFS-backed image in use: exports back, I/O resumes, data kept', async (t) => {
    const provisioned = await provisionMethod('file-nfs', target);
    try {
      const before = path.join(provisioned.guestMountpoint, 'before.bin');
      const beforeSum = await writeSynced(before, 4 * MIB);
      const restartMs = await restartDaemon('ganesha');
      await eventually('the export listed again', async () => (await unary(target.storage, target.storage.ListNfsExports, {}, { timeoutMs: 5000 })).exports.length === 1, 15_000);
      const ioStarted = Date.now();
      const afterSum = await writeSynced(path.join(provisioned.guestMountpoint, 'after.bin'), 4 * MIB);
      const ioMs = Date.now() - ioStarted;
      assert.equal(await sha(path.join(provisioned.guestMountpoint, 'after.bin')), afterSum);
      assert.equal(await sha(before), beforeSum, 'data written before the restart is intact');
      const outcome = `ganesha back in ${restartMs} ms, export listed, a 4 MiB synced write through libnfs took ${ioMs} ms, data intact`;
      t.diagnostic(outcome);
      await provisioned.teardown();
      const left = await settledLeftovers(record);
      tally.record('kill -9 ganesha under an image in use over NFS (file-nfs method, fs mounted)', outcome, left.length, 0);
      assert.deepEqual(left, []);
    } finally {
      await provisioned.teardown().catch(() => undefined);
    }
  });
});
