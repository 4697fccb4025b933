import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunningAgent } from '../../common/agent.js';
import { makeClient, unary, type StorageClient, type Dom0Client, type GuestClient } from '../../common/clients.js';
import { VcstorError } from '../../common/errors.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';
import { startTestAgent } from '../support/agents.js';

/**
 * Each agent touches only what its config gives it: its pool or volume group, its
 * directories (symbolic links inside them included), its IQN prefix. Requests that try
 * to leave are refused before any command runs, and nothing outside changes.
 */

const T = { timeoutMs: 5000 };
const credentials = grpc.credentials.createInsecure();

describe('authorization: every path, name and IQN stays inside what the agent was given', () => {
  let scratch: string;
  let outside: string;
  const recorder = new RecordingCommandRunner();
  const agents: RunningAgent[] = [];
  let storage: StorageClient;
  let lvmStorage: StorageClient;
  let dom0: Dom0Client;
  let guest: GuestClient;
  let exportRoot: string;
  let imageRoot: string;
  let dom0Mount: string;
  let guestMount: string;

  before(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'vcstor-authz-'));
    // Another tenant's files, or the host's: reachable only through links planted inside the roots.
    outside = path.join(scratch, 'outside');
    await mkdir(outside);
    await writeFile(path.join(outside, 'victim.img'), 'another tenant\n');
    exportRoot = path.join(scratch, 'exports');
    imageRoot = path.join(scratch, 'images');
    dom0Mount = path.join(scratch, 'dom0-mnt');
    guestMount = path.join(scratch, 'guest-mnt');
    for (const root of [exportRoot, imageRoot, dom0Mount, guestMount]) {
      await mkdir(root, { recursive: true });
      await symlink(outside, path.join(root, 'link'));
    }
    await mkdir(path.join(imageRoot, 'subdir'));
    const storageAgent = await startTestAgent('storage', { storage: { iscsiTarget: { driver: 'tgt', tgtControlPort: 65_000, iqnPrefix: 'iqn.2026-11.org.tenant-a' }, nfsServer: { exportRoot, ganeshaConfig: path.join(scratch, 'ganesha.conf'), ganeshaPidFile: path.join(scratch, 'none.pid') }, volumes: { poolDir: path.join(scratch, 'pool') }, reconcileIntervalMs: 3_600_000 } }, undefined, recorder);
    const lvmAgent = await startTestAgent('storage', { storage: { volumes: { driver: 'lvm', volumeGroup: 'vg0' }, iscsiTarget: { tgtControlPort: 65_000 }, nfsServer: { exportRoot, ganeshaConfig: path.join(scratch, 'g2.conf'), ganeshaPidFile: path.join(scratch, 'none.pid') }, reconcileIntervalMs: 3_600_000 } }, undefined, recorder);
    const dom0Agent = await startTestAgent('dom0', { dom0: { iscsiInitiator: { driver: 'open-iscsi' }, imageRoots: [imageRoot], mountRoot: dom0Mount, hypervisor: { driver: 'sandbox', configDir: path.join(scratch, 'domains'), sandboxRoot: path.join(scratch, 'sandbox') } } }, undefined, recorder);
    const guestAgent = await startTestAgent('guest', { guest: { iscsiInitiator: { driver: 'open-iscsi' }, mountRoot: guestMount } }, undefined, recorder);
    agents.push(storageAgent, lvmAgent, dom0Agent, guestAgent);
    storage = makeClient('storage', storageAgent.server.address, credentials);
    lvmStorage = makeClient('storage', lvmAgent.server.address, credentials);
    dom0 = makeClient('dom0', dom0Agent.server.address, credentials);
    guest = makeClient('guest', guestAgent.server.address, credentials);
  });
  after(async () => {
    for (const c of [storage, lvmStorage, dom0, guest]) c?.close();
    await Promise.all(agents.map((a) => a.stop(100)));
    await rm(scratch, { recursive: true, force: true });
  });

  const refused = async (what: string, call: Promise<unknown>, code: string, pattern: RegExp) => {
    recorder.calls.length = 0;
    await assert.rejects(call, (err: unknown) => {
      assert.ok(err instanceof VcstorError, `${what}: ${String(err)}`);
      assert.equal(err.code, code, `${what}: ${err.message}`);
      assert.match(err.message, pattern, what);
      return true;
    });
    assert.deepEqual(recorder.lines, [], `${what} ran no command`);
  };

  const outsideUnchanged = async () => {
    assert.deepEqual((await readdir(outside)).sort(), ['victim.img']);
    assert.equal(await readFile(path.join(outside, 'victim.img'), 'utf8'), 'another tenant\n');
  };

  it('storage: target names only under the IQN prefix; only its own pool and volume group', async () => {
    const chap = { username: 'alice', password: 'secretpass12' };
    const exportIscsi = (targetIqn: string) => unary(storage, storage.ExportIscsi, { volume: 'v0', targetIqn, allowedInitiators: ['iqn.2026-11.org.tenant-a:host0'], chap }, T);
    for (const iqn of ['iqn.2026-11.org.tenant-b:v0', 'iqn.2026-11.org.tenant-ab:v0', 'iqn.2026-11.org.tenant-a', 'iqn.2026-11.org.tenant-a.sub:v0', 'eui.0123456789abcdef']) {
      await refused(`export as ${iqn}`, exportIscsi(iqn), 'INVALID_ARGUMENT', /target_iqn: .* is not under this agent's IQN prefix iqn\.2026-11\.org\.tenant-a:/);
      await refused(`unexport ${iqn}`, unary(storage, storage.UnexportIscsi, { targetIqn: iqn }, T), 'INVALID_ARGUMENT', /not under this agent's IQN prefix/);
    }
    // Under the prefix the request gets past the check (and finds no volume).
    await refused('own prefix', exportIscsi('iqn.2026-11.org.tenant-a:v0'), 'NOT_FOUND', /no volume v0/);
    await refused('other volume group', unary(lvmStorage, lvmStorage.CreateVolume, { name: 'v0', sizeBytes: 1 << 30, pool: 'vg1' }, T), 'NOT_FOUND', /no pool vg1 on this agent \(it has vg0\)/);
    await refused('other vg on delete', unary(lvmStorage, lvmStorage.DeleteVolume, { name: 'v0', pool: 'vg1' }, T), 'NOT_FOUND', /no pool vg1/);
    await refused('other vg on export', unary(lvmStorage, lvmStorage.ExportIscsi, { volume: 'v0', pool: 'vg1', allowAnyInitiator: true, chap }, T), 'NOT_FOUND', /no pool vg1/);
  });

  it('storage: NFS exports never leave the export root, through .., absolute paths or links', async () => {
    const clients = [{ match: '127.0.0.1' }];
    const exportNfs = (directory: string) => unary(storage, storage.ExportNfs, { directory, clients }, T);
    await refused('link', exportNfs(`${exportRoot}/link`), 'INVALID_ARGUMENT', /directory: .* leads outside the agent's configured directories through a symbolic link/);
    await refused('below a link', exportNfs(`${exportRoot}/link/new`), 'INVALID_ARGUMENT', /through a symbolic link/);
    await refused('dot-dot', exportNfs(`${exportRoot}/../outside`), 'INVALID_ARGUMENT', /'\.' or '\.\.' segments/);
    await refused('absolute outside', exportNfs(outside), 'INVALID_ARGUMENT', /is outside the agent's configured directories/);
    await refused('unexport through a link', unary(storage, storage.UnexportNfs, { exportPath: `${exportRoot}/link` }, T), 'INVALID_ARGUMENT', /through a symbolic link/);
    await outsideUnchanged();
  });

  it('dom0: images are made, deleted, listed and attached only inside the image roots', async () => {
    const createImage = (location: Record<string, unknown>, sizeBytes = 1 << 20) =>
      new Promise<void>((resolve, reject) => {
        const call = dom0.CreateImage({ location, sizeBytes }, { deadline: Date.now() + 5000 });
        call.on('data', () => undefined);
        call.on('error', (err: grpc.ServiceError) => reject(new VcstorError(err.code === grpc.status.INVALID_ARGUMENT ? 'INVALID_ARGUMENT' : 'INTERNAL', err.details)));
        call.on('end', () => resolve());
      });
    await refused('create through a link', createImage({ path: `${imageRoot}/link/new.img` }), 'INVALID_ARGUMENT', /location\.path: .* through a symbolic link/);
    await refused('delete through a link', unary(dom0, dom0.DeleteImage, { location: { path: `${imageRoot}/link/victim.img` } }, T), 'INVALID_ARGUMENT', /through a symbolic link/);
    await refused('list through a link', unary(dom0, dom0.ListImages, { directory: `${imageRoot}/link` }, T), 'INVALID_ARGUMENT', /through a symbolic link/);
    await refused('delete a directory', unary(dom0, dom0.DeleteImage, { location: { path: `${imageRoot}/subdir` } }, T), 'FAILED_PRECONDITION', /is not an image file/);
    const vbd = { vdev: 'xvdb', source: { image: { path: `${imageRoot}/link/victim.img` } }, kind: 'VBD_KIND_FILE' as const };
    await refused('attach through a link', unary(dom0, dom0.AttachVbd, { domain: 'guest0', spec: vbd }, T), 'INVALID_ARGUMENT', /spec\.source\.image\.path: .* through a symbolic link/);
    await refused('config disk through a link', unary(dom0, dom0.WriteDomainConfig, { config: { name: 'guest0', memoryMib: 256, vcpus: 1, bootloader: 'pygrub', disks: [vbd] } }, T), 'INVALID_ARGUMENT', /config\.disks\[0\]\.source\.image\.path: .* through a symbolic link/);
    await refused('detach a bad vdev', unary(dom0, dom0.DetachVbd, { domain: 'guest0', vdev: 'xvdb;reboot' }, T), 'INVALID_ARGUMENT', /vdev: .* is not a virtual device name/);
    // Export paths reach qemu's option syntax and libnfs URLs: no ',' or '?' gets there.
    for (const exportPath of ['/srv/x,driver=file,filename=/etc/shadow', '/srv/x?uid=0', '/srv/a b']) {
      await refused(`nfs export path ${exportPath}`, createImage({ nfsFile: { server: '127.0.0.1', exportPath, fileName: 'a.img' } }), 'INVALID_ARGUMENT', /nfs_file\.export_path: .* may hold only/);
      await refused(`mount export path ${exportPath}`, unary(dom0, dom0.MountNfs, { server: '127.0.0.1', exportPath, mountpoint: `${dom0Mount}/n` }, T), 'INVALID_ARGUMENT', /export_path: .* may hold only/);
    }
    await outsideUnchanged();
  });

  it('dom0 and guest: mountpoints and devices never lead outside through links', async () => {
    for (const [client, root] of [[dom0, dom0Mount], [guest, guestMount]] as const) {
      await refused('mount over a link', unary(client, client.MountFilesystem, { device: '/dev/loop0', mountpoint: `${root}/link` }, T), 'INVALID_ARGUMENT', /mountpoint: .* through a symbolic link/);
      await refused('unmount through a link', unary(client, client.UnmountFilesystem, { mountpoint: `${root}/link/x` }, T), 'INVALID_ARGUMENT', /through a symbolic link/);
      await refused('nfs mount over a link', unary(client, client.UnmountNfs, { mountpoint: `${root}/link` }, T), 'INVALID_ARGUMENT', /through a symbolic link/);
      await refused('component too long', unary(client, client.UnmountFilesystem, { mountpoint: `${root}/${'x'.repeat(300)}` }, T), 'INVALID_ARGUMENT', /component longer than 255 bytes/);
    }
    await refused('usage of nothing', unary(guest, guest.GetFilesystemUsage, { mountpoint: `${guestMount}/none` }, T), 'NOT_FOUND', /does not exist/);
    await outsideUnchanged();
  });
});
