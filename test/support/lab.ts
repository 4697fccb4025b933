import { pino } from 'pino';
import { ExecaCommandRunner, type CommandResult, type RunOptions } from '../../common/runner.js';
import { Lab, type LabFile, type LabOptions } from '../../coordinator/lab/lab.js';

/** The test lab: its own name, TEST-NET-3, a fixed dir that scripts/test.sh cleans. */
export const TEST_LAB: LabOptions = { name: 'vct', subnet: '203.0.113.0/24', storage: 1, dom0: 1, guests: 1, dir: '/var/lib/vcstor/test-lab', agentPort: 50051 };

export const runner = new ExecaCommandRunner();

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
