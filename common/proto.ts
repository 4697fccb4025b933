import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import type { ProtoGrpcType as BenchmarkProto } from './generated/benchmark.js';
import type { ProtoGrpcType as CommonProto } from './generated/common.js';
import type { ProtoGrpcType as CoordinatorProto } from './generated/coordinator.js';
import type { ProtoGrpcType as Dom0Proto } from './generated/dom0.js';
import type { ProtoGrpcType as GuestProto } from './generated/guest.js';
import type { ProtoGrpcType as HostProto } from './generated/host.js';
import type { ProtoGrpcType as LoadProto } from './generated/load.js';
import type { ProtoGrpcType as StorageProto } from './generated/storage.js';
import type { BenchmarksClient, BenchmarksHandlers } from './generated/vcstor/v1/Benchmarks.js';
import type { CoordinatorClient, CoordinatorHandlers } from './generated/vcstor/v1/Coordinator.js';
import type { Dom0AgentClient, Dom0AgentHandlers } from './generated/vcstor/v1/Dom0Agent.js';
import type { GuestAgentClient, GuestAgentHandlers } from './generated/vcstor/v1/GuestAgent.js';
import type { HostAccountingClient, HostAccountingHandlers } from './generated/vcstor/v1/HostAccounting.js';
import type { HostStorageClient, HostStorageHandlers } from './generated/vcstor/v1/HostStorage.js';
import type { LoadSessionsClient, LoadSessionsHandlers } from './generated/vcstor/v1/LoadSessions.js';
import type { StorageAgentClient, StorageAgentHandlers } from './generated/vcstor/v1/StorageAgent.js';

/** proto/ at the package root; this file runs from dist/common/. */
export const PROTO_ROOT = fileURLToPath(new URL('../../proto', import.meta.url));

/** Every file of vcstor.v1: each service is defined in one of them, once. */
export const PROTO_FILES = [
  'vcstor/v1/common.proto',
  'vcstor/v1/host.proto',
  'vcstor/v1/load.proto',
  'vcstor/v1/benchmark.proto',
  'vcstor/v1/storage.proto',
  'vcstor/v1/dom0.proto',
  'vcstor/v1/guest.proto',
  'vcstor/v1/coordinator.proto',
] as const;

/** The API version every vcstor process serves. */
export const API_VERSION = 'vcstor.v1';

/**
 * The loader options the TypeScript types were generated with (package.json "gen"):
 * they must stay in step, or the types lie about what arrives.
 */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

export type VcstorGrpc = CommonProto & HostProto & LoadProto & BenchmarkProto & StorageProto & Dom0Proto & GuestProto & CoordinatorProto;

let cached: { definition: protoLoader.PackageDefinition; grpcObject: VcstorGrpc } | undefined;

/** The vcstor.v1 package, loaded once: its definition (for reflection) and typed services. */
export function loadVcstorProto(): { definition: protoLoader.PackageDefinition; grpcObject: VcstorGrpc } {
  if (!cached) {
    const definition = protoLoader.loadSync([...PROTO_FILES], LOADER_OPTIONS);
    cached = { definition, grpcObject: grpc.loadPackageDefinition(definition) as unknown as VcstorGrpc };
  }
  return cached;
}

/** The generated handler interface of each vcstor.v1 service, by its short name. */
export interface ServiceHandlers {
  StorageAgent: StorageAgentHandlers;
  Dom0Agent: Dom0AgentHandlers;
  GuestAgent: GuestAgentHandlers;
  Coordinator: CoordinatorHandlers;
  HostStorage: HostStorageHandlers;
  LoadSessions: LoadSessionsHandlers;
  Benchmarks: BenchmarksHandlers;
  HostAccounting: HostAccountingHandlers;
}

/** The generated client interface of each vcstor.v1 service, by its short name. */
export interface ServiceClients {
  StorageAgent: StorageAgentClient;
  Dom0Agent: Dom0AgentClient;
  GuestAgent: GuestAgentClient;
  Coordinator: CoordinatorClient;
  HostStorage: HostStorageClient;
  LoadSessions: LoadSessionsClient;
  Benchmarks: BenchmarksClient;
  HostAccounting: HostAccountingClient;
}

/** A vcstor.v1 service's short name, e.g. "HostStorage". */
export type ServiceName = keyof ServiceHandlers;

/** A service's fully qualified name, as health checks and reflection know it: "vcstor.v1.HostStorage". */
export function qualifiedServiceName<S extends ServiceName>(service: S): `vcstor.v1.${S}` {
  return `vcstor.v1.${service}`;
}

/** A process that serves vcstor.v1: one of the three agents, or the coordinator. */
export type ServerRole = 'storage' | 'dom0' | 'guest' | 'coordinator';

/**
 * The services each role serves, its own first: every agent serves HostAccounting; the
 * dom0 and guest agents also HostStorage, LoadSessions and Benchmarks. Agents start with
 * exactly these (startAgent checks), and makeClient puts all of them on one channel.
 */
export const ROLE_SERVICES = {
  // HostStorage: a storage server that reaches another's storage (a NAS head logs in to a LUN and re-exports it).
  storage: ['StorageAgent', 'HostStorage', 'HostAccounting'],
  dom0: ['Dom0Agent', 'HostStorage', 'LoadSessions', 'Benchmarks', 'HostAccounting'],
  guest: ['GuestAgent', 'HostStorage', 'LoadSessions', 'Benchmarks', 'HostAccounting'],
  coordinator: ['Coordinator'],
} as const satisfies Record<ServerRole, readonly ServiceName[]>;

/** The fully qualified names of the services `role` serves, in ROLE_SERVICES order. */
export function roleServiceNames(role: ServerRole): string[] {
  return ROLE_SERVICES[role].map((s) => qualifiedServiceName(s));
}

/** Each role's own service's fully qualified name (the one with its GetInfo). */
export const SERVICE_NAMES = {
  storage: 'vcstor.v1.StorageAgent',
  dom0: 'vcstor.v1.Dom0Agent',
  guest: 'vcstor.v1.GuestAgent',
  coordinator: 'vcstor.v1.Coordinator',
} as const satisfies { [R in ServerRole]: `vcstor.v1.${(typeof ROLE_SERVICES)[R][0]}` };
