import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startAgent, type AgentDefinition, type RunningAgent } from '../../common/agent.js';
import { agentConfigSchema, type AgentConfig, type AgentRole } from '../../common/config.js';
import type { Logger } from '../../common/log.js';
import type { CommandRunner } from '../../common/runner.js';
import { dom0Agent } from '../../agent-dom0/service.js';
import { guestAgent } from '../../agent-guest/service.js';
import { storageAgent } from '../../agent-storage/service.js';

export const DEFINITIONS: Record<AgentRole, AgentDefinition<AgentConfig>> = {
  storage: storageAgent as unknown as AgentDefinition<AgentConfig>,
  dom0: dom0Agent as unknown as AgentDefinition<AgentConfig>,
  guest: guestAgent as unknown as AgentDefinition<AgentConfig>,
};

/** A logger that keeps every line it writes, for assertions about what was logged. */
export function capturingLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { log: pino({ level: 'debug' }, sink), lines };
}

/** A private directory per test agent: nothing a test agent does touches the host's paths. */
const scratch = mkdtempSync(path.join(tmpdir(), 'vcstor-test-agents-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

function privatePaths(role: AgentRole, dir: string): Record<string, unknown> {
  switch (role) {
    case 'storage':
      return {
        storage: {
          volumes: { driver: 'filepool', poolDir: path.join(dir, 'pool') },
          // A control port no tgtd listens on: calls that reach tgt fail, none touch a real one.
          iscsiTarget: { driver: 'tgt', tgtControlPort: 65_000 },
          nfsServer: { driver: 'ganesha', exportRoot: path.join(dir, 'exports'), ganeshaConfig: path.join(dir, 'ganesha.conf'), ganeshaPidFile: path.join(dir, 'ganesha.pid') },
          reconcileIntervalMs: 3_600_000,
        },
      };
    case 'dom0':
      return { dom0: { imageRoots: [path.join(dir, 'images')], mountRoot: path.join(dir, 'mnt'), hypervisor: { driver: 'sandbox', configDir: path.join(dir, 'domains') } } };
    case 'guest':
      return { guest: { mountRoot: path.join(dir, 'mnt') } };
  }
}

/**
 * Start an agent of `role` on 127.0.0.1 (a free port), plaintext unless `tls` is given,
 * with every directory private to it (`extra` may override them).
 */
export async function startTestAgent(
  role: AgentRole,
  extra: Record<string, unknown> = {},
  log?: Logger,
  runner?: CommandRunner,
): Promise<RunningAgent> {
  const dir = mkdtempSync(path.join(scratch, `${role}-`));
  const config = agentConfigSchema.parse({
    role,
    name: `${role}-test`,
    listen: '127.0.0.1:0',
    tls: { insecure: true },
    logLevel: 'warn',
    stateDir: path.join(dir, 'state'),
    ...privatePaths(role, dir),
    ...extra,
  });
  return startAgent(config, DEFINITIONS[role], { log: log ?? pino({ level: 'silent' }), ...(runner ? { runner } : {}) });
}
