import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { unary } from '../../common/clients.js';
import { parseMountinfo } from '../../common/filesystems.js';
import { isWithin } from '../../common/validate.js';
import type { LabFile } from '../../lab/lab.js';
import { provisionMethod, type MethodName, type MethodTarget, type StepTiming } from '../../coordinator/methods.js';
import { inHost, needsRoot, runner, TEST_LAB, testLab } from '../support/lab.js';
import { labMethodTarget } from '../support/methods.js';

const MIB = 1024 * 1024;
/** Where the guest writes the pattern (MiB offsets), and how: O_DIRECT in 1 MiB and 3 MiB writes, and buffered. */
const WRITES = [
  { offsetMib: 0, lengthMib: 3, blockMib: 1, flag: 'oflag=direct' },
  { offsetMib: 9, lengthMib: 3, blockMib: 3, flag: 'oflag=direct' },
  { offsetMib: 21, lengthMib: 3, blockMib: 1, flag: 'conv=fsync' },
];

describe('the seven methods: set up through agents, data written in the guest reads back byte for byte', { skip: needsRoot }, () => {
  const lab = testLab();
  let record: LabFile;
  let target: MethodTarget;
  let scratch: string;
  let pattern: Buffer;
  const timings: Array<{ method: string; setup: number; teardown: number; steps: StepTiming[] }> = [];

  before(async () => {
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
    record = await lab.up(TEST_LAB);
    scratch = await mkdtemp(path.join(tmpdir(), 'vcstor-methods-'));
    pattern = randomBytes(3 * MIB);
    await writeFile(path.join(scratch, 'pattern'), pattern);
    target = labMethodTarget(record, TEST_LAB);
  });
  after(async () => {
    for (const c of [target?.storage, target?.dom0, target?.guest]) c?.close();
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
    await rm(scratch, { recursive: true, force: true });
    if (timings.length > 0) {
      console.log('# method setup/teardown in the lab (ms):');
      for (const t of timings) console.log(`#   ${t.method.padEnd(11)} setup ${String(t.setup).padStart(5)}  teardown ${String(t.teardown).padStart(5)}   ${t.steps.map((s) => `${s.step} ${s.ms}`).join(', ')}`);
    }
  });

  /** Mount each layer read-only (an image inside the previous layer's filesystem), read `file`, undo. */
  async function readThrough(layers: string[], file: string): Promise<Buffer> {
    const mounted: string[] = [];
    try {
      let current = layers[0]!;
      for (let i = 0; ; i++) {
        const mountpoint = path.join(scratch, `layer${i}`);
        await runner.run('mkdir', ['-p', mountpoint]);
        await runner.run('mount', ['-o', 'ro,loop,noload', current, mountpoint]);
        mounted.push(mountpoint);
        if (i + 1 >= layers.length) return await readFile(path.join(mountpoint, file));
        current = path.join(mountpoint, layers[i + 1]!);
      }
    } finally {
      for (const m of mounted.reverse()) await runner.run('umount', ['-d', m]);
    }
  }

  /** Mount `file` read-only, run `use` on the mountpoint, unmount. */
  async function withMounted<T>(file: string, use: (dir: string) => Promise<T>): Promise<T> {
    const mountpoint = path.join(scratch, 'alloc');
    await runner.run('mkdir', ['-p', mountpoint]);
    await runner.run('mount', ['-o', 'ro,loop,noload', file, mountpoint]);
    try {
      return await use(mountpoint);
    } finally {
      await runner.run('umount', ['-d', mountpoint]);
    }
  }

  /** What the method left on the machine: mounts, loop devices and daemons of the lab. */
  async function leftovers(): Promise<string[]> {
    const mounts = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8')).filter((m) => isWithin(TEST_LAB.dir, m.mountpoint)).map((m) => `mount ${m.mountpoint}`);
    const loops = (await runner.run('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'])).stdout.split('\n').filter((l) => l.includes(TEST_LAB.dir)).map((l) => `loop ${l.trim()}`);
    const qsd = (await runner.run('pgrep', ['-f', `qemu-storage-daemon.*${TEST_LAB.dir}`], { okExitCodes: [0, 1] })).stdout.split('\n').filter(Boolean).map((p) => `qsd ${p}`);
    const sessions = [
      ...(await unary(target.guest, target.guest.ListIscsiSessions, {}, { timeoutMs: 5000 })).sessions.map((x) => `guest session ${x.target?.iqn}`),
      ...(await unary(target.dom0, target.dom0.ListIscsiSessions, {}, { timeoutMs: 5000 })).sessions.map((x) => `dom0 session ${x.target?.iqn}`),
    ];
    const targets = (await unary(target.storage, target.storage.ListIscsiTargets, {}, { timeoutMs: 5000 })).targets.map((x) => `target ${x.iqn}`);
    return [...mounts, ...loops, ...qsd, ...sessions, ...targets];
  }

  const writable: MethodName[] = ['file-local', 'phy-local', 'file-iscsi', 'phy-iscsi', 'iscsi', 'file-nfs'];
  for (const method of writable) {
    it(method, async () => {
      const started = performance.now();
      const provisioned = await provisionMethod(method, target);
      const setupMs = Math.round(performance.now() - started);
      const data = path.join(provisioned.guestMountpoint, 'data.bin');
      for (const w of WRITES) {
        const args = [`if=${path.join(scratch, 'pattern')}`, `of=${data}`, `bs=${w.blockMib}M`, `seek=${w.offsetMib / w.blockMib}`, 'conv=notrunc', w.flag, 'status=none'];
        await inHost(record, 'guest0', 'dd', args);
      }
      await inHost(record, 'guest0', 'sync', [data]);
      const tornDownAt = performance.now();
      const teardown = await provisioned.teardown({ keepData: true });
      timings.push({ method, setup: setupMs, teardown: Math.round(performance.now() - tornDownAt), steps: [...provisioned.setup, ...teardown] });
      assert.deepEqual(await leftovers(), [], 'teardown leaves no mount, loop device, daemon or session');

      // Read back from what the storage server (or dom0) keeps: the pool file or dom0's image.
      const layers = provisioned.volume
        ? [path.join(TEST_LAB.dir, 'hosts', 'storage0', 'pool', `${provisioned.volume}.img`), ...(provisioned.image ? ['guest.img'] : [])]
        : [provisioned.image!.path!];
      // Zero-filled stays zero-filled: every mkfs on the way (storage, dom0, guest) left
      // each layer's file fully allocated (a discard would have punched holes in it).
      const outer = await stat(layers[0]!);
      assert.ok(outer.blocks * 512 >= outer.size, `${method}: ${layers[0]} fully allocated after mkfs (${outer.blocks * 512} of ${outer.size} bytes)`);
      if (layers.length > 1) {
        const nested = await withMounted(layers[0]!, (dir) => stat(path.join(dir, layers[1]!)));
        assert.ok(nested.blocks * 512 >= nested.size, `${method}: the image inside the volume fully allocated after the guest's mkfs (${nested.blocks * 512} of ${nested.size} bytes)`);
      }
      const readBack = await readThrough(layers, 'data.bin');
      for (const w of WRITES) {
        const got = readBack.subarray(w.offsetMib * MIB, (w.offsetMib + w.lengthMib) * MIB);
        assert.equal(Buffer.compare(got, pattern), 0, `${method}: the ${w.lengthMib} MiB at ${w.offsetMib} MiB (${w.blockMib} MiB writes, ${w.flag}) read back intact`);
      }
      assert.ok(readBack.subarray(3 * MIB, 9 * MIB).every((b) => b === 0), 'the gap between writes stayed zero');

      await provisioned.removeData();
      assert.deepEqual((await unary(target.storage, target.storage.ListVolumes, {}, { timeoutMs: 5000 })).volumes, [], 'the volume is gone');
    });
  }

  it('nfs: the guest mounts the export with its user-space NFS client; a file it writes is on the server\'s filesystem; nothing is left', async () => {
    const provisioned = await provisionMethod('nfs', target);
    const mount = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8')).find((m) => m.mountpoint === provisioned.guestMountpoint);
    assert.equal(mount?.fsType, 'fuse.vcstor-nfs', `the guest's NFS mount: ${JSON.stringify(mount)}`);
    assert.match(provisioned.nfsClient?.client ?? '', /guest/);
    // Written in the guest's namespace with O_DIRECT, read on the server's own filesystem.
    await inHost(record, 'guest0', 'dd', [`if=${path.join(scratch, 'pattern')}`, `of=${path.join(provisioned.guestMountpoint, 'data.bin')}`, 'bs=1M', 'oflag=direct']);
    const exported = (await unary(target.storage, target.storage.ListNfsExports, {}, { timeoutMs: 5000 })).exports.find((e) => e.volume === provisioned.volume);
    assert.ok(exported, 'the volume is exported');
    assert.equal(Buffer.compare(await readFile(path.join(exported.exportPath, 'data.bin')), pattern), 0, 'the server has the bytes the guest wrote');
    await provisioned.teardown();
    assert.deepEqual((await unary(target.storage, target.storage.ListVolumes, {}, { timeoutMs: 5000 })).volumes.map((v) => v.name), [], 'the volume is gone');
    assert.deepEqual(await leftovers(), []);
    const clients = (await runner.run('pgrep', ['-f', `vcstor-nfs-fuse.*${TEST_LAB.subnet.replace(/\.0\/24$/, '')}`], { okExitCodes: [0, 1] })).stdout.trim();
    assert.equal(clients, '', 'no NFS client process left');
  });
});
