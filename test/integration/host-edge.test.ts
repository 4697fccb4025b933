import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningAgent } from '../../common/agent.js';
import { makeClient, unary, type Dom0Client, type GuestClient } from '../../common/clients.js';
import { VcstorError } from '../../common/errors.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';
import type { VbdSpec } from '../../common/generated/vcstor/v1/VbdSpec.js';
import { startTestAgent } from '../support/agents.js';

const T = { timeoutMs: 5000 };
const IQN = 'iqn.2026-11.org.vcstor:vol0';
const TARGET = { portal: '198.51.100.10:3260', iqn: IQN, lun: 1 };

describe('dom0 and guest edges: bad input is refused before any command runs', () => {
  const recorder = new RecordingCommandRunner();
  let dom0Agent: RunningAgent;
  let guestAgent: RunningAgent;
  let dom0: Dom0Client;
  let guest: GuestClient;
  let imageRoot: string;
  let mountRoot: string;

  before(async () => {
    dom0Agent = await startTestAgent('dom0', {}, undefined, recorder);
    guestAgent = await startTestAgent('guest', {}, undefined, recorder);
    const credentials = grpc.credentials.createInsecure();
    dom0 = makeClient('dom0', dom0Agent.server.address, credentials);
    guest = makeClient('guest', guestAgent.server.address, credentials);
    const config = dom0Agent.runtime.config;
    imageRoot = config.role === 'dom0' ? config.dom0.imageRoots[0]! : '';
    mountRoot = guestAgent.runtime.config.role === 'guest' ? guestAgent.runtime.config.guest.mountRoot : '';
    recorder.calls.length = 0;
  });
  after(async () => {
    dom0.close();
    guest.close();
    await Promise.all([dom0Agent.stop(100), guestAgent.stop(100)]);
  });

  const refused = async (what: string, call: Promise<unknown>, pattern: RegExp) => {
    await assert.rejects(call, (err: unknown) => {
      assert.ok(err instanceof VcstorError, `${what}: ${String(err)}`);
      assert.equal(err.code, 'INVALID_ARGUMENT', `${what}: ${err.message}`);
      assert.match(err.message, pattern, what);
      return true;
    });
    assert.deepEqual(recorder.lines, [], `${what} ran no command`);
  };

  it('iSCSI login and logout', async () => {
    for (const client of [dom0, guest] as const) {
      const login = (request: Record<string, unknown>) => unary(client, client.IscsiLogin, { target: TARGET, ...request }, T);
      await refused('portal', login({ target: { ...TARGET, portal: '198.51.100.10:3260;reboot' } }), /target.portal: /);
      await refused('port', login({ target: { ...TARGET, portal: '198.51.100.10:70000' } }), /not a port/);
      await refused('iqn', login({ target: { ...TARGET, iqn: '$(reboot)' } }), /target.iqn: /);
      await refused('lun', login({ target: { ...TARGET, lun: 99_999 } }), /target.lun: /);
      await refused('initiator', login({ initiatorIqn: 'iqn.2026-11.org.x:a b' }), /initiator_iqn: /);
      await refused('chap user', login({ chap: { username: 'a b', password: 'secretpass12' } }), /chap.username: /);
      await refused('chap secret', login({ chap: { username: 'alice', password: 'short' } }), /chap.password: /);
      await refused('no target', login({ target: null }), /target: is required/);
      await refused('mrdsl', login({ sessionParams: { maxRecvDataSegmentLength: 100 } }), /session_params\.max_recv_data_segment_length: 100 /);
      await refused('logout iqn', unary(client, client.IscsiLogout, { target: { ...TARGET, iqn: 'IQN.BAD' } }, T), /target.iqn: /);
    }
  });

  it('filesystems and NFS mounts', async () => {
    const dom0Config = dom0Agent.runtime.config;
    const dom0MountRoot = dom0Config.role === 'dom0' ? dom0Config.dom0.mountRoot : '';
    for (const [client, root] of [[dom0, dom0MountRoot], [guest, mountRoot]] as const) {
      const mountRoot = root;
      await refused('device outside /dev', unary(client, client.MakeFilesystem, { device: '/etc/passwd' }, T), /device: .* is outside/);
      await refused('device ..', unary(client, client.MakeFilesystem, { device: '/dev/../etc/passwd' }, T), /'\.' or '\.\.' segments/);
      await refused('fs type', unary(client, client.MakeFilesystem, { device: '/dev/loop0', fsType: 'ext4; reboot' }, T), /fs_type: /);
      await refused('mkfs option', unary(client, client.MakeFilesystem, { device: '/dev/loop0', mkfsOptions: ['-E', 'root_owner=0:0; reboot'] }, T), /mkfs_options\[1\]: /);
      await refused('label', unary(client, client.MakeFilesystem, { device: '/dev/loop0', label: 'a-label-that-is-too-long' }, T), /label: /);
      await refused('mountpoint outside', unary(client, client.MountFilesystem, { device: '/dev/loop0', mountpoint: '/etc' }, T), /mountpoint: "\/etc" is outside/);
      await refused('mount option', unary(client, client.MountFilesystem, { device: '/dev/loop0', mountpoint: `${mountRoot}/x`, options: ['exec,suid'] }, T), /options\[0\]: /);
      await refused('nfs server', unary(client, client.MountNfs, { server: 'a;b', exportPath: '/srv/x', mountpoint: `${mountRoot}/n` }, T), /server: /);
      await refused('nfs version', unary(client, client.MountNfs, { server: '198.51.100.10', exportPath: '/srv/x', mountpoint: `${mountRoot}/n`, nfsVersion: 2 }, T), /nfs_version: /);
      await refused('unmount outside', unary(client, client.UnmountFilesystem, { mountpoint: '/' }, T), /mountpoint: /);
    }
  });

  it('images, VBDs and domain configs', async () => {
    const createImage = (request: Record<string, unknown>) =>
      new Promise<void>((resolve, reject) => {
        const call = dom0.CreateImage({ sizeBytes: 1 << 30, ...request }, { deadline: Date.now() + 5000 });
        call.on('data', () => undefined);
        call.on('error', (err: grpc.ServiceError) => reject(new VcstorError(err.code === grpc.status.INVALID_ARGUMENT ? 'INVALID_ARGUMENT' : 'INTERNAL', err.details)));
        call.on('end', () => resolve());
      });
    await refused('image outside', createImage({ location: { path: '/etc/shadow' } }), /location.path: .* is outside/);
    await refused('image size 0', createImage({ location: { path: `${imageRoot}/a.img` }, sizeBytes: 0 }), /size_bytes: 0 bytes is too small/);
    await refused('image size odd', createImage({ location: { path: `${imageRoot}/a.img` }, sizeBytes: (1 << 20) + 1 }), /multiple of 512/);
    await refused('image size huge', createImage({ location: { path: `${imageRoot}/a.img` }, sizeBytes: 2 ** 53 }), /too large/);
    await refused('nfs image name', createImage({ location: { nfsFile: { server: '198.51.100.10', exportPath: '/srv/v', fileName: '../x' } } }), /file_name: /);
    await refused('no location', createImage({}), /location: give a path or an nfs_file/);
    const vbd = (spec: Record<string, unknown>, domain = 'guest0') => unary(dom0, dom0.AttachVbd, { domain, spec: { vdev: 'xvdb', source: { blockDevice: '/dev/loop0' }, ...spec } }, T);
    await refused('domain', vbd({}, 'guest 0'), /domain: /);
    await refused('vdev', vbd({ vdev: 'xvdb;x' }), /spec.vdev: /);
    await refused('block device outside /dev', vbd({ source: { blockDevice: '/tmp/disk' } }), /block_device: /);
    await refused('block device as file', vbd({ kind: 'VBD_KIND_FILE' }), /a block device is attached as phy/);
    const config = { name: 'guest0', memoryMib: 256, vcpus: 1, bootloader: 'pygrub', disks: [] as VbdSpec[] };
    const write = (c: Record<string, unknown>) => unary(dom0, dom0.WriteDomainConfig, { config: { ...config, ...c } }, T);
    await refused('config name', write({ name: 'g"; extra="x' }), /config.name: /);
    await refused('memory', write({ memoryMib: 1 }), /config.memory_mib: /);
    await refused('vcpus', write({ vcpus: 0 }), /config.vcpus: /);
    await refused('type', write({ type: 'xen' }), /config.type: /);
    await refused('cmdline', write({ bootloader: undefined, kernel: { kernel: '/boot/vmlinuz', cmdline: 'root=/dev/xvda" extra="x' } }), /config.kernel.cmdline: /);
    await refused('mac', write({ vifs: [{ bridge: 'xenbr0', mac: 'zz:00:00:00:00:00' }] }), /config.vifs\[0\].mac: /);
    await refused('duplicate vdev', write({ disks: [{ vdev: 'xvdb', source: { blockDevice: '/dev/loop0' } }, { vdev: 'xvdb', source: { blockDevice: '/dev/loop1' } }] }), /xvdb is used twice/);
  });

  it('benchmarks are refused outside the mount root', async () => {
    const call = guest.RunBenchmark({ directory: '/', fio: { rw: 'write' } }, { deadline: Date.now() + 5000 });
    const status = await new Promise<grpc.ServiceError>((resolve) => {
      call.on('data', () => undefined);
      call.on('error', resolve);
    });
    assert.equal(status.code, grpc.status.INVALID_ARGUMENT);
    assert.deepEqual(recorder.lines, []);
  });
});
