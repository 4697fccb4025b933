import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import * as grpc from '@grpc/grpc-js';
import { checkHealth, unary } from '../../common/clients.js';
import { VcstorError } from '../../common/errors.js';
import { ExecaCommandRunner } from '../../common/runner.js';
import { Lab, type LabFile, type LabOptions } from '../../lab/lab.js';
import { vmConsole } from '../../lab/vm-lab.js';
import type { RunningVm } from '../../lab/vm.js';
import { METHODS, provisionMethod, type MethodTarget } from '../../coordinator/methods.js';
import { labMethodTarget } from '../support/methods.js';

/**
 * The VM tier for real: the storage server and the dom0 host (with the guest's agent)
 * are qemu guests with Debian's kernel, and their agents run the real-host drivers —
 * LVM on a virtual disk, LIO through targetcli, kernel nfsd, open-iscsi and the kernel
 * NFS client. Every method of the paper, `nfs` included, writes a random pattern in the
 * guest that is read back byte for byte on the storage server (or dom0) after teardown.
 * Minutes under TCG: runs only with VCSTOR_VM_TESTS=1.
 */

const VM_LAB: LabOptions = { name: 'vmt', subnet: '198.19.100.0/24', storage: 1, dom0: 1, guests: 1, dir: '/var/lib/vcstor/vm-lab-test', agentPort: 50051 };
const skip =
  process.env.VCSTOR_VM_TESTS !== '1'
    ? 'the VM tier boots qemu guests under TCG (minutes): set VCSTOR_VM_TESTS=1 to run it'
    : process.getuid?.() !== 0
      ? 'the VM tier needs root'
      : false;

const MIB = 2 ** 20;
/** Where and how the guest writes the pattern: O_DIRECT in 1 MiB and one 3 MiB write, and buffered. */
const WRITES = [
  { offsetMib: 0, lengthMib: 3, blockMib: 1, flag: 'oflag=direct' },
  { offsetMib: 9, lengthMib: 3, blockMib: 3, flag: 'oflag=direct' },
  { offsetMib: 21, lengthMib: 3, blockMib: 1, flag: 'conv=fsync' },
];
const CHAP = { username: 'vmtest', password: 'vmsecretpass12' };

const runner = new ExecaCommandRunner();
const log = pino({ level: process.env.VCSTOR_VM_LOG ?? 'warn' });
const timings: Record<string, number> = {};

