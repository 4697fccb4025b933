import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { NetworkLink } from './generated/vcstor/v1/NetworkLink.js';
import type { CommandRunner } from './runner.js';

/**
 * The rate a root token-bucket qdisc holds a device to, from `tc -j qdisc show dev X`
 * (tbf's rate is in bytes/s there), in bit/s; 0 when there is none.
 */
export function shapedBitsPerSecond(tcJson: string): number {
  let qdiscs: unknown;
  try {
    qdiscs = JSON.parse(tcJson);
  } catch {
    return 0;
  }
  if (!Array.isArray(qdiscs)) return 0;
  for (const q of qdiscs as Array<{ kind?: unknown; root?: unknown; options?: { rate?: unknown } }>) {
    if (q.kind === 'tbf' && q.root === true && typeof q.options?.rate === 'number') return q.options.rate * 8;
  }
  return 0;
}

/** One link of `ip -j link show`, the fields used here. */
interface IpLink {
  ifindex?: number;
  ifname?: string;
  flags?: string[];
  link_type?: string;
  address?: string;
}

/**
 * The host's network links that are up, but loopback: each one's speed as the kernel
 * reports it and the rate it is shaped to (the lab shapes every host's link with tc tbf,
 * `lab up --rate`). The links come from netlink (`ip -j link show`), which answers for
 * the agent's own network namespace; /sys/class/net answers for the namespace sysfs was
 * mounted in, so a speed is read there only for the same link (name, index and address
 * agree). Best effort: what cannot be read is 0.
 */
export async function describeLinks(runner: CommandRunner, sysClassNet = '/sys/class/net'): Promise<NetworkLink[]> {
  const listed = await runner.run('ip', ['-j', 'link', 'show'], { timeoutMs: 5_000 }).catch(() => undefined);
  let links: IpLink[] = [];
  try {
    links = listed ? (JSON.parse(listed.stdout) as IpLink[]) : [];
  } catch {
    links = [];
  }
  const up = links.filter((l) => l.ifname && l.link_type !== 'loopback' && (l.flags ?? []).includes('UP'));
  return Promise.all(
    up.map(async (link) => {
      const name = link.ifname!;
      const sys = async (file: string) => (await readFile(path.join(sysClassNet, name, file), 'utf8').catch(() => '')).trim();
      const sameLink = Number(await sys('ifindex')) === link.ifindex && (await sys('address')) === (link.address ?? '');
      // EINVAL for virtual links without a speed; -1 for a link that is down.
      const speed = sameLink ? Number(await sys('speed')) : 0;
      const tc = await runner.run('tc', ['-j', 'qdisc', 'show', 'dev', name], { okExitCodes: [0, 1, 2], timeoutMs: 5_000 }).catch(() => undefined);
      return { name, speedMbps: Number.isFinite(speed) && speed > 0 ? speed : 0, shapedBitsPerSecond: tc?.exitCode === 0 ? shapedBitsPerSecond(tc.stdout) : 0 };
    }),
  );
}
