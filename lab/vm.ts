import { mkdir, open, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CommandRunner } from '../common/runner.js';
import { VcstorError } from '../common/errors.js';
import { isRunning, startDetached, startInNamespace, stopProcess, waitFor, type DetachedProcess } from '../common/processes.js';
import type { VmImage } from './vm-image.js';

/**
 * One lab host as a qemu guest with a real kernel (TCG: this machine's KVM cannot run
 * guests). It boots the cached image through its own qcow2 overlay, so the cache is
 * never written, and runs detached like the lab's daemons. Its serial console is a unix
 * socket, everything it prints also appended to a log file: tests wait on the log and
 * type into the socket.
 */

/** What {@link bootVm} needs. */
export interface BootVmOptions {
  runner: CommandRunner;
  image: VmImage;
  /** The guest's name: its hostname, and the name of its overlay and socket. */
  name: string;
  memoryMib: number;
  /** vCPUs; default 1 (TCG on a small host: one guest should not starve the others). */
  cpus?: number;
  /** Network namespace qemu runs in (a lab host); default the root namespace. */
  namespace?: string;
  /** A tap device (in `namespace`) for the guest's one NIC; without it, no network. */
  tap?: string;
  /** MAC of the NIC on `tap`; default derived by qemu. */
  mac?: string;
  /** Where the serial console's output is appended. */
  serialLog: string;
  /** Where the guest's overlay and console socket live. */
  overlayDir: string;
  /** More virtio disks after the root (vdb, vdc, ...), in order. */
  disks?: Array<{ file: string; format: 'raw' | 'qcow2'; readOnly?: boolean }>;
  /** Files passed through qemu's fw_cfg, by name (the guest reads /sys/firmware/qemu_fw_cfg/by_name/NAME/raw). */
  fwCfg?: Record<string, string>;
  /** A second serial port (ttyS1) whose output is written to this file: the guest's agent logs. */
  secondSerialLog?: string;
  /**
   * Boot a multiboot hypervisor (Xen) instead of the kernel: qemu loads `image` (an
   * uncompressed 32-bit multiboot ELF: qemu's loader refuses ELF64) with `commandLine`,
   * and hands it the image's kernel (with the kernel command line) and initrd as
   * multiboot modules. The kernel then runs as the hypervisor's first domain (dom0).
   */
  hypervisor?: { image: string; commandLine: string };
  /** The kernel's console instead of ttyS0,115200: under Xen, dom0's is hvc0. */
  kernelConsole?: string;
  /** More kernel command line arguments, after the default ones. */
  kernelArgs?: readonly string[];
}

/** A running guest. */
export interface RunningVm {
  name: string;
  process: DetachedProcess;
  overlay: string;
  /** The serial console: a unix socket (qemu is the server). */
  serialSocket: string;
  serialLog: string;
  /**
   * Wait until the serial log, from byte `fromOffset` on (default: its start), matches
   * `pattern`. Returns the match and the offset just after it, to wait on from there.
   */
  waitForSerial(pattern: RegExp, timeoutMs: number, fromOffset?: number): Promise<{ match: RegExpExecArray; offset: number }>;
  /** Type `text` on the serial console. */
  writeSerial(text: string): Promise<void>;
  /**
   * Run a shell command on the logged-in serial console and wait for it. The console is
   * one shell: commands run one at a time, in order.
   */
  runOnConsole(command: string, timeoutMs: number): Promise<{ exitCode: number; output: string }>;
  /** Current size of the serial log: where the next output will start. */
  serialOffset(): Promise<number>;
  /** True while qemu runs. */
  running(): Promise<boolean>;
  /** Kill qemu (the guest is not shut down: its overlay is thrown away anyway). */
  kill(): Promise<void>;
}

/** The kernel command line: root on the virtio disk, console on the serial port. */
function kernelCommandLine(name: string, consoleDevice = 'ttyS0,115200', more: readonly string[] = []): string {
  // loglevel=4 keeps kernel chatter (module loads) out of the console's command output.
  return ['root=/dev/vda', 'rw', `console=${consoleDevice}`, 'loglevel=4', `systemd.hostname=${name}`, 'systemd.show_status=false', 'net.ifnames=0', ...more].join(' ');
}

/**
 * qemu's -kernel/-initrd/-append for a multiboot hypervisor: the kernel and initrd
 * become modules (comma-separated; a module's own arguments follow its path after a
 * space, and a comma inside them is written twice).
 */
