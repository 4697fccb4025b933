import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { expectCode } from '../support/errors.js';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeClient, unary, type StorageClient } from '../../common/clients.js';
import type { LabFile } from '../../lab/lab.js';
import { isRunning, stopProcess } from '../../common/processes.js';
import { eventually, inHost, labClientCredentials, needsRoot, TEST_LAB, testLab } from '../support/lab.js';

const MIB = 1024 * 1024;
const PREFIX = 'iqn.2026-11.org.vcstor.lab';
const GUEST_IQN = `${PREFIX}:guest0`;
const CHAP = { username: 'alice', password: 'secretpass12' };


describe('agent-storage in the lab: volumes, tgt, ganesha', { skip: needsRoot }, () => {
  const lab = testLab();
  let record: LabFile;
  let storage: StorageClient;
  let storageIp: string;
  let exportRoot: string;
  const T = { timeoutMs: 30_000 };

  /** libiscsi's readcapacity from a lab host: the LUN size, or the login failure. */
  const readCapacity = async (host: string, initiator: string, url: string) => {
    const result = await inHost(record, host, 'iscsi-readcapacity16', ['-i', initiator, url], { okExitCodes: [0, 10] });
    const size = /^Total size:(\d+)/m.exec(result.stdout);
    return size ? Number(size[1]) : `refused: ${(result.stderr + result.stdout).trim()}`;
  };
  const lunUrl = (volume: string, chap = CHAP, extra = '') => `iscsi://${chap.username}%${chap.password}@${storageIp}/${PREFIX}:${volume}/1${extra}`;

  before(async () => {
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
    record = await lab.up(TEST_LAB);
    const host = record.hosts.find((h) => h.role === 'storage')!;
    storageIp = host.address;
    exportRoot = path.join(TEST_LAB.dir, 'hosts', host.name, 'exports');
    storage = makeClient('storage', host.agentAddress, labClientCredentials(record));
  });
  after(async () => {
    storage?.close();
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
  });

  it('creates volumes: zero-filled or sparse, idempotent, clashing specs refused', async () => {
    const full = await unary(storage, storage.CreateVolume, { name: 'full', sizeBytes: 64 * MIB }, T);
    assert.equal(full.created, true);
    assert.equal(full.volume!.sizeBytes, 64 * MIB);
    assert.equal(full.volume!.allocatedBytes, 64 * MIB, 'zero-filled: every block allocated');
    const sparse = await unary(storage, storage.CreateVolume, { name: 'thin', sizeBytes: 64 * MIB, provisioning: 'PROVISIONING_SPARSE' }, T);
    assert.ok(sparse.volume!.allocatedBytes < MIB, `sparse: ${sparse.volume!.allocatedBytes} bytes allocated`);
    const again = await unary(storage, storage.CreateVolume, { name: 'full', sizeBytes: 64 * MIB }, T);
    assert.equal(again.created, false);
    assert.equal(again.volume!.createdUnixMs, full.volume!.createdUnixMs);
    await expectCode(unary(storage, storage.CreateVolume, { name: 'full', sizeBytes: 32 * MIB }, T), 'ALREADY_EXISTS', /exists with 67108864 bytes/);
    await expectCode(unary(storage, storage.CreateVolume, { name: 'thin', sizeBytes: 64 * MIB }, T), 'ALREADY_EXISTS', /sparse/);
    await expectCode(unary(storage, storage.CreateVolume, { name: 'huge', sizeBytes: 4 * 2 ** 40 }, T), 'INVALID_ARGUMENT', /more than pool default holds/);
    await expectCode(unary(storage, storage.CreateVolume, { name: 'x', sizeBytes: 64 * MIB, pool: 'other' }, T), 'NOT_FOUND', /no pool other/);
    const listed = await unary(storage, storage.ListVolumes, {}, T);
    assert.deepEqual(listed.volumes.map((v) => v.name), ['full', 'thin']);
    await expectCode(unary(storage, storage.GetVolume, { name: 'nope' }, T), 'NOT_FOUND', /no volume nope/);
    assert.equal((await unary(storage, storage.DeleteVolume, { name: 'thin' }, T)).deleted, true);
    assert.equal((await unary(storage, storage.DeleteVolume, { name: 'thin' }, T)).deleted, false, 'deleting what is gone succeeds');
  });

  it('exports over iSCSI: the allowed initiator with the right CHAP sees the volume; others are refused', async () => {
    const exported = await unary(storage, storage.ExportIscsi, { volume: 'full', allowedInitiators: [GUEST_IQN], chap: CHAP }, T);
    assert.equal(exported.created, true);
    assert.equal(exported.target!.iqn, `${PREFIX}:full`);
    assert.deepEqual(exported.target!.luns.map((l) => [l.lun, l.volume, l.sizeBytes]), [[1, 'full', 64 * MIB]]);
    assert.equal(await readCapacity('guest0', GUEST_IQN, lunUrl('full')), 64 * MIB);
    assert.match(String(await readCapacity('guest0', GUEST_IQN, lunUrl('full', { username: 'alice', password: 'wrongpass1234' }))), /Authentication failure\(513\)/);
    assert.match(String(await readCapacity('guest0', GUEST_IQN, `iscsi://${storageIp}/${PREFIX}:full/1`)), /Authentication failure\(513\)/);
    assert.match(String(await readCapacity('guest0', `${PREFIX}:intruder`, lunUrl('full'))), /Target not found\(515\)/);

    const again = await unary(storage, storage.ExportIscsi, { volume: 'full', allowedInitiators: [GUEST_IQN], chap: CHAP }, T);
    assert.equal(again.created, false);
    await expectCode(unary(storage, storage.ExportIscsi, { volume: 'full', allowedInitiators: [`${PREFIX}:other`], chap: CHAP }, T), 'ALREADY_EXISTS', /already exported/);
    await expectCode(unary(storage, storage.ExportIscsi, { volume: 'ghost', allowedInitiators: [GUEST_IQN], chap: CHAP }, T), 'NOT_FOUND', /no volume ghost/);

    const { targets } = await unary(storage, storage.ListIscsiTargets, {}, T);
    assert.equal(targets.filter((t) => t.iqn === `${PREFIX}:full`).length, 1);
    const target = targets[0]!;
    assert.deepEqual([target.allowedInitiators, target.chap, target.chapUsername, target.driver], [[GUEST_IQN], true, 'alice', 'tgt']);
    assert.doesNotMatch(JSON.stringify(targets), /secretpass12/, 'no secret in listings');
  });

  it('restricts by address, and supports mutual CHAP', async () => {
    await unary(storage, storage.CreateVolume, { name: 'byaddr', sizeBytes: 16 * MIB, provisioning: 'PROVISIONING_SPARSE' }, T);
    const guestIp = record.hosts.find((h) => h.name === 'guest0')!.address;
    const mutual = { ...CHAP, mutualUsername: 'storage0', mutualPassword: 'targetsecret99' };
    await unary(storage, storage.ExportIscsi, { volume: 'byaddr', allowedAddresses: [guestIp], chap: mutual }, T);
    const withMutual = lunUrl('byaddr', CHAP, '?target_user=storage0&target_password=targetsecret99');
    assert.equal(await readCapacity('guest0', `${PREFIX}:any`, withMutual), 16 * MIB, 'any IQN from the allowed address');
    assert.match(String(await readCapacity('host0', `${PREFIX}:any`, withMutual)), /Target not found\(515\)/, 'another address is refused');
    const badMutual = lunUrl('byaddr', CHAP, '?target_user=storage0&target_password=notthetarget1');
    assert.match(String(await readCapacity('guest0', `${PREFIX}:any`, badMutual)), /CHAP_R|Authentication/i, 'the initiator refuses a target that fails mutual CHAP');
    await expectCode(
      unary(storage, storage.ExportIscsi, { volume: 'full2', allowAnyInitiator: true, chap: { username: 'alice', password: 'anotherpass12' } }, T),
      'NOT_FOUND',
      /no volume full2/,
    );
  });

  it('shows sessions, protects a target in use, and unexports idempotently', async () => {
    const perf = inHost(record, 'guest0', 'timeout', ['-s', 'INT', '4', 'iscsi-perf', '-i', GUEST_IQN, lunUrl('full')], { okExitCodes: [0, 1, 124, 130] });
    await eventually('a session on the target', async () => {
      const { targets } = await unary(storage, storage.ListIscsiTargets, {}, T);
      return targets.some((t) => t.iqn === `${PREFIX}:full` && t.sessions.some((s) => s.initiatorIqn === GUEST_IQN));
    });
    await expectCode(unary(storage, storage.UnexportIscsi, { volume: 'full' }, T), 'FAILED_PRECONDITION', /initiators logged in: .*guest0/);
    await expectCode(unary(storage, storage.DeleteVolume, { name: 'full' }, T), 'FAILED_PRECONDITION', /in use \(iscsi:/);
    await perf;
    assert.equal((await unary(storage, storage.UnexportIscsi, { volume: 'full' }, T)).removed, true);
    assert.equal((await unary(storage, storage.UnexportIscsi, { volume: 'full' }, T)).removed, false);
    assert.match(String(await readCapacity('guest0', GUEST_IQN, lunUrl('full'))), /Target not found/);
  });

  it('a zero-filled volume stays zero-filled when a filesystem is made on it (mkfs does not discard)', async () => {
    await unary(storage, storage.CreateVolume, { name: 'prealloc', sizeBytes: 64 * MIB }, T);
    const rule = { match: TEST_LAB.subnet, squash: 'NFS_SQUASH_NONE' as const };
    await unary(storage, storage.ExportNfs, { volume: 'prealloc', makeFilesystem: 'ext4', clients: [rule] }, T);
    const { volume } = await unary(storage, storage.GetVolume, { name: 'prealloc' }, T);
    await unary(storage, storage.UnexportNfs, { volume: 'prealloc' }, T);
    assert.equal((await unary(storage, storage.DeleteVolume, { name: 'prealloc' }, T)).deleted, true);
    // Every block still allocated (a discard would have punched holes); ext4 may add an
    // extent-tree block of its own on top.
    assert.ok(volume!.allocatedBytes >= 64 * MIB, `allocated after mkfs: ${volume!.allocatedBytes} of ${64 * MIB} bytes`);
  });

  it('exports over NFS: a volume filesystem made on request, and a directory, to listed clients only', async () => {
    await unary(storage, storage.CreateVolume, { name: 'share', sizeBytes: 32 * MIB, provisioning: 'PROVISIONING_SPARSE' }, T);
    const rule = { match: TEST_LAB.subnet, squash: 'NFS_SQUASH_NONE' as const };
    await expectCode(unary(storage, storage.ExportNfs, { volume: 'share', clients: [rule] }, T), 'FAILED_PRECONDITION', /has no filesystem; set make_filesystem/);
    const made = await unary(storage, storage.ExportNfs, { volume: 'share', makeFilesystem: 'ext4', clients: [rule] }, T);
    assert.equal(made.created, true);
    const sharePath = made.export!.exportPath;
    assert.equal(sharePath, path.join(exportRoot, 'share'));
    assert.equal((await unary(storage, storage.ExportNfs, { volume: 'share', makeFilesystem: 'ext4', clients: [rule] }, T)).created, false);

    await inHost(record, 'guest0', 'nfs-cp', ['/etc/hostname', `nfs://${storageIp}${sharePath}/written-over-nfs`]);
    const listing = await inHost(record, 'guest0', 'nfs-ls', [`nfs://${storageIp}${sharePath}`]);
    assert.match(listing.stdout, /written-over-nfs/);
    assert.equal(await readFile(path.join(sharePath, 'written-over-nfs'), 'utf8'), await readFile('/etc/hostname', 'utf8'), 'the bytes landed on the volume');

    const guestIp = record.hosts.find((h) => h.name === 'guest0')!.address;
    const dir = path.join(exportRoot, 'scratch');
    await unary(storage, storage.ExportNfs, { directory: dir, clients: [{ match: guestIp, access: 'NFS_ACCESS_READ_ONLY' }] }, T);
    assert.equal((await stat(dir)).isDirectory(), true);
    await inHost(record, 'guest0', 'nfs-ls', [`nfs://${storageIp}${dir}`]);
    const refused = await inHost(record, 'host0', 'nfs-ls', [`nfs://${storageIp}${dir}`], { okExitCodes: [0, 1, 243, 255] });
    assert.notEqual(refused.exitCode, 0, 'a client not on the list is refused');
    const unexported = await inHost(record, 'guest0', 'nfs-ls', [`nfs://${storageIp}${path.join(exportRoot, 'never-exported')}`], { okExitCodes: [0, 1, 243, 255] });
    assert.notEqual(unexported.exitCode, 0, 'an unexported path is refused');
    // The first export kept serving through the second's reload.
    assert.match((await inHost(record, 'guest0', 'nfs-ls', [`nfs://${storageIp}${sharePath}`])).stdout, /written-over-nfs/);

    const { exports } = await unary(storage, storage.ListNfsExports, {}, T);
    assert.deepEqual(exports.map((e) => [e.exportPath, e.volume, e.driver]).sort(), [[sharePath, 'share', 'ganesha'], [dir, '', 'ganesha']].sort());
    assert.equal((await unary(storage, storage.UnexportNfs, { exportPath: dir }, T)).removed, true);
    assert.equal((await unary(storage, storage.UnexportNfs, { exportPath: dir }, T)).removed, false);
    const gone = await inHost(record, 'guest0', 'nfs-ls', [`nfs://${storageIp}${dir}`], { okExitCodes: [0, 1, 243, 255] });
    assert.notEqual(gone.exitCode, 0);
  });

  it('a killed agent comes back with its exports, listed once, and can remove them', async () => {
    await unary(storage, storage.CreateVolume, { name: 'durable', sizeBytes: 16 * MIB, provisioning: 'PROVISIONING_SPARSE' }, T);
    await unary(storage, storage.ExportIscsi, { volume: 'durable', allowedInitiators: [GUEST_IQN], chap: CHAP }, T);
    const agent = (await lab.status(TEST_LAB.dir)).processes.find((p) => p.host === 'storage0' && p.name === 'agent')!;
    process.kill(agent.pid, 'SIGKILL');
    await eventually('the agent to die', async () => !(await isRunning(agent)));
    record = await lab.up(TEST_LAB);
    const { targets } = await unary(storage, storage.ListIscsiTargets, {}, T);
    assert.equal(targets.filter((t) => t.iqn === `${PREFIX}:durable`).length, 1);
    assert.equal(await readCapacity('guest0', GUEST_IQN, lunUrl('durable')), 16 * MIB);
    const { exports } = await unary(storage, storage.ListNfsExports, {}, T);
    assert.equal(exports.filter((e) => e.volume === 'share').length, 1);
    assert.equal((await unary(storage, storage.UnexportIscsi, { volume: 'durable' }, T)).removed, true);
  });

  it('re-applies its exports when tgtd restarts empty', async () => {
    await unary(storage, storage.ExportIscsi, { volume: 'durable', allowedInitiators: [GUEST_IQN], chap: CHAP }, T);
    const tgtd = (await lab.status(TEST_LAB.dir)).processes.find((p) => p.name === 'tgtd')!;
    await stopProcess(tgtd, 0, 'SIGKILL');
    record = await lab.up(TEST_LAB); // starts a fresh, empty tgtd
    await eventually('the agent to re-create the target', async () => (await readCapacity('guest0', GUEST_IQN, lunUrl('durable'))) === 16 * MIB, 15_000);
    const { targets } = await unary(storage, storage.ListIscsiTargets, {}, T);
    assert.deepEqual(targets.map((t) => t.iqn).sort(), [`${PREFIX}:byaddr`, `${PREFIX}:durable`], 'every recorded target is back, once');
    assert.equal(targets.find((t) => t.iqn === `${PREFIX}:durable`)!.chapUsername, 'alice');
  });

  it('keeps serving its NFS exports across a ganesha restart', async () => {
    const sharePath = path.join(exportRoot, 'share');
    const ganesha = (await lab.status(TEST_LAB.dir)).processes.find((p) => p.name === 'ganesha')!;
    await stopProcess(ganesha, 0, 'SIGKILL');
    record = await lab.up(TEST_LAB); // a fresh ganesha reads the config the agent keeps
    await eventually('the export to be served again', async () => /written-over-nfs/.test((await inHost(record, 'guest0', 'nfs-ls', [`nfs://${storageIp}${sharePath}`])).stdout));
    assert.equal((await unary(storage, storage.ListNfsExports, {}, T)).exports.filter((e) => e.exportPath === sharePath).length, 1);
  });

  it('force-deletes a volume in use, taking its exports down first', async () => {
    assert.equal((await unary(storage, storage.DeleteVolume, { name: 'durable', force: true }, T)).deleted, true);
    assert.equal((await unary(storage, storage.DeleteVolume, { name: 'share', force: true }, T)).deleted, true);
    const { targets } = await unary(storage, storage.ListIscsiTargets, {}, T);
    assert.equal(targets.some((t) => t.iqn === `${PREFIX}:durable`), false);
    assert.deepEqual((await unary(storage, storage.ListNfsExports, {}, T)).exports, []);
  });
});
