import { VcstorError } from '../common/errors.js';
import type { CommandRunner } from '../common/runner.js';

/**
 * The lab's network, through `ip` and `tc`: namespaces, veth pairs, a bridge. Every
 * function converges: it checks what exists and only adds what is missing, so running
 * `lab up` again does no harm.
 */
export class LabNetwork {
  constructor(private readonly runner: CommandRunner) {}

  async namespaces(): Promise<string[]> {
    const { stdout } = await this.runner.run('ip', ['netns', 'list']);
    return stdout
      .split('\n')
      .map((line) => line.split(' ')[0] ?? '')
      .filter(Boolean);
  }

  async ensureNamespace(namespace: string): Promise<void> {
    if ((await this.namespaces()).includes(namespace)) return;
    await this.runner.run('ip', ['netns', 'add', namespace]);
    await this.runner.run('ip', ['-n', namespace, 'link', 'set', 'lo', 'up']);
  }

  /** True when `device` exists in `namespace` (undefined: the root namespace). */
  async linkExists(device: string, namespace?: string): Promise<boolean> {
    const result = await this.runner.run('ip', [...nsArgs(namespace), 'link', 'show', 'dev', device], { okExitCodes: [0, 1] });
    return result.exitCode === 0;
  }

  async ensureBridge(namespace: string, bridge: string): Promise<void> {
    if (!(await this.linkExists(bridge, namespace))) {
      await this.runner.run('ip', ['-n', namespace, 'link', 'add', bridge, 'type', 'bridge']);
    }
    await this.runner.run('ip', ['-n', namespace, 'link', 'set', bridge, 'up']);
  }

  /**
   * A veth pair from the bridge to a host: `switchEnd` in the switch namespace, enslaved
   * to `bridge`; `hostEnd` in `hostNamespace` (undefined: the root namespace) with
   * `address` (CIDR form).
   */
  async ensureHostLink(opts: {
    switchNamespace: string;
    bridge: string;
    switchEnd: string;
    hostNamespace?: string;
    hostEnd: string;
    address: string;
  }): Promise<void> {
    const { switchNamespace, bridge, switchEnd, hostNamespace, hostEnd, address } = opts;
    if (!(await this.linkExists(switchEnd, switchNamespace))) {
      // A half-made pair (host end left from a crash) would block the name: remove it.
      if (await this.linkExists(hostEnd, hostNamespace)) await this.runner.run('ip', [...nsArgs(hostNamespace), 'link', 'del', hostEnd]);
      await this.runner.run('ip', [
        '-n', switchNamespace, 'link', 'add', switchEnd, 'type', 'veth', 'peer', 'name', hostEnd,
        ...(hostNamespace ? ['netns', hostNamespace] : ['netns', '1']),
      ]);
    }
    await this.runner.run('ip', ['-n', switchNamespace, 'link', 'set', switchEnd, 'master', bridge, 'up']);
    const { stdout } = await this.runner.run('ip', [...nsArgs(hostNamespace), '-j', 'addr', 'show', 'dev', hostEnd]);
    const present = (JSON.parse(stdout) as Array<{ addr_info?: Array<{ local: string; prefixlen: number }> }>).some((link) =>
      (link.addr_info ?? []).some((a) => `${a.local}/${a.prefixlen}` === address),
    );
    if (!present) await this.runner.run('ip', [...nsArgs(hostNamespace), 'addr', 'add', address, 'dev', hostEnd]);
    await this.runner.run('ip', [...nsArgs(hostNamespace), 'link', 'set', hostEnd, 'up']);
  }

  /** Cap a link's egress rate with tbf (e.g. "1gbit", the paper's network). */
  async shape(device: string, namespace: string | undefined, rate: string): Promise<void> {
    await this.runner.run('tc', [...nsArgs(namespace), 'qdisc', 'replace', 'dev', device, 'root', 'tbf', 'rate', rate, 'burst', '256kb', 'latency', '50ms']);
  }

  /**
   * Routes of the root namespace that overlap `subnet` (a /24), other than through
   * `ownLink`. The lab joins the root namespace to its bridge, so it must never take
   * addresses on a network the machine already uses (here the VM's own eth0 network
   * may be 192.0.2.0/24, its gateway 192.0.2.1).
   */
  async overlappingRoutes(subnet: string, ownLink: string): Promise<string[]> {
    const { stdout } = await this.runner.run('ip', ['-j', 'route', 'show']);
    const routes = JSON.parse(stdout) as Array<{ dst: string; dev?: string }>;
    return routes
      .filter((route) => route.dst !== 'default' && route.dev !== ownLink && cidrOverlap(route.dst, subnet))
      .map((route) => `${route.dst} on ${route.dev ?? '?'}`);
  }

  async deleteNamespace(namespace: string): Promise<void> {
    await this.runner.run('ip', ['netns', 'del', namespace], { okExitCodes: [0, 1] });
  }

  /**
   * Delete a link; one that is gone already is fine. Deleting a namespace destroys its
   * veth pairs asynchronously, so the peer may vanish between a check and the delete.
   */
  async deleteLink(device: string, namespace?: string): Promise<void> {
    const result = await this.runner.run('ip', [...nsArgs(namespace), 'link', 'del', device], { okExitCodes: [0, 1] });
    if (result.exitCode !== 0 && (await this.linkExists(device, namespace))) {
      throw new VcstorError('INTERNAL', `could not delete link ${device}: ${result.stderr.trim()}`);
    }
  }

  /** Pids of every process whose network namespace is `namespace`. */
  async pidsIn(namespace: string): Promise<number[]> {
    const result = await this.runner.run('ip', ['netns', 'pids', namespace], { okExitCodes: [0, 1] });
    return result.stdout.split('\n').filter(Boolean).map(Number);
  }
}

function nsArgs(namespace: string | undefined): string[] {
  return namespace ? ['-n', namespace] : [];
}

function ipv4ToInt(address: string): number | undefined {
  const parts = address.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return undefined;
  return parts.reduce((acc, p) => acc * 256 + p, 0);
}

/** True when two IPv4 CIDR ranges (or addresses) share any address. */
export function cidrOverlap(a: string, b: string): boolean {
  const range = (cidr: string): [number, number] | undefined => {
    const [address = '', bitsText] = cidr.split('/');
    const start = ipv4ToInt(address);
    if (start === undefined) return undefined;
    const bits = bitsText === undefined ? 32 : Number(bitsText);
    const size = 2 ** (32 - bits);
    const first = Math.floor(start / size) * size;
    return [first, first + size - 1];
  };
  const ra = range(a);
  const rb = range(b);
  if (!ra || !rb) return false;
  return ra[0] <= rb[1] && rb[0] <= ra[1];
}
