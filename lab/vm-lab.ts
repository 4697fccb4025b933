import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { checkHealth } from '../common/clients.js';
import { VcstorError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { isRunning, startDetached, waitFor } from '../common/processes.js';
import type { CommandRunner } from '../common/runner.js';
import { ensureLabPki, IQN_PREFIX, labCredentials, natsConfig, newLabRecord, planHosts, refuseUsedSubnet, tcpOpen, validateLabOptions, writeLabFile, type LabFile, type LabHost, type LabOptions, type LabReporter } from './lab.js';
import type { LabNetwork } from './network.js';
import { buildAppDisk } from './vm-app.js';
import { buildVmImage, VM_SEED_FW_CFG_NAME, type VmImage } from './vm-image.js';
import { VM_FAILED_MARK, VM_READY_MARK, type VmSeed } from './vm-seed.js';
import { bootVm, runningVm, type RunningVm } from './vm.js';

/**
 * The VM tier of the lab (`vcstor lab up --vm`): the storage server and the dom0 host
 * are qemu guests with a real Linux kernel (TCG), so the real-host drivers run for real:
 * LVM on a virtual disk, LIO with targetcli, kernel nfsd, open-iscsi and the kernel NFS
 * client. The lab guest is an agent inside the dom0 guest with its own address, as the
 * sandbox hypervisor hands it dom0's VBDs (a Xen domU is out of reach under TCG). The
 * guests hang on the lab's bridge through tap devices; nats-server runs on this machine
 * at the coordinator's address. Same record, `down` and `status` as the namespace lab.
 */

/** The Debian image cache (kept across labs: building it takes a minute or two). */
export const VM_CACHE_DIR = '/var/lib/vcstor/vm-cache';
const VOLUME_GROUP = 'vcstor';
/** Size of the storage server's LVM disk (a sparse file: only what is written uses space). */
const LVM_DISK_SIZE = '8G';
/** Waiting for a guest: boot under TCG (~30 s) plus node starting its agents (slow under TCG). */
const GUEST_READY_MS = 900_000;

interface VmPlan {
  name: string;
  memoryMib: number;
  cpus: number;
  /** Lab hosts whose agents run in this guest: the first is the guest's own host. */
  hosts: LabHost[];
}

/** The kernel modules each role's real-host drivers need (the agents do not load modules). */
const MODULES: Record<LabHost['role'], string[]> = {
  storage: ['loop', 'dm_mod', 'target_core_mod', 'target_core_iblock', 'target_core_file', 'iscsi_target_mod', 'nfsd'],
  dom0: ['loop', 'iscsi_tcp', 'nfs', 'nfsv3'],
  guest: ['loop', 'iscsi_tcp', 'nfs', 'nfsv3'],
};

/** The hosts of a VM lab: one storage server, one dom0 host, and its guest in the same VM. */
export function planVmHosts(options: LabOptions): LabHost[] {
  if (options.storage !== 1 || options.dom0 !== 1 || options.guests > 1) {
    throw new VcstorError('FAILED_PRECONDITION', `the VM tier runs 1 storage server, 1 dom0 host and at most 1 guest (asked: ${options.storage}, ${options.dom0}, ${options.guests}); TCG guests are too slow for more on this machine`);
  }
  return planHosts(options).map((host) => ({
    ...host,
    namespace: `${options.name}-sw`,
    dataDir: `/var/lib/vcstor/${host.name}`,
    vm: host.role === 'guest' ? 'host0' : host.name,
  }));
}

/** Where a guest keeps the lab's certificates (written by vm-init from the seed). */
const GUEST_PKI = '/etc/vcstor/pki';

/** A host's agent config inside its guest: the real-host drivers; mTLS unless the lab is plaintext. */
export function vmAgentConfig(host: LabHost, mtls: boolean): Record<string, unknown> {
  const tls = mtls ? { ca: `${GUEST_PKI}/ca.pem`, cert: `${GUEST_PKI}/${host.name}.pem`, key: `${GUEST_PKI}/${host.name}.key` } : { insecure: true };
  const common = { name: host.name, role: host.role, listen: host.agentAddress, tls, stateDir: path.join(host.dataDir, 'state') };
  const initiator = { driver: 'open-iscsi', initiatorIqn: `${IQN_PREFIX}:${host.name}` };
  switch (host.role) {
    case 'storage':
      return {
        ...common,
        storage: {
          volumes: { driver: 'lvm', volumeGroup: VOLUME_GROUP },
          iscsiTarget: { driver: 'lio', iqnPrefix: IQN_PREFIX, portal: `${host.address}:3260`, requireChap: true },
          nfsServer: { driver: 'kernel', exportRoot: '/srv/vcstor', exportsFile: '/etc/exports.d/vcstor.exports' },
          // As a NAS head it would log in with the kernel's initiator.
          iscsiInitiator: initiator,
        },
      };
    case 'dom0':
      return {
        ...common,
        dom0: {
          iscsiInitiator: initiator,
          nfsClient: { driver: 'kernel' },
          hypervisor: { driver: 'sandbox', configDir: path.join(host.dataDir, 'domains'), sandboxRoot: '/var/lib/vcstor/sandbox' },
          imageRoots: [path.join(host.dataDir, 'images')],
          mountRoot: path.join(host.dataDir, 'mnt'),
        },
      };
    case 'guest':
      return {
        ...common,
        guest: { iscsiInitiator: initiator, nfsClient: { driver: 'kernel' }, mountRoot: path.join(host.dataDir, 'mnt'), vbdDirectory: `/var/lib/vcstor/sandbox/${host.name}/dev` },
      };
  }
}

/** A MAC for a guest's NIC, from its address: stable across boots, unique in the lab. */
function macOf(address: string): string {
  const octet = Number(address.split('.')[3]);
  return `52:54:00:76:63:${octet.toString(16).padStart(2, '0')}`;
}

/**
 * Bring the VM tier up, or converge one that is partly up (a guest whose qemu runs is
 * kept). The Debian image comes from the cache (built on first use); the app disk is
 * made anew, so guests run the code of this checkout.
 */
export async function upVmLab(o: { runner: CommandRunner; log: Logger; report: LabReporter; network: LabNetwork; bridge: string }, options: LabOptions, signal?: AbortSignal): Promise<LabFile> {
  const { runner, log, report, network } = o;
  validateLabOptions(options);
  if (process.getuid?.() !== 0) throw new VcstorError('PERMISSION_DENIED', 'the lab needs root (network namespaces, tap devices, qemu)');
  const hosts = planVmHosts(options);
  await mkdir(options.dir, { recursive: true });
  const base = options.subnet.replace(/\.0\/24$/, '');
  // The record first, so that `down` can undo a half-made lab; NATS runs at .1.
  const lab = await newLabRecord(options, hosts, 'vm', `${base}.1`);
  await refuseUsedSubnet(network, options);
  await writeLabFile(lab);
  const started = performance.now();
  const logs = path.join(options.dir, 'logs');
  await mkdir(logs, { recursive: true });

  // The image first: on a first run it takes a minute or two, and nothing else waits on it.
  report('vm image: building or taking it from the cache');
  const image = await buildVmImage({ runner, cacheDir: VM_CACHE_DIR, log, ...(signal ? { signal } : {}) });
  report(`vm image: ${image.built ? `built in ${(image.ms / 1000).toFixed(0)} s` : 'cached'} (kernel ${image.versions.kernel})`);

  await network.ensureNamespace(lab.switchNamespace);
  await network.ensureBridge(lab.switchNamespace, o.bridge);
  await network.ensureHostLink({ switchNamespace: lab.switchNamespace, bridge: o.bridge, switchEnd: 'coord', hostEnd: lab.coordinatorLink, address: `${lab.coordinatorAddress}/24` });

  // NATS on this machine, at the coordinator's address: the guests reach it over the bridge.
  if (!lab.processes.some((p) => p.name === 'nats-server')) {
    const natsDir = path.join(options.dir, 'nats');
    await mkdir(path.join(natsDir, 'store'), { recursive: true });
    await writeFile(path.join(natsDir, 'nats.conf'), natsConfig(lab.coordinatorAddress, path.join(natsDir, 'store')));
    const nats = await startDetached('nats-server', 'coordinator', ['nats-server', '-c', path.join(natsDir, 'nats.conf')], path.join(logs, 'nats-server.log'));
    lab.processes.push(nats);
    await writeLabFile(lab);
    await waitFor('nats-server', async () => (await isRunning(nats)) && (await tcpOpen(lab.coordinatorAddress, 4222)), 15_000);
    report(`nats-server up on ${lab.coordinatorAddress}:4222`);
  }

  // mTLS as in the namespace lab; each guest gets only its own hosts' keys (in its seed).
  if (lab.tls) await ensureLabPki(runner, options.dir, options.name, hosts);

  const plans: VmPlan[] = [
    { name: 'storage0', memoryMib: 1024, cpus: 1, hosts: hosts.filter((h) => h.vm === 'storage0') },
    { name: 'host0', memoryMib: 1536, cpus: 2, hosts: hosts.filter((h) => h.vm === 'host0') },
  ];
  const toBoot: VmPlan[] = [];
  for (const plan of plans) {
    const running = lab.processes.find((p) => p.name === `vm-${plan.name}`);
    if (!(running && (await isRunning(running)))) toBoot.push(plan);
  }
  // Only guests about to boot read the app disk (a running one keeps the disk it booted with).
  const app = toBoot.length > 0 ? await buildAppDisk({ runner, file: path.join(options.dir, 'vms', 'app.ext4'), log, ...(signal ? { signal } : {}) }) : undefined;
  if (app) report(`app disk: ${(app.bytes / 2 ** 20).toFixed(0)} MiB in ${(app.ms / 1000).toFixed(1)} s`);
  // Boot every guest first, then wait: under TCG they boot in parallel on two cores.
  const waiting: Array<{ plan: VmPlan; serialLog: string }> = [];
  for (const plan of toBoot) {
    const serialLog = path.join(logs, `${plan.name}.console.log`);
    waiting.push({ plan, serialLog });
    await bootGuest(plan, serialLog, app!.file);
    report(`${plan.name}: booting (${plan.hosts.map((h) => `${h.name} ${h.address}`).join(', ')})`);
  }
  for (const { plan, serialLog } of waiting) {
    const line = await waitForGuest(plan.name, serialLog, GUEST_READY_MS, signal);
    report(`${plan.name}: ${line}`);
  }
  const credentials = await labCredentials(lab);
  for (const host of hosts) {
    await waitFor(`agent ${host.name} at ${host.agentAddress}`, async () => (await checkHealth(host.agentAddress, credentials, '', 2000).catch(() => 'DOWN')) === 'SERVING', 60_000, 500);
  }
  report(`lab ${options.name} (VM tier) up in ${((performance.now() - started) / 1000).toFixed(1)} s; record: ${path.join(options.dir, 'lab.json')}`);
  return lab;

  /** The CA and the hosts' own certificates and keys, as the guest must hold them. */
  async function pkiFilesFor(guestHosts: readonly LabHost[]): Promise<NonNullable<VmSeed['files']>> {
    const pki = path.join(options.dir, 'pki');
    const files: NonNullable<VmSeed['files']> = [{ path: `${GUEST_PKI}/ca.pem`, mode: 0o644, content: await readFile(path.join(pki, 'ca.pem'), 'utf8') }];
    for (const h of guestHosts) {
      files.push({ path: `${GUEST_PKI}/${h.name}.pem`, mode: 0o644, content: await readFile(path.join(pki, `${h.name}.pem`), 'utf8') });
      files.push({ path: `${GUEST_PKI}/${h.name}.key`, mode: 0o600, content: await readFile(path.join(pki, `${h.name}.key`), 'utf8') });
    }
    return files;
  }

  async function bootGuest(plan: VmPlan, serialLog: string, appDisk: string): Promise<void> {
    const vmDir = path.join(options.dir, 'vms');
    const own = plan.hosts[0]!;
    const tap = `t-${plan.name}`;
    if (!(await network.linkExists(tap, lab.switchNamespace))) {
      await runner.run('ip', ['-n', lab.switchNamespace, 'tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    }
    await runner.run('ip', ['-n', lab.switchNamespace, 'link', 'set', tap, 'master', o.bridge, 'up']);
    const seed: VmSeed = {
      hostname: plan.name,
      addresses: plan.hosts.map((h) => `${h.address}/24`),
      modules: [...new Set(plan.hosts.flatMap((h) => MODULES[h.role]))],
      agents: plan.hosts.map((h) => ({ name: h.name, role: h.role, listen: h.agentAddress, config: vmAgentConfig(h, lab.tls !== undefined) })),
      logDevice: '/dev/ttyS1',
      files: lab.tls ? await pkiFilesFor(plan.hosts) : [],
    };
    const disks: Array<{ file: string; format: 'raw'; readOnly?: boolean }> = [{ file: appDisk, format: 'raw', readOnly: true }];
    if (own.role === 'storage') {
      // vdc: the volume group's disk, fresh for each lab.
      const lvmDisk = path.join(vmDir, `${plan.name}-lvm.raw`);
      await runner.run('truncate', ['-s', LVM_DISK_SIZE, lvmDisk]);
      disks.push({ file: lvmDisk, format: 'raw' });
      seed.volumeGroup = { name: VOLUME_GROUP, device: '/dev/vdc' };
    }
    const seedFile = path.join(vmDir, `${plan.name}.seed.json`);
    // 0600: it carries the guest's private keys.
    await writeFile(seedFile, `${JSON.stringify(seed, null, 2)}\n`, { mode: 0o600 });
    for (const host of plan.hosts) {
      // What the guest's agent runs with, kept here for people and `lab status`.
      await mkdir(path.dirname(host.agentConfig), { recursive: true });
      await writeFile(host.agentConfig, `${JSON.stringify(vmAgentConfig(host, lab.tls !== undefined), null, 2)}\n`);
    }
    const vm = await bootVm({
      runner,
      image: image as VmImage,
      name: plan.name,
      memoryMib: plan.memoryMib,
      cpus: plan.cpus,
      namespace: lab.switchNamespace,
      tap,
      mac: macOf(own.address),
      serialLog,
      overlayDir: vmDir,
      disks,
      fwCfg: { [VM_SEED_FW_CFG_NAME]: seedFile },
      secondSerialLog: path.join(logs, `${plan.name}.agents.log`),
    });
    lab.processes = [...lab.processes.filter((p) => p.name !== `vm-${plan.name}`), vm.process];
    await writeLabFile(lab);
  }
}

/** Wait for a guest's vm-init to say ready (or failed) on its console. */
async function waitForGuest(name: string, serialLog: string, timeoutMs: number, signal?: AbortSignal): Promise<string> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const text = await readFile(serialLog, 'utf8').catch(() => '');
    const ready = text.split('\n').find((l) => l.includes(VM_READY_MARK));
    if (ready) return ready.slice(ready.indexOf(VM_READY_MARK)).trim();
    // vm-init's own failure line, or systemd's when vm-init could not even run.
    const failed = text.split('\n').find((l) => l.includes(VM_FAILED_MARK) || l.includes('Failed to start vcstor-vm-init.service'));
    if (failed) throw new VcstorError('UNAVAILABLE', `${name}: ${failed.replace(/^.*?(vcstor-vm-init: |Failed)/, '$1').trim()} (console: ${serialLog}; agent logs: ${serialLog.replace(/console\.log$/, 'agents.log')})`);
    if (Date.now() > until) throw new VcstorError('DEADLINE_EXCEEDED', `${name}: not ready within ${timeoutMs / 1000} s; console: ${serialLog}; last lines: ${text.split('\n').slice(-5).join(' | ')}`);
    if (signal?.aborted) throw new VcstorError('CANCELLED', `${name}: cancelled while booting`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** The serial console of a VM lab's guest (`storage0`, `host0`): tests and people type there. */
export function vmConsole(lab: LabFile, vm: string): RunningVm {
  const proc = lab.processes.find((p) => p.name === `vm-${vm}`);
  if (!proc) throw new VcstorError('NOT_FOUND', `lab ${lab.name} has no guest ${vm}`);
  return runningVm({ name: vm, process: proc, overlayDir: path.join(lab.dir, 'vms'), serialLog: path.join(lab.dir, 'logs', `${vm}.console.log`) });
}
