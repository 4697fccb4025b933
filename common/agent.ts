import { availableParallelism, hostname, release } from 'node:os';
import type { AgentConfig, AgentRole } from './config.js';
import { describeDrivers, type DriverRequirements } from './requirements.js';
import { describeLinks } from './links.js';
import type { GetInfoRequest__Output } from './generated/vcstor/v1/GetInfoRequest.js';
import type { GetInfoResponse } from './generated/vcstor/v1/GetInfoResponse.js';
import type { Role } from './generated/vcstor/v1/Role.js';
import type { HandlerSettings, UnaryOperation } from './handlers.js';
import { createLogger, type Logger } from './log.js';
import { API_VERSION, roleServiceNames } from './proto.js';
import { ExecaCommandRunner, type CommandRunner } from './runner.js';
import { startGrpcServer, type RunningServer, type ServedService } from './server.js';
import { VCSTOR_VERSION } from './version.js';

/** What every agent's service layer is built on. */
export interface AgentRuntime<C extends AgentConfig = AgentConfig> extends HandlerSettings {
  config: C;
  log: Logger;
  runner: CommandRunner;
  startedUnixMs: number;
  shutdownSignal: AbortSignal;
}

/** An agent role: its drivers, which of them the config selects, and its services. */
export interface AgentDefinition<C extends AgentConfig> {
  role: AgentRole;
  drivers: readonly DriverRequirements[];
  /** The driver chosen for each concern, e.g. { "iscsi-target": "tgt" }. */
  selectedDrivers(config: C): Record<string, string>;
  /**
   * The role's gRPC services, exactly those ROLE_SERVICES names for the role (its own
   * service, with `getInfo` as its GetInfo, and the shared ones it serves).
   */
  createServices(runtime: AgentRuntime<C>, getInfo: UnaryOperation<GetInfoRequest__Output, GetInfoResponse>): readonly ServedService[] | Promise<readonly ServedService[]>;
}

/** A started agent. */
export interface RunningAgent {
  server: RunningServer;
  runtime: AgentRuntime;
  /** Cancel running calls, stop serving; idempotent. */
  stop(graceMs?: number): Promise<void>;
}

const ROLE_ENUM: Record<AgentRole, Role> = { storage: 'ROLE_STORAGE', dom0: 'ROLE_DOM0', guest: 'ROLE_GUEST' };

/**
 * Start an agent: build its runtime and services, serve them with health and reflection.
 * @param overrides a runner or logger to use instead of the real ones (tests).
 * @throws Error when the definition's services are not the role's (ROLE_SERVICES).
 */
export async function startAgent<C extends AgentConfig>(
  config: C,
  definition: AgentDefinition<C>,
  overrides: { runner?: CommandRunner; log?: Logger } = {},
): Promise<RunningAgent> {
  const log = overrides.log ?? createLogger({ name: `agent-${config.role}`, level: config.logLevel });
  const shutdown = new AbortController();
  const runtime: AgentRuntime<C> = {
    config,
    log: log.child({ agent: config.name }),
    runner: overrides.runner ?? new ExecaCommandRunner(log),
    startedUnixMs: Date.now(),
    shutdownSignal: shutdown.signal,
    maxCallMs: config.maxCallMs,
  };
  const getInfo: UnaryOperation<GetInfoRequest__Output, GetInfoResponse> = async () => ({
    name: config.name,
    role: ROLE_ENUM[config.role],
    version: VCSTOR_VERSION,
    apiVersion: API_VERSION,
    hostname: hostname(),
    startedUnixMs: runtime.startedUnixMs,
    drivers: await describeDrivers(definition.drivers, definition.selectedDrivers(config), runtime.runner),
    kernel: release(),
    cpus: availableParallelism(),
    links: await describeLinks(runtime.runner),
  });
  // Agents may converge with their record (re-apply exports, ...) before they serve.
  const services = await definition.createServices(runtime, getInfo);
  const served = services.map((s) => s.name);
  const expected = roleServiceNames(config.role);
  if (served.length !== expected.length || served.some((name, i) => name !== expected[i])) {
    shutdown.abort(); // loops the definition started (the storage agent's reconcile) end with it
    throw new Error(`the ${config.role} agent must serve ${expected.join(', ')}; its definition serves ${served.join(', ')}`);
  }
  const server = await startGrpcServer({ listen: config.listen, tls: config.tls, services, log: runtime.log });
  let stopping: Promise<void> | undefined;
  return {
    server,
    runtime,
    stop: (graceMs = 5000) => {
      stopping ??= (async () => {
        shutdown.abort();
        await server.shutdown(graceMs);
        runtime.log.info('stopped');
      })();
      return stopping;
    },
  };
}

/** Run an agent until SIGTERM or SIGINT, then stop it cleanly (the `vcstor agent` command). */
export async function runAgentUntilSignalled<C extends AgentConfig>(config: C, definition: AgentDefinition<C>): Promise<void> {
  const agent = await startAgent(config, definition);
  await new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      agent.runtime.log.info({ signal }, 'stopping');
      agent.stop().then(resolve, resolve);
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
}
