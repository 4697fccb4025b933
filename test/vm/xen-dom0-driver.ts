import { writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ExecaCommandRunner } from '../../common/runner.js';
import type { DomainSpec } from '../../agent-dom0/hypervisor.js';
import { XenHypervisor } from '../../agent-dom0/drivers/xen.js';

/**
 * Runs INSIDE a Xen dom0 booted under qemu (see xen.test.ts and xen-vm.ts): the dom0
 * agent's Xen driver, for real, on a PV domU: render and write its xl config, check it
 * with `xl -N create`, start it, watch it run, hot-plug a file-backed VBD and unplug it,
 * shut it down. Every step prints one line `XENSTEP {json}` (name, ms, result or error),
 * which the host reads off the serial console.
 *
 * node xen-dom0-driver.js KERNEL INITRD ROOTDEV DATAIMAGE
 */
const [kernel, ramdisk, rootDevice, dataImage] = process.argv.slice(2);
if (!kernel || !ramdisk || !rootDevice || !dataImage) {
  console.error('usage: xen-dom0-driver.js KERNEL INITRD ROOTDEV DATAIMAGE');
  process.exit(2);
}
const runner = new ExecaCommandRunner();
const xen = new XenHypervisor({ runner });
const signal = AbortSignal.timeout(1_800_000);
const name = 'vcs-domu0';
const configPath = `/root/${name}.cfg`;

async function step<T>(stepName: string, body: () => Promise<T>): Promise<T | undefined> {
  const started = performance.now();
  try {
    const result = await body();
    console.log(`XENSTEP ${JSON.stringify({ step: stepName, ok: true, ms: Math.round(performance.now() - started), result })}`);
    return result;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    console.log(`XENSTEP ${JSON.stringify({ step: stepName, ok: false, ms: Math.round(performance.now() - started), error: e.message, stderr: e.stderr })}`);
    return undefined;
  }
}

const spec: DomainSpec = {
  name,
  type: 'pv',
  // 256 MiB is not enough for Debian's generic kernel with its 39 MB initrd (MODULES=most):
  // the guest panics unpacking it ("System is deadlocked on memory").
  memoryMib: Number(process.env.XEN_DOMU_MIB ?? 512),
  vcpus: 1,
  // The domU boots dom0's own kernel and initrd (Debian's generic kernel is a PV guest
  // too) from a copy-on-write overlay of the image's root that qemu gives dom0 as a disk.
  kernel: { kernel, ramdisk, cmdline: 'root=/dev/xvda rw console=hvc0 loglevel=6 systemd.show_status=true systemd.hostname=vcs-domu0' },
  vifs: [],
  disks: [{ target: rootDevice, kind: 'phy', vdev: 'xvda', readOnly: false }],
};

const config = xen.renderConfig(spec);
console.log(`XENCONFIG ${JSON.stringify(config)}`);
await writeFile(configPath, config);
await step('checkConfig', () => xen.checkConfig(configPath, signal));
await step('start', () => xen.start(name, configPath, signal));
await step('startAgain', () => xen.start(name, configPath, signal));
await step('list', () => xen.list(signal));
// The guest's kernel has to bring up blkfront before a hot-plugged disk connects; wait
// until the domU has been running a while (its console log tells how far it got).
await sleep(Number(process.env.XEN_DOMU_SETTLE_MS ?? 60_000));
await step('list2', () => xen.list(signal));
const disk = { target: dataImage, kind: 'file' as const, vdev: 'xvdb', readOnly: false };
await step('attachDisk', () => xen.attachDisk(name, disk, signal));
await step('attachDiskAgain', () => xen.attachDisk(name, disk, signal));
await step('blockList', async () => (await runner.run('xl', ['block-list', name], { signal })).stdout);
await step('losetup', async () => (await runner.run('losetup', ['-a'], { signal })).stdout);
await sleep(5000);
await step('detachDisk', () => xen.detachDisk(name, 'xvdb', signal));
await step('detachDiskAgain', () => xen.detachDisk(name, 'xvdb', signal));
await step('losetupAfter', async () => (await runner.run('losetup', ['-a'], { signal })).stdout);
await step('stop', () => xen.stop(name, false, Number(process.env.XEN_DOMU_STOP_MS ?? 300_000), signal));
await step('stopForce', () => xen.stop(name, true, 60_000, signal));
await step('listAfter', () => xen.list(signal));
console.log('XENDONE');