function hypervisorBootArgs(hypervisor: { image: string; commandLine: string }, kernel: string, kernelLine: string, initrd: string): string[] {
  for (const file of [kernel, initrd]) {
    if (/[ ,]/.test(file)) throw new VcstorError('INVALID_ARGUMENT', `${file}: a multiboot module path cannot hold a space or comma`);
  }
  return ['-kernel', hypervisor.image, '-append', hypervisor.commandLine, '-initrd', `${kernel} ${kernelLine.replace(/,/g, ',,')},${initrd}`];
}

/**
 * Boot a guest: make a fresh qcow2 overlay on the image's root (backing file read-only,
 * raw), then start qemu-system-x86_64 -accel tcg detached (in `namespace` when given).
 * Returns once qemu runs; wait for the guest with {@link RunningVm.waitForSerial}.
 */
export async function bootVm(options: BootVmOptions): Promise<RunningVm> {
  const { runner, image, name } = options;
  if (!/^[a-z][a-z0-9-]{0,30}$/.test(name)) throw new VcstorError('INVALID_ARGUMENT', `VM name ${JSON.stringify(name)}: use 1-31 characters a-z0-9-, starting with a letter`);
  await mkdir(options.overlayDir, { recursive: true });
  await mkdir(path.dirname(options.serialLog), { recursive: true });
  const overlay = path.join(options.overlayDir, `${name}.qcow2`);
  const serialSocket = path.join(options.overlayDir, `${name}.serial`);
  await rm(overlay, { force: true });
  await rm(serialSocket, { force: true });
  // Each boot starts from the cached image as built: the overlay is made anew.
  await runner.run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', image.rootfs, '-F', 'raw', overlay], { timeoutMs: 30_000 });
  // The log is truncated too: offsets into it count from this boot.
  await (await open(options.serialLog, 'w')).close();

  const network = options.tap
    ? ['-netdev', `tap,id=net0,ifname=${options.tap},script=no,downscript=no`, '-device', `virtio-net-pci,netdev=net0${options.mac ? `,mac=${options.mac}` : ''}`]
    : ['-nic', 'none'];
  const command = [
    'qemu-system-x86_64',
    '-name',
    name,
    '-accel',
    'tcg',
    // "max" under TCG: every CPU feature qemu can emulate, so Node's V8 finds what it wants.
    '-cpu',
    'max',
    '-smp',
    String(options.cpus ?? 1),
    '-m',
    String(options.memoryMib),
    '-nographic',
    // -nographic would put the monitor and serial port on stdio, which a detached qemu
    // does not have: the serial port is a socket (logged to a file), no monitor.
    '-monitor',
    'none',
    '-chardev',
    `socket,id=console,path=${serialSocket},server=on,wait=off,logfile=${options.serialLog},logappend=on`,
    '-serial',
    'chardev:console',
    ...(options.hypervisor
      ? hypervisorBootArgs(options.hypervisor, image.kernel, kernelCommandLine(name, options.kernelConsole, options.kernelArgs), image.initrd)
      : ['-kernel', image.kernel, '-initrd', image.initrd, '-append', kernelCommandLine(name, options.kernelConsole, options.kernelArgs)]),
    '-drive',
    `file=${overlay},if=virtio,format=qcow2`,
    ...(options.disks ?? []).flatMap((disk) => ['-drive', `file=${disk.file},if=virtio,format=${disk.format}${disk.readOnly ? ',readonly=on' : ''}`]),
    ...Object.entries(options.fwCfg ?? {}).flatMap(([fwName, file]) => ['-fw_cfg', `name=${fwName},file=${file}`]),
    ...(options.secondSerialLog ? ['-chardev', `file,id=logs,path=${options.secondSerialLog}`, '-serial', 'chardev:logs'] : []),
    ...network,
    '-no-reboot',
  ];
  const qemuLog = `${options.serialLog}.qemu`;
  const proc = options.namespace ? await startInNamespace(`vm-${name}`, name, options.namespace, command, qemuLog) : await startDetached(`vm-${name}`, name, command, qemuLog);
  // qemu makes the socket after parsing its options; a guest that failed to start
  // (bad image path, no memory) has exited by then.
  await waitFor(`${name}: qemu's serial socket ${serialSocket}`, async () => (await isRunning(proc)) && (await fileSize(serialSocket)) !== undefined, 30_000).catch(async (err: unknown) => {
    await stopProcess(proc, 1000);
    throw new VcstorError('INTERNAL', `${name}: qemu did not start (see ${qemuLog}): ${(err as Error).message}`);
  });
  return new QemuVm(name, proc, overlay, serialSocket, options.serialLog);
}

