import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { CommandRunner } from '../../common/runner.js';
import { VcstorError } from '../../common/errors.js';
import { bootVm, type BootVmOptions, type RunningVm } from '../../lab/vm.js';
import type { VmImageResult } from '../../lab/vm-image.js';
import { VM_APP_LABEL } from '../../lab/vm-image.js';
import { XEN_DOM0_CONSOLE } from './xen-image.js';

/**
 * Xen under qemu TCG (the experiment of issue 7): the hypervisor booted by qemu's
 * multiboot loader, Debian's generic kernel as its PV dom0, root on virtio as in the
 * lab's guests. No HVM: TCG offers no VMX/SVM to Xen here, PV needs neither.
 */

/**
 * Xen's own command line. com1 is qemu's first UART, the serial socket bootVm logs;
 * dom0 gets a fixed share of the guest's RAM (no ballooning: xl then never has to
 * take memory back from dom0 for a domU). `noreboot`: a crash stays on the console.
 * `console_timestamps`: boot phases can be timed from the log.
 */
export function xenCommandLine(dom0MemMib: number, more: readonly string[] = []): string {
  return [
    `dom0_mem=${dom0MemMib}M,max:${dom0MemMib}M`,
    'dom0_max_vcpus=1',
    'console=com1',
    'com1=115200,8n1',
    'loglvl=all',
    'guest_loglvl=all',
    'console_timestamps=boot',
    'noreboot',
    // Under qemu TCG (7.2), with SMAP on, dom0 dies at its first instructions: Xen's
    // bounce of an exception onto the PV kernel's stack faults (#PF[0001] in
    // create_bounce_frame). smep=0 or pcid=0 do not help; smap=0 does.
    'smap=0',
    // Without this, PV guests see random register/memory corruption under TCG: systemd
    // in a domU segfaulted in libc's malloc on a zero loaded through an XMM register,
    // and xl in dom0 once failed to lex /etc/xen/xl.conf. With XSAVE off (Xen uses
    // FXSAVE and hides AVX from guests) a domU boots, runs and shuts down cleanly.
    'xsave=0',
    ...more,
  ].join(' ');
}

/**
 * The hypervisor as qemu's -kernel wants it: Debian ships xen-4.17-amd64.gz, a gzipped
 * 32-bit ELF with a multiboot header (qemu's multiboot loader takes no gzip and no
 * ELF64). Unpacked once next to `outDir`, reused while the same size.
 */
export async function unpackXen(image: VmImageResult, outDir: string): Promise<string> {
  const gz = Object.entries(image.bootFiles ?? {}).find(([name]) => /^xen-.*\.gz$/.test(name))?.[1];
  if (!gz) throw new VcstorError('FAILED_PRECONDITION', 'the image has no xen-*.gz boot file: build it with XEN_IMAGE_VARIANT');
  const out = path.join(outDir, path.basename(gz, '.gz'));
  const data = gunzipSync(await readFile(gz));
  const current = await stat(out).catch(() => undefined);
  if (current?.size !== data.length) {
    await mkdir(outDir, { recursive: true });
    await writeFile(out, data);
  }
  // ELFCLASS32 (1) at e_ident[4]: what qemu's multiboot loader accepts.
  if (data.subarray(0, 4).toString('latin1') !== '\x7fELF' || data[4] !== 1) {
    throw new VcstorError('FAILED_PRECONDITION', `${out} is not a 32-bit ELF: qemu's multiboot loader would refuse it`);
  }
  return out;
}

/** What {@link bootXenVm} needs besides bootVm's options. */
export interface BootXenVmOptions extends Omit<BootVmOptions, 'hypervisor' | 'kernelConsole' | 'image'> {
  image: VmImageResult;
  /** Where the unpacked hypervisor is kept. */
  xenDir: string;
  /** dom0's memory; the rest of memoryMib is free for domUs. Default: half. */
  dom0MemMib?: number;
  /** More arguments for Xen's command line. */
  xenArgs?: readonly string[];
}

/** Boot Xen with dom0 on the image's kernel (console hvc0, root logged in there). */
export async function bootXenVm(options: BootXenVmOptions): Promise<RunningVm> {
  const { xenDir, dom0MemMib, xenArgs, ...rest } = options;
  const xen = await unpackXen(options.image, xenDir);
  return bootVm({
    ...rest,
    hypervisor: { image: xen, commandLine: xenCommandLine(dom0MemMib ?? Math.floor(options.memoryMib / 2), xenArgs) },
    kernelConsole: XEN_DOM0_CONSOLE,
    // Xen's console already timestamps; earlyprintk shows dom0's very first lines.
    kernelArgs: ['earlyprintk=xen', ...(options.kernelArgs ?? [])],
  });
}

/**
 * An app disk for the experiment: node and a built vcstor (its dist, proto,
 * node_modules, package.json), with every symlink followed (a private build dir links
 * node_modules and proto to the checkout, which a guest cannot see). Laid out like
 * vm-app.ts's: bin/node, app/... ; label vcstor-app.
 */
export async function buildXenAppDisk(options: { runner: CommandRunner; file: string; appRoot: string }): Promise<{ file: string; ms: number }> {
  const { runner, file, appRoot } = options;
  const started = performance.now();
  const staging = `${file}.d`;
  const run = (command: string, args: readonly string[]) => runner.run(command, args, { timeoutMs: 300_000 });
  await run('rm', ['-rf', '--one-file-system', '--', staging]);
  try {
    await mkdir(path.join(staging, 'bin'), { recursive: true });
    await mkdir(path.join(staging, 'app'), { recursive: true });
    await run('cp', ['--dereference', process.execPath, path.join(staging, 'bin', 'node')]);
    for (const entry of ['package.json', 'proto', 'dist', 'node_modules']) {
      await run('cp', ['-r', '--dereference', path.join(appRoot, entry), path.join(staging, 'app', entry)]);
    }
    const { stdout } = await run('du', ['-s', '-B1', staging]);
    const size = Math.ceil((Number(stdout.split(/\s/)[0]) * 1.25 + 64 * 2 ** 20) / 2 ** 20);
    await rm(file, { force: true });
    await run('mkfs.ext4', ['-q', '-F', '-L', VM_APP_LABEL, '-d', staging, file, `${size}M`]);
  } finally {
    await run('rm', ['-rf', '--one-file-system', '--', staging]).catch(() => undefined);
  }
  return { file, ms: Math.round(performance.now() - started) };
}
