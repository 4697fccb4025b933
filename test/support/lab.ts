import * as grpc from '@grpc/grpc-js';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { cidrOverlap } from '../../lab/network.js';
import { ExecaCommandRunner, type CommandResult, type RunOptions } from '../../common/runner.js';
import { Lab, type LabFile, type LabOptions } from '../../lab/lab.js';

/**
 * A subnet for the test lab that this machine does not use: a slice of the benchmarking
 * range, or TEST-NET-3. Machines here reach their package mirror at 203.0.113.80 (by
 * /etc/hosts), and the lab rightly refuses an overlap.
 */
function freeTestSubnet(): string {
  // The benchmarking range first: TEST-NET-3 holds this machine's package mirror in /etc/hosts.
  const candidates = ['198.18.0.0/24', '198.18.42.0/24', '198.19.7.0/24', '203.0.113.0/24'];
  let routes: Array<{ dst: string }> = [];
  try {
    routes = JSON.parse(execFileSync('ip', ['-j', 'route', 'show'], { encoding: 'utf8' })) as Array<{ dst: string }>;
  } catch {
    // no ip(8): the lab tests skip without root anyway
  }
  // The test lab's own link (vct-c) is ours: a leftover of it does not count.
  const used = routes.filter((r) => r.dst !== 'default' && (r as { dev?: string }).dev !== 'vct-c').map((r) => r.dst);
  try {
    // Names the machine resolves through /etc/hosts (its package mirror) must stay reachable.
    for (const line of readFileSync('/etc/hosts', 'utf8').split('\n')) {
      const address = line.replace(/#.*/, '').trim().split(/\s+/)[0] ?? '';
      if (/^\d+\.\d+\.\d+\.\d+$/.test(address) && !address.startsWith('127.')) used.push(address);
    }
  } catch {
    // no /etc/hosts
  }
  return candidates.find((c) => !used.some((u) => cidrOverlap(u, c))) ?? candidates[1]!;
}

/** The test lab: its own name, a subnet the machine does not route, a fixed dir that scripts/test.sh cleans. */
export const TEST_LAB: LabOptions = { name: 'vct', subnet: freeTestSubnet(), storage: 1, dom0: 1, guests: 1, dir: '/var/lib/vcstor/test-lab', agentPort: 50051, memoryBytes: 256 * 2 ** 20, diskBytesPerSecond: 80 * 2 ** 20 };

/** An address of the test lab's subnet: `labAddress(10)` is storage0. */
export function labAddress(lastOctet: number): string {
  return `${TEST_LAB.subnet.replace(/\.0\/24$/, '')}.${lastOctet}`;
}

export const runner = new ExecaCommandRunner();

/**
 * Credentials for a lab's agents, as the coordinator has them: the lab's client
 * certificate (mTLS, the default), or plaintext for a lab made with `insecure`.
 * Synchronous (the files are small), so test helpers stay simple.
 */
export function labClientCredentials(lab: Pick<LabFile, 'tls'>): grpc.ChannelCredentials {
  if (!lab.tls) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(readFileSync(lab.tls.ca), readFileSync(lab.tls.key), readFileSync(lab.tls.cert));
}

export const needsRoot = process.getuid?.() !== 0 ? 'the lab needs root' : false;

export function testLab(): Lab {
  return new Lab(runner, pino({ level: 'silent' }));
}

/** Run a command inside a lab host's network namespace. */
export function inHost(lab: LabFile, host: string, command: string, args: string[], options: RunOptions = {}): Promise<CommandResult> {
  const found = lab.hosts.find((h) => h.name === host);
  if (!found) throw new Error(`no host ${host} in the lab`);
  return runner.run('nsenter', [`--net=/run/netns/${found.namespace}`, '--', command, ...args], options);
}

/** Poll `probe` until it is true (or throw after `timeoutMs`). */
export async function eventually(what: string, probe: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}
