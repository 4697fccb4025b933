import * as grpc from '@grpc/grpc-js';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import path from 'node:path';
import { channelCredentials, type ClientTls } from '../common/clients.js';
import type { AgentRole } from '../common/config.js';
import { VcstorError } from '../common/errors.js';
import type { CommandRunner } from '../common/runner.js';
import { initCa, issueCert } from '../coordinator/certs.js';
import { cidrOverlap, LabNetwork } from './network.js';
import { isRunning, type DetachedProcess } from '../common/processes.js';

/**
 * The lab's record and what both tiers share (the namespace lab in lab.ts, the VM
 * tier in vm-lab.ts): options, hosts, the lab.json file, its PKI, the NATS config.
 */

/** What lab to make. */
export interface LabOptions {
  /** Prefix of every namespace and link: 1-6 characters a-z0-9, starting with a letter. */
  name: string;
  /** A /24 the machine does not use yet, e.g. 198.51.100.0/24 (TEST-NET-2). */
  subnet: string;
  storage: number;
  dom0: number;
  guests: number;
  /** Where the lab keeps configs, logs, pools and its record (lab.json). */
  dir: string;
  /** Cap every host link at this rate (tc tbf), e.g. "1gbit". */
  rate?: string;
  /** gRPC port of every agent. */
  agentPort: number;
  /**
   * Each host's memory (bytes): a memory cgroup per host with this limit (lab/cgroups.ts),
   * so hosts do not share one page cache. Undefined or 0: no groups (`--memory none`).
   */
  memoryBytes?: number;
  /**
   * Each host's reads and writes of the machine's disk (bytes/s each way), throttled by a
   * blkio cgroup per host (lab/cgroups.ts). Undefined or 0: unthrottled (`--disk-rate none`).
   */
  diskBytesPerSecond?: number;
  /**
   * Serve plaintext gRPC instead of mTLS (`lab up --insecure`). Off by default: the lab
   * runs agents as a deployment should, with certificates from `vcstor certs`.
   */
  insecure?: boolean;
}

/** The client's side of the lab's mTLS: the CA and the `coordinator` client certificate. */
export interface LabTls {
  ca: string;
  cert: string;
  key: string;
}

export interface LabHost {
  name: string;
  role: AgentRole;
  namespace: string;
  address: string;
  /** host:port of its agent. */
  agentAddress: string;
  /** The agent's config as the lab wrote it (on this machine). */
  agentConfig: string;
  /**
   * The host's own directory as its agent sees it: images, mounts, state. On this
   * machine for namespace hosts; inside the guest for VM-tier hosts.
   */
  dataDir: string;
  /** Namespace tier: the host's memory cgroup (its agent's config names it too). */
  memoryCgroup?: string;
  /** Namespace tier: where its agent puts the FUSE servers it starts (lab/cgroups.ts). */
  fuseServerCgroup?: string;
  /** VM tier: the qemu guest this host runs in (a guest agent may share its dom0's VM). */
  vm?: string;
}

/** The lab's record, written as it is built, so `down` can undo a half-made lab. */
export interface LabFile {
  name: string;
  subnet: string;
  dir: string;
  createdUnixMs: number;
  switchNamespace: string;
  /** The root namespace's link to the bridge, and its address there. */
  coordinatorLink: string;
  coordinatorAddress: string;
  hosts: LabHost[];
  natsUrl: string;
  natsMonitorUrl: string;
  tgtControlPort: number;
  processes: DetachedProcess[];
  /** How hosts are made: network namespaces (default) or qemu guests with real kernels (`--vm`). */
  tier?: 'namespaces' | 'vm';
  /**
   * How clients (the coordinator, the CLI, tests) reach the agents: mTLS with these files
   * (under DIR/pki). Absent: the agents serve plaintext, as asked (`--insecure`).
   */
  tls?: LabTls;
  /** Each namespace host's memory limit (bytes), when the hosts have memory cgroups. */
  memoryBytes?: number;
  /** Each namespace host's disk rate (bytes/s) on `disk` (major:minor), when throttled. */
  diskBytesPerSecond?: number;
  disk?: string;
}

/** The client side of a lab's mTLS: DIR/pki/{ca,coordinator}.*; undefined for plaintext. */
export function labTlsFiles(dir: string, insecure: boolean | undefined): LabTls | undefined {
  const pki = path.join(dir, 'pki');
  return insecure ? undefined : { ca: path.join(pki, 'ca.pem'), cert: path.join(pki, 'coordinator.pem'), key: path.join(pki, 'coordinator.key') };
}

