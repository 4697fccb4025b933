import { randomBytes } from 'node:crypto';
import { access, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkHealth } from '../common/clients.js';
import { VcstorError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { CommandRunner } from '../common/runner.js';
import { isWithin } from '../common/validate.js';
import { LabNetwork } from './network.js';
import { diskOf, fuseServerCgroup, hostCgroup, LabCgroups, labCgroup, MEMORY_CONTROLLER } from './cgroups.js';
import { isRunning, processStartTicks, startInNamespace, stopProcess, waitFor, type DetachedProcess } from '../common/processes.js';
import { ensureLabPki, IQN_PREFIX, labCredentials, labFilePath, natsConfig, newLabRecord, planHosts, readLabFile, refuseUsedSubnet, tcpOpen, tgtControlPort, validateLabOptions, writeLabFile, type LabFile, type LabHost, type LabOptions, type LabReporter } from './record.js';

export * from './record.js';

/**
 * The one-machine lab: network namespaces joined by a bridge, one per host (storage
 * servers, dom0 hosts, guests), the root namespace joined too as the coordinator's
 * host; nats-server, tgtd and nfs-ganesha on the first storage server; an agent in each
 * host. `up` converges (safe to repeat), `down` removes everything, also after a crash.
 */

/** The CLI that starts agents: dist/cli/cli.js. */
const CLI = fileURLToPath(new URL('../cli/cli.js', import.meta.url));

const BRIDGE = 'br0';

function agentConfig(lab: LabFile, host: LabHost): Record<string, unknown> {
  const hostDir = path.join(lab.dir, 'hosts', host.name);
  // Each agent serves its own certificate (its address as SAN) and accepts only clients
  // the lab's CA signed; plaintext only for a lab made with --insecure.
  const tls = lab.tls ? { ca: lab.tls.ca, cert: path.join(lab.dir, 'pki', `${host.name}.pem`), key: path.join(lab.dir, 'pki', `${host.name}.key`) } : { insecure: true };
  const common = { name: host.name, role: host.role, listen: host.agentAddress, tls, stateDir: path.join(hostDir, 'state'), ...(host.memoryCgroup ? { memoryCgroup: host.memoryCgroup } : {}), ...(host.fuseServerCgroup ? { fuseServerCgroup: host.fuseServerCgroup } : {}) };
  const initiator = { driver: 'qsd', initiatorIqn: `${IQN_PREFIX}:${host.name}` };
  switch (host.role) {
    case 'storage':
      return {
        ...common,
        storage: {
          volumes: { driver: 'filepool', poolDir: path.join(hostDir, 'pool') },
          iscsiTarget: { driver: 'tgt', iqnPrefix: IQN_PREFIX, portal: `${host.address}:3260`, tgtControlPort: hostTgtPort(lab, host), requireChap: true },
          nfsServer: { driver: 'ganesha', exportRoot: path.join(hostDir, 'exports'), ganeshaConfig: path.join(hostDir, 'ganesha.conf'), ganeshaPidFile: path.join(hostDir, 'ganesha.pid') },
          // As a NAS head, it logs in to another storage server's LUN.
          iscsiInitiator: initiator,
          // A parallel file system over the storage servers: glusterd runs where there are two or more.
          parallelFs: glusterOf(lab) ? { driver: 'glusterfs', brickRoot: path.join(hostDir, 'bricks'), glusterdSocket: glusterdPaths(hostDir).glusterdSocket, cliLogFile: glusterdPaths(hostDir).cliLogFile } : { driver: 'none' },
          // Quick repair in the lab: tests restart tgtd and expect exports back soon.
          reconcileIntervalMs: 1000,
        },
      };
    case 'dom0':
      return {
        ...common,
        dom0: {
          iscsiInitiator: initiator,
          nfsClient: { driver: 'libnfs' },
          // file disks through dom0's own qemu-storage-daemon: its cache is charged to dom0.
          hypervisor: { driver: 'sandbox', configDir: path.join(hostDir, 'domains'), sandboxRoot: path.join(lab.dir, 'sandbox'), fileBackend: 'qsd' },
          imageRoots: [path.join(hostDir, 'images')],
          mountRoot: path.join(hostDir, 'mnt'),
        },
      };
    case 'guest':
      // The sandbox hypervisor publishes this guest's VBDs here (domain name = guest name).
      return {
        ...common,
        // NFS directories through vcstor's user-space NFSv3 client: the namespaces share a kernel without one.
        guest: { iscsiInitiator: initiator, nfsClient: { driver: 'fuse-nfs' }, mountRoot: path.join(hostDir, 'mnt'), vbdDirectory: path.join(lab.dir, 'sandbox', host.name, 'dev') },
      };
  }
}

/**
 * tgtd's control port on a storage host: the lab's, plus the host's place among the
 * storage servers (each tgtd holds a lock on its port's socket, machine-wide).
 */
function hostTgtPort(lab: Pick<LabFile, 'hosts' | 'tgtControlPort'>, host: Pick<LabHost, 'name'>): number {
  return lab.tgtControlPort + Math.max(0, lab.hosts.filter((h) => h.role === 'storage').findIndex((h) => h.name === host.name));
}

/** Whether the lab runs glusterd on its storage servers: a parallel file system spans two or more. */
function glusterOf(lab: Pick<LabFile, 'hosts'>): boolean {
  return lab.hosts.filter((h) => h.role === 'storage').length >= 2;
}

/** Where a storage host's glusterd keeps its state, runtime files and logs, and its CLI socket. */
function glusterdPaths(hostDir: string): { glusterdSocket: string; cliLogFile: string; lib: string; run: string; log: string } {
  const root = path.join(hostDir, 'glusterd');
  return { lib: path.join(root, 'lib'), run: path.join(root, 'run'), log: path.join(root, 'log'), glusterdSocket: path.join(root, 'run', 'glusterd.socket'), cliLogFile: path.join(root, 'log', 'cli.log') };
}

/**
 * glusterd of one storage host, several on one machine: every directory of its own (state,
 * runtime, logs, CLI socket), listening on the host's address; in the foreground (-N).
 */
function glusterdCommand(hostDir: string, address: string): string[] {
  const g = glusterdPaths(hostDir);
  const option = (name: string, value: string) => ['--xlator-option', `management.${name}=${value}`];
  return [
    'glusterd',
    '-N',
    '-p',
    path.join(g.run, 'glusterd.pid'),
    '-l',
    path.join(g.log, 'glusterd.log'),
    ...option('working-directory', g.lib),
    ...option('run-directory', g.run),
    ...option('logging-directory', g.log),
    ...option('glusterd-sockfile', g.glusterdSocket),
    ...option('transport.socket.bind-address', address),
  ];
}

/** ganesha's base config; NFSv3 (which libnfs clients need) only where rpcbind runs. */
function ganeshaConfig(hostDir: string, address: string, nfsV3: boolean): string {
  return [
    '# Written by vcstor lab; the storage agent adds EXPORT blocks in its own section.',
    `NFS_CORE_PARAM { Bind_addr = ${address}; NFS_Port = 2049; MNT_Port = 20048; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; Protocols = ${nfsV3 ? '3, 4' : '4'}; Plugins_Dir = "/usr/lib/x86_64-linux-gnu/ganesha"; }`,
    `NFSv4 { Graceless = true; RecoveryRoot = "${path.join(hostDir, 'ganesha-recovery')}"; Only_Numeric_Owners = true; }`,
    '',
  ].join('\n');
}

/** True when a process named `name` runs anywhere on the machine. */
async function programRunning(name: string): Promise<boolean> {
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
    if (comm.trim() === name) return true;
  }
  return false;
}

