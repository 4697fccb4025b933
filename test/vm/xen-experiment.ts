import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { ExecaCommandRunner } from '../../common/runner.js';
import { buildVmImage } from '../../lab/vm-image.js';
import { XEN_IMAGE_VARIANT, XEN_VM_CACHE_DIR } from './xen-image.js';
import { bootXenVm, buildXenAppDisk } from './xen-vm.js';
import type { RunningVm } from '../../lab/vm.js';

/**
 * Xen under qemu TCG, step by step, timings printed: build (or find) the Xen image
 * variant, boot the hypervisor with dom0, look at it from dom0's console, then run the
 * dom0 agent's Xen driver inside dom0 on a PV domU (xen-dom0-driver.ts).
 * `node dist/test/vm/xen-experiment.js [WORK_DIR]`; XEN_KEEP=1 leaves qemu running.
 */
const log = pino({ level: 'info' });
const runner = new ExecaCommandRunner();
const workDir = process.argv[2] ?? '/var/lib/vcstor/xen-exp';
const appRoot = fileURLToPath(new URL('../../../', import.meta.url));
const name = 'vcsxen0';
const timings: Record<string, number> = {};
const t0 = performance.now();
const mark = (what: string) => {
  timings[what] = Math.round(performance.now() - t0);
  log.info({ what, ms: timings[what] }, 'xen experiment');
};

await mkdir(workDir, { recursive: true });
const image = await buildVmImage({ runner, cacheDir: XEN_VM_CACHE_DIR, log, variant: XEN_IMAGE_VARIANT });
log.info({ versions: image.versions, bootFiles: image.bootFiles, phases: image.phases, built: image.built }, 'xen image');
mark('image');
const app = await buildXenAppDisk({ runner, file: path.join(workDir, 'app.ext4'), appRoot });
mark('appDisk');
const domuRoot = path.join(workDir, 'domu-root.qcow2');
await rm(domuRoot, { force: true });
await runner.run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', image.rootfs, '-F', 'raw', domuRoot]);

let vm: RunningVm | undefined;
try {
  vm = await bootXenVm({
    runner,
    image,
    name,
    memoryMib: Number(process.env.XEN_VM_MIB ?? 2048),
    cpus: Number(process.env.XEN_VM_CPUS ?? 1),
    dom0MemMib: 1024,
    xenArgs: (process.env.XEN_ARGS ?? '').split(' ').filter(Boolean),
    serialLog: path.join(workDir, `${name}.console.log`),
    overlayDir: workDir,
    xenDir: workDir,
    disks: [
      { file: app.file, format: 'raw', readOnly: true },
      { file: domuRoot, format: 'qcow2' },
    ],
  });
  log.info({ pid: vm.process.pid }, 'qemu started');
  await vm.waitForSerial(/Xen version/, 120_000);
  mark('xenBanner');
  await vm.waitForSerial(/Scrubbing Free RAM|\*\*\* Serial input to DOM0|Std\. Loglevel/, 600_000);
  mark('xenDom0Handover');
  await vm.waitForSerial(/about to get started/, 600_000);
  mark('dom0KernelStarted');
  await vm.waitForSerial(new RegExp(`${name}# `), 1_200_000);
  mark('dom0Prompt');
  const show = async (command: string, timeoutMs = 300_000) => {
    const started = performance.now();
    const result = await vm!.runOnConsole(command, timeoutMs);
    log.info({ command, exitCode: result.exitCode, ms: Math.round(performance.now() - started) }, 'dom0 console');
    console.log(`----- ${command} (exit ${result.exitCode})\n${result.output}`);
    return result;
  };
  await show('dmesg -n 1; uname -a; cat /proc/xen/capabilities; ls /dev/xen');
  await show('systemctl is-active xenstored xenconsoled proc-xen.mount xen-init-dom0 2>&1; systemctl --failed --no-pager --plain --no-legend');
  await show('xl info | head -40');
  await show('xl list');
  mark('xlList');
  await show(`mkdir -p /var/log/xen/console; mountpoint -q /opt/vcstor || mount -o ro LABEL=vcstor-app /opt/vcstor; ls /opt/vcstor/app/dist/test/vm/ | head; truncate -s 64M /root/data.img; mkfs.ext4 -q -F /root/data.img; ls -l /boot`);
  const kernelRelease = image.versions.kernel;
  await show(
    `XEN_DOMU_SETTLE_MS=${process.env.XEN_DOMU_SETTLE_MS ?? 60_000} /opt/vcstor/bin/node /opt/vcstor/app/dist/test/vm/xen-dom0-driver.js /boot/vmlinuz-${kernelRelease} /boot/initrd.img-${kernelRelease} /dev/vdc /root/data.img 2>&1 | grep -v '^\\[' `,
    1_800_000,
  );
  mark('driver');
  await show("grep -a -v 'Job ' /var/log/xen/console/guest-vcs-domu0.log | tail -c 5000; ls /var/log/xen/; tail -20 /var/log/xen/xl-vcs-domu0.log");
  await show('xl dmesg | tail -30');
} finally {
  log.info({ timings }, 'xen experiment timings');
  if (process.env.XEN_KEEP !== '1') {
    await vm?.kill();
    await rm(domuRoot, { force: true });
  }
}
