import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import type { ProtoGrpcType as CoordinatorProto } from './generated/coordinator.js';
import type { ProtoGrpcType as Dom0Proto } from './generated/dom0.js';
import type { ProtoGrpcType as GuestProto } from './generated/guest.js';
import type { ProtoGrpcType as StorageProto } from './generated/storage.js';

/** proto/ at the package root; this file runs from dist/common/. */
export const PROTO_ROOT = fileURLToPath(new URL('../../proto', import.meta.url));

export const PROTO_FILES = [
  'vcstor/v1/common.proto',
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

export type VcstorGrpc = StorageProto & Dom0Proto & GuestProto & CoordinatorProto;

let cached: { definition: protoLoader.PackageDefinition; grpcObject: VcstorGrpc } | undefined;

/** The vcstor.v1 package, loaded once: its definition (for reflection) and typed services. */
export function loadVcstorProto(): { definition: protoLoader.PackageDefinition; grpcObject: VcstorGrpc } {
  if (!cached) {
    const definition = protoLoader.loadSync([...PROTO_FILES], LOADER_OPTIONS);
    cached = { definition, grpcObject: grpc.loadPackageDefinition(definition) as unknown as VcstorGrpc };
  }
  return cached;
}

/** Fully qualified service names, as health checks and reflection know them. */
export const SERVICE_NAMES = {
  storage: 'vcstor.v1.StorageAgent',
  dom0: 'vcstor.v1.Dom0Agent',
  guest: 'vcstor.v1.GuestAgent',
  coordinator: 'vcstor.v1.Coordinator',
} as const;
