import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startAgent, type AgentDefinition, type RunningAgent } from '../../common/agent.js';
import { agentConfigSchema, type AgentConfig, type AgentRole } from '../../common/config.js';
import type { Logger } from '../../common/log.js';
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

/** Start an agent of `role` on 127.0.0.1 (a free port), plaintext unless `tls` is given. */
export async function startTestAgent(
  role: AgentRole,
  extra: Record<string, unknown> = {},
  log?: Logger,
): Promise<RunningAgent> {
  const config = agentConfigSchema.parse({ role, name: `${role}-test`, listen: '127.0.0.1:0', tls: { insecure: true }, logLevel: 'warn', ...extra });
  return startAgent(config, DEFINITIONS[role], { log: log ?? pino({ level: 'silent' }) });
}