export class Lab {
  private readonly network: LabNetwork;

  constructor(
    private readonly runner: CommandRunner,
    private readonly log: Logger,
    private readonly report: LabReporter = () => undefined,
  ) {
    this.network = new LabNetwork(runner);
  }

  /**
   * Bring the lab up, or converge a partly-up one: what exists and runs is kept, what
   * is missing is made. Idempotent.
   * @throws VcstorError when a step fails; what was made so far is in lab.json for `down`.
   */
  async up(options: LabOptions): Promise<LabFile> {
    validateLabOptions(options);
    if (process.getuid?.() !== 0) throw new VcstorError('PERMISSION_DENIED', 'the lab needs root (network namespaces, loop devices, mounts)');
    await mkdir(options.dir, { recursive: true });
    const hosts = planHosts(options);
    const storage0 = hosts[0]!;
    const lab = await newLabRecord(options, hosts, 'namespaces', storage0.address);
    await refuseUsedSubnet(this.network, options);
    const cgroups = new LabCgroups();
    if (options.memoryBytes) {
      if (await cgroups.available()) {
        for (const host of hosts) {
          host.memoryCgroup = hostCgroup(options.name, host.name);
          await cgroups.ensure(host.memoryCgroup, options.memoryBytes);
          host.fuseServerCgroup = fuseServerCgroup(options.name, host.name);
          await cgroups.ensure(host.fuseServerCgroup);
        }
        lab.memoryBytes = options.memoryBytes;
        this.report(`memory: ${options.memoryBytes / 2 ** 20} MiB per host (memory cgroups ${labCgroup(options.name)}/<host>)`);
      } else {
        this.report(`memory: no cgroup v1 memory controller at ${MEMORY_CONTROLLER}: the hosts share this machine's memory and page cache (figures will say "machine")`);
      }
    }
    if (options.diskBytesPerSecond) {
      const disk = await diskOf(options.dir);
      if (disk && (await cgroups.blkioAvailable())) {
        for (const host of hosts) await cgroups.ensureDiskRate(hostCgroup(options.name, host.name), disk, options.diskBytesPerSecond);
        lab.diskBytesPerSecond = options.diskBytesPerSecond;
        lab.disk = disk;
        this.report(`disk: ${options.diskBytesPerSecond / 2 ** 20} MiB/s per host, read and write, on disk ${disk} (blkio cgroups)`);
      } else {
        this.report(`disk: cannot throttle (${disk ? 'no cgroup v1 blkio controller' : `no block device under ${options.dir}`}): hosts read and write this machine's disk at its own speed`);
      }
    }
    await writeLabFile(lab);

    const started = performance.now();
    this.report(`network: ${hosts.length} hosts on ${options.subnet}`);
    await this.network.ensureNamespace(lab.switchNamespace);
    await this.network.ensureBridge(lab.switchNamespace, BRIDGE);
    await this.network.ensureHostLink({ switchNamespace: lab.switchNamespace, bridge: BRIDGE, switchEnd: 'coord', hostEnd: lab.coordinatorLink, address: `${lab.coordinatorAddress}/24` });
    for (const host of hosts) {
      await this.network.ensureNamespace(host.namespace);
      await this.network.ensureHostLink({ switchNamespace: lab.switchNamespace, bridge: BRIDGE, switchEnd: host.name, hostNamespace: host.namespace, hostEnd: 'eth0', address: `${host.address}/24` });
      if (options.rate) {
        await this.network.shape(host.name, lab.switchNamespace, options.rate);
        await this.network.shape('eth0', host.namespace, options.rate);
      }
    }
    this.log.debug({ ms: Math.round(performance.now() - started) }, 'network ready');

    const ensure = async (name: string, host: LabHost, command: string[], ready: () => Promise<boolean>, timeoutMs = 15_000) => {
      const current = lab.processes.find((p) => p.name === name && p.host === host.name);
      if (current && (await isRunning(current))) return;
      const logFile = path.join(options.dir, 'logs', `${host.name}-${name}.log`);
      const proc = await startInNamespace(name, host.name, host.namespace, command, logFile);
      lab.processes = [...lab.processes.filter((p) => !(p.name === name && p.host === host.name)), proc];
      await writeLabFile(lab);
      // Into the host's memory before it does any work (NATS is the coordinator's, not the host's).
      if (name !== 'nats-server') {
        if (host.memoryCgroup) await cgroups.join(host.memoryCgroup, proc.pid);
        if (lab.diskBytesPerSecond) await cgroups.joinBlkio(hostCgroup(options.name, host.name), proc.pid);
      }
      await waitFor(`${name} on ${host.name} (log: ${logFile})`, async () => {
        if (!(await isRunning(proc))) throw new VcstorError('UNAVAILABLE', `${name} on ${host.name} exited; see ${logFile}`);
        return ready();
      }, timeoutMs);
      this.report(`${host.name}: ${name} up (pid ${proc.pid})`);
    };
    await mkdir(path.join(options.dir, 'logs'), { recursive: true });
    // A CHAP secret for plans that run in the lab (plans/lab-small.yaml reads it).
    const secretFile = path.join(options.dir, 'secrets', 'chap');
    if (!(await access(secretFile).then(() => true, () => false))) {
      await mkdir(path.dirname(secretFile), { recursive: true, mode: 0o700 });
      await writeFile(secretFile, `${randomBytes(12).toString('base64url').slice(0, 16)}\n`, { mode: 0o600 });
    }

    if (lab.tls) await ensureLabPki(this.runner, options.dir, options.name, hosts);

    // Services of the first storage server: NATS for the coordinator, tgtd, ganesha.
    const storageDir = path.join(options.dir, 'hosts', storage0.name);
    await mkdir(path.join(storageDir, 'nats'), { recursive: true });
    await writeFile(path.join(storageDir, 'nats.conf'), natsConfig(storage0.address, path.join(storageDir, 'nats')));
    await ensure('nats-server', storage0, ['nats-server', '-c', path.join(storageDir, 'nats.conf')], () => tcpOpen(storage0.address, 4222));
    for (const host of hosts.filter((h) => h.role === 'storage')) {
      const hostDir = path.join(options.dir, 'hosts', host.name);
      await mkdir(path.join(hostDir, 'ganesha-recovery'), { recursive: true });
      const tgtPort = hostTgtPort(lab, host);
      await ensure('tgtd', host, ['tgtd', '-f', '-C', String(tgtPort), '--iscsi', `portal=${host.address}:3260`], async () => {
        const show = await this.runner.run('tgtadm', ['-C', String(tgtPort), '--op', 'show', '--mode', 'system'], { okExitCodes: [0, 1, 107], timeoutMs: 2000 });
        return show.exitCode === 0;
      });
      // rpcbind's socket is a file (/run/rpcbind.sock) shared by all namespaces: one
      // rpcbind, on storage0, so NFSv3 is served there and the others serve NFSv4.
      const nfsV3 = host === storage0;
      if (nfsV3) {
        const ours = lab.processes.find((p) => p.name === 'rpcbind');
        if (!(ours && (await isRunning(ours))) && (await programRunning('rpcbind'))) {
          throw new VcstorError('FAILED_PRECONDITION', 'another rpcbind runs on this machine (another lab?): its socket /run/rpcbind.sock is shared by all namespaces, so only one lab can serve NFSv3 at a time; take the other lab down first');
        }
        await ensure('rpcbind', host, ['rpcbind', '-f'], () => tcpOpen(host.address, 111));
      }
      if (glusterOf(lab)) {
        const g = glusterdPaths(hostDir);
        for (const d of [g.lib, g.run, g.log, '/var/run/gluster']) await mkdir(d, { recursive: true });
        // Its start-up takes ~3 s (geo-replication set-up it cannot skip).
        await ensure('glusterd', host, glusterdCommand(hostDir, host.address), async () => {
          const status = await this.runner.run('gluster', [`--glusterd-sock=${g.glusterdSocket}`, `--log-file=${g.cliLogFile}`, '--mode=script', 'peer', 'status'], { okExitCodes: [0, 1], timeoutMs: 5000 });
          return status.exitCode === 0;
        }, 60_000);
      }
      // Written once: the storage agent keeps its exports in a section of this file.
      const ganeshaConf = path.join(hostDir, 'ganesha.conf');
      if (!(await access(ganeshaConf).then(() => true, () => false))) await writeFile(ganeshaConf, ganeshaConfig(hostDir, host.address, nfsV3));
      await ensure('ganesha', host, ['ganesha.nfsd', '-F', '-L', path.join(options.dir, 'logs', `${host.name}-ganesha.nfsd.log`), '-f', path.join(hostDir, 'ganesha.conf'), '-p', path.join(hostDir, 'ganesha.pid')], () => tcpOpen(host.address, 2049));
    }

    // An agent on every host.
    const credentials = await labCredentials(lab);
    for (const host of hosts) {
      const hostDir = path.join(options.dir, 'hosts', host.name);
      await mkdir(hostDir, { recursive: true });
      await writeFile(host.agentConfig, `${JSON.stringify(agentConfig(lab, host), null, 2)}\n`);
      await ensure('agent', host, [process.execPath, CLI, 'agent', host.role, '--config', host.agentConfig], async () => (await checkHealth(host.agentAddress, credentials, '', 1000)) === 'SERVING');
    }
    this.report(`lab ${options.name} up in ${((performance.now() - started) / 1000).toFixed(1)} s; record: ${labFilePath(options.dir)}`);
    return lab;
  }

