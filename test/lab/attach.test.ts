import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeClient, unary, type StorageClient, type Dom0Client, type GuestClient } from '../../common/clients.js';
import type { CreateImageResponse__Output } from '../../common/generated/vcstor/v1/CreateImageResponse.js';
import type { LabFile } from '../../lab/lab.js';
import { eventually, labClientCredentials, needsRoot, runner, TEST_LAB, testLab } from '../support/lab.js';

const MIB = 1024 * 1024;
const T = { timeoutMs: 30_000 };
const PREFIX = 'iqn.2026-11.org.vcstor.lab';
const CHAP = { username: 'alice', password: 'secretpass12' };

describe('dom0 and guest agents: idempotent calls, truthful sessions, streamed images', { skip: needsRoot }, () => {
  const lab = testLab();
  let record: LabFile;
  let storage: StorageClient;
  let dom0: Dom0Client;
  let guest: GuestClient;
  let images: string;
  let guestMnt: string;
  let target: { portal: string; iqn: string; lun: number };

  before(async () => {
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
    record = await lab.up(TEST_LAB);
    const credentials = labClientCredentials(record);
    const host = (role: string) => record.hosts.find((h) => h.role === role)!;
    storage = makeClient('storage', host('storage').agentAddress, credentials);
    dom0 = makeClient('dom0', host('dom0').agentAddress, credentials);
    guest = makeClient('guest', host('guest').agentAddress, credentials);
    images = path.join(TEST_LAB.dir, 'hosts', 'host0', 'images');
    guestMnt = path.join(TEST_LAB.dir, 'hosts', 'guest0', 'mnt');
    await unary(storage, storage.CreateVolume, { name: 'lun', sizeBytes: 32 * MIB, provisioning: 'PROVISIONING_SPARSE' }, T);
    const exported = await unary(storage, storage.ExportIscsi, { volume: 'lun', allowedInitiators: [`${PREFIX}:guest0`], chap: CHAP }, T);
    target = { portal: `${host('storage').address}:3260`, iqn: exported.target!.iqn, lun: 0 };
  });
  after(async () => {
    for (const c of [storage, dom0, guest]) c?.close();
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
  });

  it('iSCSI login and logout are idempotent', async () => {
    const first = await unary(guest, guest.IscsiLogin, { target, chap: CHAP }, T);
    assert.equal(first.alreadyLoggedIn, false);
    assert.match(first.session!.devicePath, /^\/dev\/loop\d+$/);
    assert.equal(first.session!.sizeBytes, 32 * MIB);
    const second = await unary(guest, guest.IscsiLogin, { target, chap: CHAP }, T);
    assert.equal(second.alreadyLoggedIn, true);
    assert.equal(second.session!.devicePath, first.session!.devicePath);
    const { targets } = await unary(storage, storage.ListIscsiTargets, {}, T);
    assert.equal(targets[0]!.sessions.length, 1, 'one session on the target, not two');
    assert.equal((await unary(guest, guest.IscsiLogout, { target }, T)).wasLoggedIn, true);
    assert.equal((await unary(guest, guest.IscsiLogout, { target }, T)).wasLoggedIn, false);
    assert.deepEqual((await unary(guest, guest.ListIscsiSessions, {}, T)).sessions, []);
  });

  it('a refused login leaves nothing behind and says why', async () => {
    await assert.rejects(unary(guest, guest.IscsiLogin, { target, chap: { username: 'alice', password: 'wrongpass1234' } }, T), /PERMISSION_DENIED|refused the login: .*Authentication failure/);
    await assert.rejects(unary(guest, guest.IscsiLogin, { target, initiatorIqn: `${PREFIX}:stranger`, chap: CHAP }, T), /not on its ACL/);
    assert.deepEqual((await unary(guest, guest.ListIscsiSessions, {}, T)).sessions, []);
    const qsd = await runner.run('pgrep', ['-f', 'qemu-storage-daemon'], { okExitCodes: [0, 1] });
    assert.equal(qsd.stdout.trim(), '', 'no daemon left');
  });

  it('a dead initiator daemon shows as a broken session, and logout cleans it', async () => {
    await unary(guest, guest.IscsiLogin, { target, chap: CHAP }, T);
    const pid = (await runner.run('pgrep', ['-f', 'qemu-storage-daemon.*guest0'])).stdout.trim();
    process.kill(Number(pid), 'SIGKILL');
    await eventually('the session to show as broken', async () => {
      const { sessions } = await unary(guest, guest.ListIscsiSessions, {}, T);
      return sessions.length === 1 && sessions[0]!.state === 'ISCSI_SESSION_STATE_BROKEN' && /not running/.test(sessions[0]!.detail);
    });
    assert.equal((await unary(guest, guest.IscsiLogout, { target }, T)).wasLoggedIn, true);
    assert.deepEqual((await unary(guest, guest.ListIscsiSessions, {}, T)).sessions, []);
    const loops = await runner.run('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE']);
    assert.doesNotMatch(loops.stdout, new RegExp(TEST_LAB.dir), 'no loop device left on the dead FUSE file');
  });

  it('filesystems: mkfs, mount, unmount are idempotent; usage is reported', async () => {
    const { session } = await unary(guest, guest.IscsiLogin, { target, chap: CHAP }, T);
    const device = session!.devicePath;
    assert.equal((await unary(guest, guest.MakeFilesystem, { device }, T)).alreadyExisted, false);
    const again = await unary(guest, guest.MakeFilesystem, { device }, T);
    assert.equal(again.alreadyExisted, true);
    assert.match(again.uuid, /^[0-9a-f-]{36}$/);
    await assert.rejects(unary(guest, guest.MakeFilesystem, { device, fsType: 'xfs' }, T), /already has a ext4 filesystem; set force/);
    const mountpoint = path.join(guestMnt, 'fs');
    const mounted = await unary(guest, guest.MountFilesystem, { device, mountpoint }, T);
    assert.equal(mounted.alreadyMounted, false);
    assert.ok(mounted.mount!.usage!.sizeBytes > 20 * MIB && mounted.mount!.usage!.availableBytes > 0);
    assert.equal((await unary(guest, guest.MountFilesystem, { device, mountpoint }, T)).alreadyMounted, true);
    assert.equal((await unary(guest, guest.ListFilesystems, {}, T)).mounts.filter((m) => m.mountpoint === mountpoint).length, 1);
    assert.ok((await unary(guest, guest.GetFilesystemUsage, { mountpoint }, T)).usage!.inodesTotal > 0);
    assert.equal((await unary(guest, guest.UnmountFilesystem, { mountpoint }, T)).wasMounted, true);
    assert.equal((await unary(guest, guest.UnmountFilesystem, { mountpoint }, T)).wasMounted, false);
    await unary(guest, guest.IscsiLogout, { target }, T);
  });

  it('CreateImage streams progress while zero-filling, is idempotent, and a cancel leaves no partial file', async () => {
    const location = { path: path.join(images, 'big.img') };
    const messages: CreateImageResponse__Output[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = dom0.CreateImage({ location, sizeBytes: 512 * MIB }, { deadline: Date.now() + 60_000 });
      call.on('data', (m: CreateImageResponse__Output) => messages.push(m));
      call.on('error', reject);
      call.on('end', resolve);
    });
    const progress = messages.filter((m) => m.progress).map((m) => m.progress!);
    const result = messages.find((m) => m.result)?.result;
    assert.ok(result?.created, 'one result, last');
    assert.equal(messages.at(-1)!.result !== null, true);
    assert.ok(result!.image!.allocatedBytes >= 512 * MIB, 'zero-filled: every block allocated');
    if (progress.length > 0) {
      assert.ok(progress.every((p, i) => i === 0 || p.bytesDone >= progress[i - 1]!.bytesDone), 'progress only grows');
      assert.ok(progress.every((p) => p.bytesTotal === 512 * MIB && p.phase === 'zero-fill'));
    }
    const again = messages.length > 0 && (await collect(dom0, location, 512 * MIB));
    assert.equal(again && again.result?.created, false, 'the same image again: created=false');
    await assert.rejects(collect(dom0, location, 256 * MIB), /exists with 536870912 bytes/);

    // Cancel a fill part-way: the partial file goes.
    const doomed = { path: path.join(images, 'doomed.img') };
    await new Promise<void>((resolve) => {
      const call = dom0.CreateImage({ location: doomed, sizeBytes: 2048 * MIB }, { deadline: Date.now() + 60_000 });
      call.on('data', () => call.cancel());
      call.on('error', () => resolve());
      call.on('end', () => resolve());
    });
    await eventually('the partial file to go', async () => (await readdir(images)).every((f) => !f.includes('doomed')));
    assert.equal(await stat(doomed.path).then(() => true, () => false), false);
    assert.equal((await unary(dom0, dom0.DeleteImage, { location }, T)).deleted, true);
    assert.equal((await unary(dom0, dom0.DeleteImage, { location }, T)).deleted, false);
  });

  it('domains and VBDs: config, start, attach, detach, stop are idempotent', async () => {
    const image = { path: path.join(images, 'disk.img') };
    await collect(dom0, image, 16 * MIB, 'PROVISIONING_SPARSE');
    const config = { name: 'guest0', memoryMib: 256, vcpus: 1, bootloader: 'pygrub', vifs: [{ bridge: 'xenbr0' }], disks: [] };
    const written = await unary(dom0, dom0.WriteDomainConfig, { config }, T);
    assert.equal(written.changed, true);
    assert.match(written.content, /name = "guest0"/);
    assert.equal((await unary(dom0, dom0.WriteDomainConfig, { config }, T)).changed, false);
    assert.equal((await unary(dom0, dom0.StartDomain, { name: 'guest0' }, T)).alreadyRunning, false);
    assert.equal((await unary(dom0, dom0.StartDomain, { name: 'guest0' }, T)).alreadyRunning, true);
    assert.equal((await unary(dom0, dom0.ListDomains, {}, T)).domains.find((d) => d.name === 'guest0')!.state, 'DOMAIN_STATE_RUNNING');
    const spec = { source: { image }, vdev: 'xvdc' };
    const attached = await unary(dom0, dom0.AttachVbd, { domain: 'guest0', spec }, T);
    assert.equal(attached.alreadyAttached, false);
    assert.equal((await unary(dom0, dom0.AttachVbd, { domain: 'guest0', spec }, T)).alreadyAttached, true);
    const { devices } = await unary(guest, guest.ListBlockDevices, {}, T);
    assert.ok(devices.some((d) => d.origin === 'vbd:xvdc' && d.path === attached.vbd!.guestDevice), 'the guest sees the VBD');
    await assert.rejects(unary(dom0, dom0.DeleteImage, { location: image }, T), /attached to guest0 as xvdc/);
    assert.equal((await unary(dom0, dom0.DetachVbd, { domain: 'guest0', vdev: 'xvdc' }, T)).wasAttached, true);
    assert.equal((await unary(dom0, dom0.DetachVbd, { domain: 'guest0', vdev: 'xvdc' }, T)).wasAttached, false);
    assert.equal((await unary(dom0, dom0.StopDomain, { name: 'guest0' }, T)).wasRunning, true);
    assert.equal((await unary(dom0, dom0.StopDomain, { name: 'guest0' }, T)).wasRunning, false);
    await assert.rejects(unary(dom0, dom0.StartDomain, { name: 'nosuch' }, T), /no config for domain nosuch/);
    await unary(dom0, dom0.DeleteImage, { location: image }, T);
  });
});

/** Run CreateImage to its end; the result message. */
function collect(dom0: Dom0Client, location: { path: string }, sizeBytes: number, provisioning: 'PROVISIONING_SPARSE' | 'PROVISIONING_PREALLOCATED' = 'PROVISIONING_PREALLOCATED'): Promise<CreateImageResponse__Output> {
  return new Promise((resolve, reject) => {
    let last: CreateImageResponse__Output | undefined;
    const call = dom0.CreateImage({ location, sizeBytes, provisioning }, { deadline: Date.now() + 60_000 });
    call.on('data', (m: CreateImageResponse__Output) => (last = m));
    call.on('error', (err: grpc.ServiceError) => reject(new Error(err.details)));
    call.on('end', () => (last ? resolve(last) : reject(new Error('no result'))));
  });
}