describe('VM tier: the real-host drivers, for real, in qemu guests', { skip }, () => {
  const lab = new Lab(runner, log, (message) => log.info(message));
  let record: LabFile;
  let target: MethodTarget;
  let storageVm: RunningVm;
  let dom0Vm: RunningVm;
  let patternSha = '';

  /** Run a command on a guest's serial console; it must succeed. */
  async function sh(vm: RunningVm, command: string, timeoutMs = 120_000): Promise<string> {
    const { exitCode, output } = await vm.runOnConsole(command, timeoutMs);
    assert.equal(exitCode, 0, `${vm.name}: ${command} exited ${exitCode}: ${output}`);
    return output;
  }

  before(async () => {
    await lab.down(VM_LAB.name, VM_LAB.dir);
    let started = performance.now();
    record = await lab.upVm(VM_LAB);
    timings.labUpMs = Math.round(performance.now() - started);
    started = performance.now();
    await lab.upVm(VM_LAB);
    timings.labUpAgainMs = Math.round(performance.now() - started);
    target = labMethodTarget(record, VM_LAB, { prefix: 'v', chap: CHAP, timeoutMs: 600_000 });
    storageVm = vmConsole(record, 'storage0');
    dom0Vm = vmConsole(record, 'host0');
    // The consoles are logged in (autologin); a first Enter gives a fresh prompt.
    await storageVm.writeSerial('\n');
    await dom0Vm.writeSerial('\n');
    await sh(dom0Vm, 'head -c 3M /dev/urandom > /root/pattern');
    patternSha = (await sh(dom0Vm, 'sha256sum /root/pattern')).trim().split(/\s+/)[0] ?? '';
    assert.match(patternSha, /^[0-9a-f]{64}$/);
  });

  after(async () => {
    for (const c of [target?.storage, target?.dom0, target?.guest]) c?.close();
    const removed = await lab.down(VM_LAB.name, VM_LAB.dir);
    assert.ok(!removed.some((r) => r.startsWith('loop device')), `lab down found loop devices on this machine: ${removed.join(', ')}`);
    console.log(`# VM tier timings (ms): ${JSON.stringify(timings)}`);
  });

  it('comes up with every agent on its real-host drivers, and up again is a no-op', async () => {
    assert.equal(record.tier, 'vm');
    const expected: Record<string, Record<string, string>> = {
      storage0: { volumes: 'lvm', 'iscsi-target': 'lio', 'nfs-server': 'kernel' },
      host0: { 'iscsi-initiator': 'open-iscsi', 'nfs-client': 'kernel', hypervisor: 'sandbox' },
      guest0: { 'iscsi-initiator': 'open-iscsi', 'nfs-client': 'kernel' },
    };
    for (const host of record.hosts) {
      const client = host.role === 'storage' ? target.storage : host.role === 'dom0' ? target.dom0 : target.guest;
      const info = await unary(client, client.GetInfo, {}, { timeoutMs: 30_000 });
      for (const [concern, driver] of Object.entries(expected[host.name]!)) {
        const selected = info.drivers.find((d) => d.concern === concern && d.selected);
        assert.equal(selected?.driver, driver, `${host.name}: ${concern}`);
        assert.equal(selected?.available, true, `${host.name}: ${concern}=${driver} is available (${selected?.detail ?? ''} ${selected?.missingPrograms.join(' ') ?? ''})`);
      }
    }
    assert.ok(timings.labUpAgainMs! < 30_000, `up again took ${timings.labUpAgainMs} ms: it should only check`);
    // mTLS as in the namespace lab: the guests' agents refuse a plaintext client.
    assert.ok(record.tls, 'the VM lab made its PKI');
    for (const host of record.hosts) {
      const status = await checkHealth(host.agentAddress, grpc.credentials.createInsecure(), '', 5000).catch((err: unknown) => (err instanceof VcstorError ? err.code : 'ERROR'));
      assert.notEqual(status, 'SERVING', `${host.name} answered plaintext`);
    }
  });

  it('LVM: a volume is a real LV on the virtual disk, zeroed, and goes with DeleteVolume', async () => {
    const started = performance.now();
    const { volume } = await unary(target.storage, target.storage.CreateVolume, { name: 'lvtest', sizeBytes: 32 * MIB, provisioning: 'PROVISIONING_PREALLOCATED' }, { timeoutMs: 300_000 });
    timings.lvmCreateMs = Math.round(performance.now() - started);
    assert.equal(volume?.driver, 'lvm');
    try {
      const lvs = await sh(storageVm, 'lvs --noheadings --units b --nosuffix -o lv_name,lv_size,lv_tags vcstor');
      assert.match(lvs, /lvtest\s+33554432\s+\S*vcstor/);
      // Zeroed through its device: no byte of an earlier tenant's data can show through.
      // The driver activates an LV only while it is used: activated here to look.
      assert.match(await sh(storageVm, 'lvchange -ay vcstor/lvtest && cmp -n 33554432 /dev/vcstor/lvtest /dev/zero && echo ZEROED'), /ZEROED/);
      await sh(storageVm, 'lvchange -an vcstor/lvtest');
    } finally {
      await unary(target.storage, target.storage.DeleteVolume, { name: 'lvtest' }, { timeoutMs: 300_000 });
    }
    assert.doesNotMatch(await sh(storageVm, 'lvs --noheadings -o lv_name vcstor'), /lvtest/);
  });

  it('LIO: an export with CHAP refuses a login without it, takes one with it, and lists the session', async () => {
    const initiatorIqn = target.guestInitiatorIqn;
    await unary(target.storage, target.storage.CreateVolume, { name: 'liotest', sizeBytes: 32 * MIB, provisioning: 'PROVISIONING_PREALLOCATED' }, { timeoutMs: 300_000 });
    let started = performance.now();
    const { target: exported } = await unary(target.storage, target.storage.ExportIscsi, { volume: 'liotest', allowedInitiators: [initiatorIqn], chap: CHAP }, { timeoutMs: 300_000 });
    timings.lioExportMs = Math.round(performance.now() - started);
    assert.equal(exported?.driver, 'lio');
    assert.equal(exported?.chap, true);
    const ref = { portal: `${target.storageHost}:3260`, iqn: exported!.iqn, lun: 0 };
    await assert.rejects(unary(target.guest, target.guest.IscsiLogin, { target: ref, initiatorIqn }, { timeoutMs: 120_000 }), (err: unknown) => {
      assert.ok(err instanceof VcstorError, String(err));
      assert.equal(err.code, 'PERMISSION_DENIED');
      assert.match(err.message, /refused the login/);
      return true;
    });
    await assert.rejects(unary(target.guest, target.guest.IscsiLogin, { target: ref, initiatorIqn, chap: { username: CHAP.username, password: 'wrongsecret12' } }, { timeoutMs: 120_000 }), /PERMISSION_DENIED|refused/);
    started = performance.now();
    const { session } = await unary(target.guest, target.guest.IscsiLogin, { target: ref, initiatorIqn, chap: CHAP }, { timeoutMs: 120_000 });
    timings.openIscsiLoginMs = Math.round(performance.now() - started);
    assert.match(session?.devicePath ?? '', /^\/dev\/sd[a-z]+$/);
    assert.equal(session?.sizeBytes, 32 * MIB);
    // The kernel on the other side sees this initiator logged in.
    const { targets } = await unary(target.storage, target.storage.ListIscsiTargets, {}, { timeoutMs: 120_000 });
    const listed = targets.find((t) => t.iqn === exported!.iqn);
    assert.ok(listed?.sessions.some((s) => s.initiatorIqn === initiatorIqn), `LIO lists the session: ${JSON.stringify(listed?.sessions)}`);
    await unary(target.guest, target.guest.IscsiLogout, { target: ref, initiatorIqn }, { timeoutMs: 120_000 });
    assert.deepEqual((await unary(target.guest, target.guest.ListIscsiSessions, {}, { timeoutMs: 60_000 })).sessions, []);
    await unary(target.storage, target.storage.UnexportIscsi, { volume: 'liotest' }, { timeoutMs: 300_000 });
    await unary(target.storage, target.storage.DeleteVolume, { name: 'liotest' }, { timeoutMs: 300_000 });
  });

  /** sha256 of each written region of `file` (after mounting `layers` read-only), and the non-zero bytes of the gap. */
  async function readBack(vm: RunningVm, layers: string[], file: string): Promise<{ shas: string[]; gapNonZero: number }> {
    const mounted: string[] = [];
    // An LV is active only while the storage agent uses it: activated here to read it.
    const lv = /^\/dev\/(vcstor\/[^/]+)$/.exec(layers[0]!)?.[1];
    if (lv) await sh(vm, `lvchange -ay ${lv}`);
    try {
      let current = layers[0]!;
      for (let i = 0; i < layers.length; i++) {
        const point = `/mnt/readback${i}`;
        const loop = current.startsWith('/dev/') ? '' : 'loop,';
        await sh(vm, `mkdir -p ${point} && mount -o ro,${loop}noload ${current} ${point}`);
        mounted.push(point);
        current = `${point}/${layers[i + 1] ?? file}`;
      }
      const shas: string[] = [];
      for (const w of WRITES) {
        const out = await sh(vm, `dd if=${current} bs=1M skip=${w.offsetMib} count=${w.lengthMib} status=none | sha256sum`);
        shas.push(out.trim().split(/\s+/)[0] ?? '');
      }
      const gap = await sh(vm, `dd if=${current} bs=1M skip=3 count=6 status=none | tr -d '\\000' | wc -c`);
      return { shas, gapNonZero: Number(gap.trim()) };
    } finally {
      for (const point of mounted.reverse()) await vm.runOnConsole(`umount -d ${point}`, 60_000);
      if (lv) await vm.runOnConsole(`lvchange -an ${lv}`, 60_000);
    }
  }

  /** What a method left: sessions, targets, exports, mounts and loop devices on host0. */
  async function leftovers(): Promise<string[]> {
    const o = { timeoutMs: 60_000 };
    const found = [
      ...(await unary(target.guest, target.guest.ListIscsiSessions, {}, o)).sessions.map((s) => `guest session ${s.target?.iqn}`),
      ...(await unary(target.dom0, target.dom0.ListIscsiSessions, {}, o)).sessions.map((s) => `dom0 session ${s.target?.iqn}`),
      ...(await unary(target.storage, target.storage.ListIscsiTargets, {}, o)).targets.map((t) => `target ${t.iqn}`),
      ...(await unary(target.storage, target.storage.ListNfsExports, {}, o)).exports.map((e) => `export ${e.exportPath}`),
    ];
    const mounts = await sh(dom0Vm, "grep -c ' /var/lib/vcstor/' /proc/self/mountinfo || true");
    if (Number(mounts.trim()) > 0) found.push(`${mounts.trim()} mounts under /var/lib/vcstor on host0`);
    const loops = await sh(dom0Vm, 'losetup --noheadings --list | wc -l');
    if (Number(loops.trim()) > 0) found.push(`${loops.trim()} loop devices on host0`);
    return found;
  }

  for (const method of METHODS) {
    it(`${method}: data written in the guest reads back byte for byte after teardown`, async () => {
      let started = performance.now();
      const provisioned = await provisionMethod(method, target);
      timings[`${method}.setupMs`] = Math.round(performance.now() - started);
      try {
        const data = `${provisioned.guestMountpoint}/data.bin`;
        for (const w of WRITES) {
          await sh(dom0Vm, `dd if=/root/pattern of=${data} bs=${w.blockMib}M seek=${w.offsetMib / w.blockMib} conv=notrunc ${w.flag} status=none`);
        }
        await sh(dom0Vm, `sync ${data}`);
        started = performance.now();
        await provisioned.teardown({ keepData: true });
        timings[`${method}.teardownMs`] = Math.round(performance.now() - started);
        assert.deepEqual(await leftovers(), [], 'teardown leaves no session, target, export, mount or loop device');

        // Read back where the data rests: the LV on storage0, or dom0's image file.
        const { shas, gapNonZero } = provisioned.volume
          ? await readBack(storageVm, [`/dev/vcstor/${provisioned.volume}`, ...(provisioned.image ? ['guest.img'] : [])], 'data.bin')
          : await readBack(dom0Vm, [provisioned.image!.path!], 'data.bin');
        WRITES.forEach((w, i) => assert.equal(shas[i], patternSha, `${method}: the ${w.lengthMib} MiB at ${w.offsetMib} MiB (${w.blockMib} MiB writes, ${w.flag}) read back intact`));
        assert.equal(gapNonZero, 0, 'the gap between the writes stayed zero');
      } finally {
        // Whatever failed, the next method starts clean: teardown (a no-op when done), then the data.
        await provisioned.teardown({ keepData: true }).catch(() => undefined);
        await provisioned.removeData();
      }
      const names = (await unary(target.storage, target.storage.ListVolumes, {}, { timeoutMs: 60_000 })).volumes.map((v) => v.name);
      assert.ok(!names.includes(provisioned.volume ?? `v-${method}`), `the volume is gone: ${names.join(', ')}`);
      if (!provisioned.volume) assert.doesNotMatch(await sh(dom0Vm, `ls ${target.dom0ImageDir}`), new RegExp(`v-${method}\\.img`), 'the image is gone');
    });
  }
});