  /**
   * Bring the VM tier up (qemu guests with real kernels; see vm-lab.ts), or converge it.
   * Idempotent like {@link up}; `down` and `status` serve both tiers.
   */
  async upVm(options: LabOptions, signal?: AbortSignal): Promise<LabFile> {
    const { upVmLab } = await import('./vm-lab.js');
    return upVmLab({ runner: this.runner, log: this.log, report: this.report, network: this.network, bridge: BRIDGE }, options, signal);
  }

  /**
   * Remove everything of lab `name` in `dir`: agents and daemons, any other process in
   * its namespaces, mounts and loop devices under `dir`, namespaces and links. Works
   * from lab.json when there is one, and finds what is left by name when there is not.
   * Idempotent. Leaves `dir/logs` for reading.
   * @returns what it removed, for people.
   */
  async down(name: string, dir: string): Promise<string[]> {
    const removed: string[] = [];
    const lab = await readLabFile(dir);
    // Agents first (they may hold sessions and mounts), then the daemons.
    const order = ['agent', 'ganesha', 'rpcbind', 'glusterd', 'nats-server', 'tgtd'];
    const processes = [...(lab?.processes ?? [])].sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
    const base = lab?.tgtControlPort ?? tgtControlPort(name);
    const portOf = (host: string) => (lab ? hostTgtPort(lab, { name: host }) : base);
    const ports = lab ? [...new Set(lab.hosts.filter((h) => h.role === 'storage').map((h) => portOf(h.name)))] : [base];
    for (const proc of processes) {
      if (!(await isRunning(proc))) continue;
      if (proc.name === 'tgtd') await this.stopTgtd(portOf(proc.host));
      await stopProcess(proc, proc.name === 'tgtd' ? 1000 : 5000);
      removed.push(`process ${proc.name} on ${proc.host} (pid ${proc.pid})`);
    }
    const namespaces = (await this.network.namespaces()).filter((ns) => ns.startsWith(`${name}-`));
    // Whatever else runs in the lab's namespaces (initiators, benchmarks, glusterd's bricks,
    // crashed leftovers). A brick's socket lies in the machine's /var/run/gluster, named in
    // its command line (-S): removed once the brick is gone.
    const brickSockets: string[] = [];
    for (const ns of namespaces) {
      for (const pid of await this.network.pidsIn(ns)) {
        const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
        const socket = argv[argv.indexOf('-S') + 1];
        if (path.basename(argv[0] ?? '') === 'glusterfsd' && socket?.startsWith('/var/run/gluster/')) brickSockets.push(socket);
        const ticks = await processStartTicks(pid);
        if (ticks === undefined) continue;
        await stopProcess({ pid, startTicks: ticks }, 2000);
        removed.push(`process ${pid} in ${ns}`);
      }
    }
    for (const socket of brickSockets) await rm(socket, { force: true });
    // rpcbind leaves its socket, lock and state; remove them once no rpcbind runs any more
    // (state left behind would re-register the lab's services in a later rpcbind -w).
    if (!(await programRunning('rpcbind'))) {
      for (const f of ['/run/rpcbind.sock', '/run/rpcbind.lock', '/run/rpcbind/rpcbind.xdr', '/run/rpcbind/portmap.xdr']) await rm(f, { force: true });
    }
    removed.push(...(await new LabCgroups().remove(name)));
    for (const port of ports) {
      await rm(`/var/run/tgtd/socket.${port}`, { force: true });
      await rm(`/var/run/tgtd/socket.${port}.lock`, { force: true });
    }
    // Loop devices are found before the unmounts: one over a FUSE export that a busy
    // unmount can only detach lazily loses its path (its backing file then reads "/").
    const loops = await this.loopsUnder(dir);
    removed.push(...(await this.unmountUnder(dir)));
    removed.push(...(await this.detachLoops([...loops, ...(await this.loopsUnder(dir))])));
    // The root namespace's link first: deleting its peer's namespace would take it away
    // a moment later, racing a delete.
    if (await this.network.linkExists(`${name}-c`)) {
      await this.network.deleteLink(`${name}-c`);
      removed.push(`link ${name}-c`);
    }
    for (const ns of namespaces) {
      await this.network.deleteNamespace(ns);
      removed.push(`namespace ${ns}`);
    }
    // `ip netns add` bind-mounts /run/netns onto itself; with no namespace left at all
    // (ours or anyone's), that mount is the last trace: remove it too.
    if (namespaces.length > 0 && (await this.network.namespaces()).length === 0) {
      const mounted = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').some((line) => line.split(' ')[4] === '/run/netns');
      if (mounted) await this.runner.run('umount', ['/run/netns'], { okExitCodes: [0, 32] });
    }
    // Keep the logs; everything else of the lab goes.
    try {
      for (const entry of await readdir(dir)) if (entry !== 'logs') await rm(path.join(dir, entry), { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return removed;
  }

  /** Delete every target, then the system: tgtd ignores SIGTERM. */
  private async stopTgtd(port: number): Promise<void> {
    const tgtadm = (args: string[]) => this.runner.run('tgtadm', ['-C', String(port), ...args], { okExitCodes: [0, 1, 22, 107], timeoutMs: 5000 });
    const show = await tgtadm(['--lld', 'iscsi', '--op', 'show', '--mode', 'target']);
    for (const match of show.stdout.matchAll(/^Target (\d+):/gm)) await tgtadm(['--lld', 'iscsi', '--op', 'delete', '--force', '--mode', 'target', '--tid', match[1]!]);
    await tgtadm(['--op', 'delete', '--mode', 'system']);
  }

  /** Unmount everything mounted under `dir`, deepest first (lazily if busy). */
  private async unmountUnder(dir: string): Promise<string[]> {
    const removed: string[] = [];
    const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
    const points = mountinfo
      .split('\n')
      .map((line) => line.split(' ')[4] ?? '')
      .map((p) => p.replace(/\\040/g, ' '))
      .filter((p) => p !== '' && isWithin(dir, p))
      .sort((a, b) => b.length - a.length);
    for (const point of points) {
      const result = await this.runner.run('umount', [point], { okExitCodes: [0, 32] });
      if (result.exitCode !== 0) await this.runner.run('umount', ['-l', point], { okExitCodes: [0, 32] });
      removed.push(`mount ${point}`);
    }
    return removed;
  }

  /** Loop devices whose backing file is under `dir`. */
  private async loopsUnder(dir: string): Promise<Array<{ name: string; backing: string }>> {
    const { stdout } = await this.runner.run('losetup', ['--json', '--list', '--output', 'NAME,BACK-FILE']);
    if (stdout.trim() === '') return [];
    const devices = (JSON.parse(stdout) as { loopdevices: Array<{ name: string; 'back-file': string | null }> }).loopdevices;
    return devices.map((d) => ({ name: d.name, backing: (d['back-file'] ?? '').replace(/ \(deleted\)$/, '') })).filter((d) => d.backing !== '' && isWithin(dir, d.backing));
  }

  /** Detach these loop devices, each once. */
  private async detachLoops(devices: Array<{ name: string; backing: string }>): Promise<string[]> {
    const removed: string[] = [];
    for (const device of devices) {
      if (removed.some((r) => r.startsWith(`loop device ${device.name} `))) continue;
      await this.runner.run('losetup', ['--detach', device.name], { okExitCodes: [0, 1] });
      removed.push(`loop device ${device.name} (${device.backing})`);
    }
    return removed;
  }

  /** What is up: each host's namespace, agent health, and the daemons. */
  async status(dir: string): Promise<{ lab: LabFile | undefined; hosts: Array<LabHost & { namespaceUp: boolean; agent: string; memory?: { usageBytes: number; cacheBytes: number; limitBytes: number } }>; processes: Array<DetachedProcess & { running: boolean }> }> {
    const lab = await readLabFile(dir);
    if (!lab) return { lab, hosts: [], processes: [] };
    const namespaces = await this.network.namespaces();
    const credentials = await labCredentials(lab);
    const hosts = await Promise.all(
      lab.hosts.map(async (host) => ({
        ...host,
        namespaceUp: namespaces.includes(host.namespace),
        ...(host.memoryCgroup ? { memory: await new LabCgroups().usage(host.memoryCgroup) } : {}),
        agent: await checkHealth(host.agentAddress, credentials, '', 1500).catch((err: unknown) => (err instanceof VcstorError ? err.code : 'UNREACHABLE')),
      })),
    );
    const processes = await Promise.all(lab.processes.map(async (p) => ({ ...p, running: await isRunning(p) })));
    return { lab, hosts, processes };
  }
}
