import assert from 'node:assert/strict';
import { vcstorError } from '../support/errors.js';
import { access, mkdir, mkdtemp, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { LvmVolumes } from '../../agent-storage/drivers/lvm.js';
import { ExecaCommandRunner } from '../../common/runner.js';

/**
 * The LVM driver against real LVM, without device-mapper (LAB.md, "LVM without
 * device-mapper"): a sparse file on a loop device as the one PV, a private
 * LVM_SYSTEM_DIR whose lvm.conf sees only that device and never activates, and the
 * driver's own loop devices over the LVs' extents. Needs root (losetup, pvcreate).
 */

const MiB = 1024 * 1024;
const VG = 'vcstortest';
const runner = new ExecaCommandRunner();
const signal = new AbortController().signal;
const needsRoot = process.getuid?.() !== 0 ? 'needs root (losetup, pvcreate)' : false;

interface LoopDevice {
  name: string;
  'back-file': string | null;
}

async function loopDevices(): Promise<LoopDevice[]> {
  const { stdout } = await runner.run('losetup', ['--json', '--list', '-O', 'NAME,BACK-FILE']);
  // losetup prints nothing when no loop device is set up.
  return stdout.trim() === '' ? [] : (JSON.parse(stdout) as { loopdevices: LoopDevice[] }).loopdevices;
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}


describe('LvmVolumes on real LVM without device-mapper', { skip: needsRoot }, () => {
  let loopsBefore: LoopDevice[] = [];
  let dir = '';
  let pvFile = '';
  let lvmSystemDir = '';
  /** The PV's loop device while it is set up; cleared once detached. */
  let pvLoop: string | undefined;
  let volumeGroupMade = false;
  let volumes: LvmVolumes;
  const lvmEnv = () => ({ env: { LVM_SYSTEM_DIR: lvmSystemDir } });

  /**
   * Remove everything the suite made, each step on its own so one failure does not keep
   * the rest; safe to call twice. Returns what could not be removed.
   */
  async function teardown(): Promise<string[]> {
    const problems: string[] = [];
    const step = async (what: string, action: () => Promise<unknown>) => {
      try {
        await action();
      } catch (err) {
        problems.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    if (pvLoop !== undefined) {
      const device = pvLoop;
      // Loop devices over the LVs (the driver's): only ours can be backed by our PV.
      await step('detach LV loop devices', async () => {
        for (const loop of await loopDevices()) if (loop['back-file'] === device) await runner.run('losetup', ['--detach', loop.name]);
      });
      if (volumeGroupMade) {
        await step('vgremove', () => runner.run('vgremove', ['--yes', '--force', VG], lvmEnv()));
        await step('pvremove', () => runner.run('pvremove', ['--yes', device], lvmEnv()));
        volumeGroupMade = false;
      }
      await step('detach the PV loop device', () => runner.run('losetup', ['--detach', device]));
      pvLoop = undefined;
    }
    if (dir !== '') await step('remove the directory', () => rm(dir, { recursive: true, force: true }));
    return problems;
  }

  before(async () => {
    loopsBefore = await loopDevices();
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-lvm-lab-'));
    pvFile = path.join(dir, 'pv.img');
    await writeFile(pvFile, '');
    await truncate(pvFile, 256 * MiB);
    pvLoop = (await runner.run('losetup', ['--find', '--show', pvFile])).stdout.trim();
    assert.match(pvLoop, /^\/dev\/loop\d+$/);
    lvmSystemDir = path.join(dir, 'lvm');
    await mkdir(lvmSystemDir);
    // Only our loop device is scanned (never the host's disks, nor the LV loop devices
    // the driver makes, which would show a PV's contents twice), and nothing activates.
    await writeFile(
      path.join(lvmSystemDir, 'lvm.conf'),
      [
        'devices {',
        `  filter = [ "a|^${pvLoop}$|", "r|.*|" ]`,
        '  use_devicesfile = 0',
        '  obtain_device_list_from_udev = 0',
        '}',
        'global {',
        '  activation = 0',
        '}',
        'activation {',
        '  udev_sync = 0',
        '  udev_rules = 0',
        '}',
        '',
      ].join('\n'),
    );
    await runner.run('pvcreate', [pvLoop], lvmEnv());
    volumeGroupMade = true;
    await runner.run('vgcreate', [VG, pvLoop], lvmEnv());
    volumes = new LvmVolumes({ runner, volumeGroup: VG, lvmSystemDir, activation: false });
  });

  after(async () => {
    const problems = await teardown();
    assert.deepEqual(problems, [], 'clean-up after the suite');
  });

  it('creates volumes rounded to whole extents, idempotently', async () => {
    // A volume before vol1, so vol1 does not start at extent 0 and its offset matters.
    const filler = await volumes.create({ name: 'filler', sizeBytes: 4 * MiB, provisioning: 'preallocated' }, { signal });
    assert.equal(filler.created, true);
    const first = await volumes.create({ name: 'vol1', sizeBytes: 10 * MiB + 1, provisioning: 'preallocated' }, { signal });
    assert.equal(first.created, true);
    assert.equal(first.volume.sizeBytes, 12 * MiB);
    assert.equal(first.volume.allocatedBytes, 12 * MiB);
    assert.equal(first.volume.pool, VG);
    assert.equal(first.volume.driver, 'lvm');
    assert.equal(first.volume.blockDevice, '');
    assert.ok(Math.abs(first.volume.createdUnixMs - Date.now()) < 5 * 60_000, `createdUnixMs ${first.volume.createdUnixMs} is now`);
    const again = await volumes.create({ name: 'vol1', sizeBytes: 12 * MiB, provisioning: 'preallocated' }, { signal });
    assert.equal(again.created, false);
    assert.deepEqual(again.volume, first.volume);
  });

  it('refuses another size (ALREADY_EXISTS), more than the free space (RESOURCE_EXHAUSTED) and sparse (FAILED_PRECONDITION)', async () => {
    await assert.rejects(volumes.create({ name: 'vol1', sizeBytes: 20 * MiB, provisioning: 'preallocated' }, { signal }), vcstorError('ALREADY_EXISTS', /already exists with 12582912 bytes/));
    await assert.rejects(volumes.create({ name: 'huge', sizeBytes: 512 * MiB, provisioning: 'preallocated' }, { signal }), vcstorError('RESOURCE_EXHAUSTED'));
    await assert.rejects(volumes.create({ name: 'thin', sizeBytes: 4 * MiB, provisioning: 'sparse' }, { signal }), vcstorError('FAILED_PRECONDITION'));
    assert.equal(await volumes.get('huge', signal), undefined, 'nothing left by the refused create');
  });

  it('leaves LVs without the vcstor tag alone', async () => {
    await runner.run('lvcreate', ['--yes', '--name', 'foreign', '--size', `${4 * MiB}b`, '-Zn', '--activate', 'n', VG], lvmEnv());
    await assert.rejects(volumes.create({ name: 'foreign', sizeBytes: 4 * MiB, provisioning: 'preallocated' }, { signal }), vcstorError('ALREADY_EXISTS', /not managed by vcstor/));
    await assert.rejects(volumes.delete('foreign', signal), vcstorError('FAILED_PRECONDITION', /not managed by vcstor/));
    assert.equal(await volumes.get('foreign', signal), undefined);
  });

  it('lists its volumes and the capacity', async () => {
    const listed = await volumes.list(signal);
    assert.deepEqual(listed.map((v) => `${v.name}:${v.sizeBytes}`), [`filler:${4 * MiB}`, `vol1:${12 * MiB}`]);
    const { totalBytes, freeBytes } = await volumes.capacity(signal);
    assert.equal(totalBytes - freeBytes, 20 * MiB, 'filler, vol1 and foreign take 5 extents');
  });

  it('maps a block device over the LV extents: data lands at the right place of the PV file', async () => {
    const device = await volumes.attachBlockDevice('vol1', signal);
    assert.match(device, /^\/dev\/loop\d+$/);
    assert.equal(await volumes.attachBlockDevice('vol1', signal), device, 'the same device again');
    assert.equal(await volumes.backingPath('vol1', signal), device);
    assert.equal((await volumes.get('vol1', signal))?.blockDevice, device);
    assert.equal((await runner.run('blockdev', ['--getsize64', device])).stdout.trim(), String(12 * MiB));

    // Where vol1 must be: the PV's data area starts at pe_start; filler has extent 0.
    const peStart = Number(
      (await runner.run('pvs', ['--noheadings', '--units', 'b', '--nosuffix', '-o', 'pe_start', pvLoop ?? ''], lvmEnv())).stdout.trim(),
    );
    assert.ok(Number.isSafeInteger(peStart) && peStart > 0, `pe_start ${peStart}`);
    const lvStartInFile = peStart + 4 * MiB;

    const head = randomBytes(64 * 1024);
    const tail = randomBytes(4096);
    const handle = await open(device, 'r+');
    try {
      await handle.write(head, 0, head.length, MiB);
      await handle.write(tail, 0, tail.length, 12 * MiB - tail.length);
      await handle.sync();
      const readBack = Buffer.alloc(head.length);
      await handle.read(readBack, 0, readBack.length, MiB);
      assert.ok(readBack.equals(head), 'read back through the LV device');
    } finally {
      await handle.close();
    }
    // Flush the PV's loop device too, so the file below it has the data.
    const pvHandle = await open(pvLoop ?? '', 'r+');
    await pvHandle.sync().finally(() => pvHandle.close());

    const pvBytes = await readFile(pvFile);
    assert.ok(pvBytes.subarray(lvStartInFile + MiB, lvStartInFile + MiB + head.length).equals(head), 'head pattern at pe_start + 1 extent + 1 MiB of the PV file');
    const lvEndInFile = lvStartInFile + 12 * MiB;
    assert.ok(pvBytes.subarray(lvEndInFile - tail.length, lvEndInFile).equals(tail), 'tail pattern in the last 4 KiB of the LV');
    assert.ok(pvBytes.subarray(lvEndInFile, lvEndInFile + MiB).every((b) => b === 0), 'nothing written past the end of the LV');
    assert.ok(pvBytes.subarray(lvStartInFile - MiB, lvStartInFile).every((b) => b === 0), 'nothing written into filler');
  });

  it('detaches, idempotently', async () => {
    await volumes.detachBlockDevice('vol1', signal);
    assert.deepEqual((await loopDevices()).filter((d) => d['back-file'] === pvLoop), [], 'no loop device over the PV');
    assert.equal((await volumes.get('vol1', signal))?.blockDevice, '');
    await volumes.detachBlockDevice('vol1', signal);
    await volumes.detachBlockDevice('never-made', signal);
  });

  it('neither detaches nor deletes while someone holds the device open (losetup -d only sets autoclear)', async () => {
    const device = await volumes.attachBlockDevice('vol1', signal);
    const holder = await open(device, 'r');
    try {
      await assert.rejects(volumes.detachBlockDevice('vol1', signal), vcstorError('FAILED_PRECONDITION', /still in use/));
      await assert.rejects(volumes.delete('vol1', signal), vcstorError('FAILED_PRECONDITION', /still in use/));
      assert.ok(await volumes.get('vol1', signal), 'the LV is still there');
    } finally {
      await holder.close();
    }
    // The kernel removes an autoclear device when its last user closes it.
    for (let i = 0; i < 50 && (await loopDevices()).some((d) => d.name === device && d['back-file'] === pvLoop); i++) await sleep(100);
    assert.ok(!(await loopDevices()).some((d) => d['back-file'] === pvLoop), 'the device went away once closed');
  });

  it('deletes a mapped volume (unmapping it), idempotently', async () => {
    await volumes.attachBlockDevice('vol1', signal);
    assert.equal(await volumes.delete('vol1', signal), true);
    assert.equal(await volumes.delete('vol1', signal), false);
    assert.equal(await volumes.get('vol1', signal), undefined);
    assert.deepEqual((await volumes.list(signal)).map((v) => v.name), ['filler']);
    assert.deepEqual((await loopDevices()).filter((d) => d['back-file'] === pvLoop), []);
    assert.equal(await volumes.delete('filler', signal), true);
  });

  it('tears down without leaving a loop device, file or volume group behind', async () => {
    const device = pvLoop ?? '';
    assert.deepEqual(await teardown(), []);
    assert.equal(await exists(dir), false, `${dir} is gone`);
    const loopsAfter = await loopDevices();
    const known = new Set(loopsBefore.map((d) => `${d.name} ${d['back-file']}`));
    // Other suites may set up loop devices meanwhile; none may be ours.
    const ours = loopsAfter.filter((d) => !known.has(`${d.name} ${d['back-file']}`) && (d['back-file'] === device || (d['back-file'] ?? '').startsWith(`${dir}/`)));
    assert.deepEqual(ours, [], 'losetup -a has none of our devices');
    assert.ok(!loopsAfter.some((d) => d.name === device && d['back-file'] === pvFile), `${device} no longer maps ${pvFile}`);
  });
});