/**
 * The lab's PKI, as an operator makes it with `vcstor certs`: a CA, a server certificate
 * per agent (its address as SAN), a client certificate for the coordinator, the CLI and
 * tests. Kept when valid, so `up` again changes nothing.
 */
export async function ensureLabPki(runner: CommandRunner, dir: string, name: string, hosts: readonly LabHost[]): Promise<void> {
  const pki = path.join(dir, 'pki');
  await initCa(runner, pki, { name: `vcstor-lab-${name}` });
  for (const host of hosts) await issueCert(runner, pki, { name: host.name, serverAddresses: [host.address] });
  await issueCert(runner, pki, { name: 'coordinator', client: true });
}

/** The client TLS settings for a lab's agents: its mTLS files, or plaintext when it was made so. */
export function labClientTls(lab: Pick<LabFile, 'tls'>): ClientTls {
  return lab.tls ? { ca: lab.tls.ca, cert: lab.tls.cert, key: lab.tls.key } : { insecure: true };
}

/** Channel credentials for a lab's agents (see {@link labClientTls}). */
export function labCredentials(lab: Pick<LabFile, 'tls'>): Promise<grpc.ChannelCredentials> {
  return channelCredentials(labClientTls(lab));
}

export const DEFAULT_LAB: LabOptions = {
  name: 'vcs',
  // TEST-NET-2: TEST-NET-1 (192.0.2.0/24) is these machines' own network.
  subnet: '198.51.100.0/24',
  storage: 1,
  dom0: 1,
  guests: 1,
  dir: '/var/lib/vcstor/lab/vcs',
  agentPort: 50051,
  // A host is small next to what the benchmarks write (2x for bonnie++): so the figures
  // measure the data path and not the cache (plans/lab-small.yaml).
  memoryBytes: 192 * 2 ** 20,
  // A disk of the paper's day, instead of the 2.5 GB/s of this machine's cached virtual disk.
  diskBytesPerSecond: 80 * 2 ** 20,
};

export const IQN_PREFIX = 'iqn.2026-11.org.vcstor.lab';

export function labFilePath(dir: string): string {
  return path.join(dir, 'lab.json');
}

/** Check lab options; names must fit Linux's 15-character interface names. */
export function validateLabOptions(options: LabOptions): void {
  if (!/^[a-z][a-z0-9]{0,5}$/.test(options.name)) throw new VcstorError('INVALID_ARGUMENT', `lab name ${JSON.stringify(options.name)}: use 1-6 characters a-z0-9, starting with a letter`);
  if (!/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.0\/24$/.test(options.subnet)) throw new VcstorError('INVALID_ARGUMENT', `subnet ${options.subnet}: give a /24 such as 198.51.100.0/24`);
  const counts: Array<[string, number, number]> = [['storage', options.storage, 9], ['dom0', options.dom0, 80], ['guests', options.guests, 150]];
  for (const [what, count, max] of counts) {
    if (!Number.isInteger(count) || count < (what === 'storage' ? 1 : 0) || count > max) throw new VcstorError('INVALID_ARGUMENT', `${what}: ${count} is not 0-${max}`);
  }
  if (!path.isAbsolute(options.dir) || options.dir === '/') throw new VcstorError('INVALID_ARGUMENT', `dir ${options.dir}: give an absolute directory for the lab`);
  if (options.rate !== undefined && !/^\d+(\.\d+)?[kmg]?bit$/.test(options.rate)) throw new VcstorError('INVALID_ARGUMENT', `rate ${options.rate}: give a tc rate such as 1gbit`);
}

/** The hosts of a lab, with their namespaces and addresses (storage .10+, dom0 .20+, guests .100+). */
export function planHosts(options: LabOptions): LabHost[] {
  const base = options.subnet.replace(/\.0\/24$/, '');
  const hosts: LabHost[] = [];
  const add = (role: AgentRole, prefix: string, count: number, firstOctet: number) => {
    for (let i = 0; i < count; i++) {
      const name = `${prefix}${i}`;
      const address = `${base}.${firstOctet + i}`;
      hosts.push({
        name,
        role,
        namespace: `${options.name}-${name}`,
        address,
        agentAddress: `${address}:${options.agentPort}`,
        agentConfig: path.join(options.dir, 'hosts', name, 'agent.json'),
        dataDir: path.join(options.dir, 'hosts', name),
      });
    }
  };
  add('storage', 'storage', options.storage, 10);
  add('dom0', 'host', options.dom0, 20);
  add('guest', 'guest', options.guests, 100);
  return hosts;
}