/**
 * A guest {@link bootVm} started earlier (another process: `lab up --vm`), from what the
 * lab recorded: its qemu process, overlay dir and serial log.
 */
export function runningVm(options: { name: string; process: DetachedProcess; overlayDir: string; serialLog: string }): RunningVm {
  const { name } = options;
  return new QemuVm(name, options.process, path.join(options.overlayDir, `${name}.qcow2`), path.join(options.overlayDir, `${name}.serial`), options.serialLog);
}

/** Console text without carriage returns and terminal escape codes (colours, modes). */
function stripTerminalCodes(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '');
}

async function fileSize(file: string): Promise<number | undefined> {
  try {
    const handle = await open(file, 'r');
    try {
      return (await handle.stat()).size;
    } finally {
      await handle.close();
    }
  } catch (err) {
    // A socket cannot be opened as a file (ENXIO) but it is there.
    if ((err as NodeJS.ErrnoException).code === 'ENXIO') return 0;
    return undefined;
  }
}

class QemuVm implements RunningVm {
  /** Counts console commands, so each one's end marker is unique. */
  private commandCount = 0;

  constructor(
    readonly name: string,
    readonly process: DetachedProcess,
    readonly overlay: string,
    readonly serialSocket: string,
    readonly serialLog: string,
  ) {}

  async serialOffset(): Promise<number> {
    return (await fileSize(this.serialLog)) ?? 0;
  }

  async waitForSerial(pattern: RegExp, timeoutMs: number, fromOffset = 0): Promise<{ match: RegExpExecArray; offset: number }> {
    const until = Date.now() + timeoutMs;
    const flags = pattern.flags.replace('g', '');
    for (;;) {
      const text = await this.readSerial(fromOffset);
      const match = new RegExp(pattern.source, flags).exec(text);
      if (match) return { match, offset: fromOffset + Buffer.byteLength(text.slice(0, match.index + match[0].length)) };
      if (!(await this.running())) throw new VcstorError('UNAVAILABLE', `${this.name}: qemu exited before the console showed ${pattern}; last output: ${text.slice(-500)}`);
      if (Date.now() > until) throw new VcstorError('DEADLINE_EXCEEDED', `${this.name}: the console did not show ${pattern} within ${timeoutMs} ms; last output: ${text.slice(-500)}`);
      await sleep(200);
    }
  }

  async writeSerial(text: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const socket = createConnection(this.serialSocket);
      socket.once('error', reject);
      socket.once('connect', () => {
        // Slowly: a 16550 UART's receive FIFO is 16 bytes and an emulated guest under
        // TCG drains it late; bytes written in one burst are lost.
        void (async () => {
          for (let i = 0; i < text.length; i += 8) {
            socket.write(text.slice(i, i + 8));
            await sleep(5);
          }
          socket.end(() => resolve());
        })();
      });
    });
  }

  async runOnConsole(command: string, timeoutMs: number): Promise<{ exitCode: number; output: string }> {
    const marker = `VCSTOR-DONE-${++this.commandCount}`;
    const from = await this.serialOffset();
    // The echoed command line shows "$?" literally; only the shell's output has a number.
    await this.writeSerial(`${command}; echo "${marker}=$?"\n`);
    const { match } = await this.waitForSerial(new RegExp(`${marker}=(\\d+)`), timeoutMs, from);
    const text = await this.readSerial(from);
    const end = text.indexOf(match[0]);
    // Output: what follows the echoed command line, up to the marker.
    const echoed = text.indexOf('\n');
    const output = stripTerminalCodes(text.slice(echoed >= 0 && echoed < end ? echoed + 1 : 0, end));
    return { exitCode: Number(match[1]), output };
  }

  async running(): Promise<boolean> {
    return isRunning(this.process);
  }

  async kill(): Promise<void> {
    await stopProcess(this.process, 3000);
  }

  private async readSerial(fromOffset: number): Promise<string> {
    const handle = await open(this.serialLog, 'r');
    try {
      const { size } = await handle.stat();
      if (size <= fromOffset) return '';
      const buffer = Buffer.alloc(size - fromOffset);
      await handle.read(buffer, 0, buffer.length, fromOffset);
      return buffer.toString('utf8');
    } finally {
      await handle.close();
    }
  }
}
