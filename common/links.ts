import { readdir, readFile } from 'node:fs/promises';
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

/**
 * The host's network links but loopback: each one's speed as the kernel reports it and
 * the rate it is shaped to (the lab shapes every host's link with tc tbf, `lab up
 * --rate`). Best effort: what cannot be read is 0.
 */
export async function describeLinks(runner: CommandRunner, sysClassNet = '/sys/class/net'): Promise<NetworkLink[]> {
  const names = (await readdir(sysClassNet).catch(() => [] as string[])).filter((n) => n !== 'lo').sort();
  return Promise.all(
    names.map(async (name) => {
      // EINVAL for virtual links without a speed; -1 for a link that is down.
      const speed = Number((await readFile(path.join(sysClassNet, name, 'speed'), 'utf8').catch(() => '')).trim());
      const tc = await runner.run('tc', ['-j', 'qdisc', 'show', 'dev', name], { okExitCodes: [0, 1, 2], timeoutMs: 5_000 }).catch(() => undefined);
      return { name, speedMbps: Number.isFinite(speed) && speed > 0 ? speed : 0, shapedBitsPerSecond: tc?.exitCode === 0 ? shapedBitsPerSecond(tc.stdout) : 0 };
    }),
  );
}