/** tgtd's control port for a lab, fixed by its name so two labs never share one. */
export function tgtControlPort(name: string): number {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.charCodeAt(0)) % 50_000;
  return 1000 + hash;
}

export async function readLabFile(dir: string): Promise<LabFile | undefined> {
  try {
    return JSON.parse(await readFile(labFilePath(dir), 'utf8')) as LabFile;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function writeLabFile(lab: LabFile): Promise<void> {
  const tmp = `${labFilePath(lab.dir)}.tmp`;
  await writeFile(tmp, `${JSON.stringify(lab, null, 2)}\n`);
  await rename(tmp, labFilePath(lab.dir));
}

export function natsConfig(address: string, storeDir: string): string {
  // JetStream would default to 75% of RAM; the lab needs little.
  return [`listen: "${address}:4222"`, `http: "${address}:8222"`, `server_name: lab`, `jetstream { store_dir: "${storeDir}", max_memory_store: 256MB, max_file_store: 2GB }`, ''].join('\n');
}

export function tcpOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port, timeout: 500 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/**
 * Addresses of /etc/hosts inside `subnet`: the machine reaches those names (its package
 * mirror, here: deb.debian.org is 203.0.113.80) through its own network, and a lab on
 * that subnet would route them into the bridge instead.
 */
async function hostsFileAddressesIn(subnet: string): Promise<string[]> {
  const text = await readFile('/etc/hosts', 'utf8').catch(() => '');
  return text
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim().split(/\s+/))
    .filter(([address]) => address !== undefined && /^\d+\.\d+\.\d+\.\d+$/.test(address) && !address.startsWith('127.') && cidrOverlap(address, subnet))
    .map(([address, ...names]) => `${address} (${names.join(' ')} in /etc/hosts)`);
}

/**
 * The record of a lab about to be brought up (or converged): refuses a directory that
 * holds another lab, or this one in the other tier or TLS mode; keeps the processes of
 * the existing record that still run.
 */
export async function newLabRecord(options: LabOptions, hosts: LabHost[], tier: 'namespaces' | 'vm', natsAddress: string): Promise<LabFile> {
  const existing = await readLabFile(options.dir);
  if (existing && (existing.name !== options.name || existing.subnet !== options.subnet || (existing.tier ?? 'namespaces') !== tier)) {
    throw new VcstorError('ALREADY_EXISTS', `${options.dir} holds lab ${existing.name} (${existing.tier ?? 'namespaces'}) on ${existing.subnet}; run lab down first or use another --dir`);
  }
  // Converging would keep agents that serve the other way: the record would lie.
  if (existing && (existing.tls === undefined) !== (options.insecure === true)) {
    throw new VcstorError('FAILED_PRECONDITION', `lab ${existing.name} is up with ${existing.tls ? 'mTLS' : 'plaintext (--insecure)'} agents; run lab down first, or run up ${existing.tls ? 'without' : 'with'} --insecure`);
  }
  const base = options.subnet.replace(/\.0\/24$/, '');
  const lab: LabFile = {
    name: options.name,
    subnet: options.subnet,
    dir: options.dir,
    createdUnixMs: existing?.createdUnixMs ?? Date.now(),
    switchNamespace: `${options.name}-sw`,
    coordinatorLink: `${options.name}-c`,
    coordinatorAddress: `${base}.1`,
    hosts,
    natsUrl: `nats://${natsAddress}:4222`,
    natsMonitorUrl: `http://${natsAddress}:8222`,
    tgtControlPort: tgtControlPort(options.name),
    processes: [],
    ...(tier === 'vm' ? { tier } : {}),
    ...(options.insecure ? {} : { tls: labTlsFiles(options.dir, false)! }),
  };
  for (const proc of existing?.processes ?? []) if (await isRunning(proc)) lab.processes.push(proc);
  return lab;
}

/** A lab joins the root namespace to its bridge: never on a network the machine uses. */
export async function refuseUsedSubnet(network: LabNetwork, options: LabOptions): Promise<void> {
  const clashes = [...(await network.overlappingRoutes(options.subnet, `${options.name}-c`)), ...(await hostsFileAddressesIn(options.subnet))];
  if (clashes.length > 0) {
    throw new VcstorError('FAILED_PRECONDITION', `subnet ${options.subnet} is already used on this machine (${clashes.join(', ')}); choose another with --subnet`);
  }
}

/** Progress of `up`/`down`, for people. */
export type LabReporter = (message: string) => void;
