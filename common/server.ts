import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import * as protoLoader from '@grpc/proto-loader';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import { readFile } from 'node:fs/promises';
import type { TlsConfig } from './config.js';
import { VcstorError } from './errors.js';
import { makeHandlers, type HandlerSettings, type Operations } from './handlers.js';
import type { Logger } from './log.js';
import { loadVcstorProto, LOADER_OPTIONS, PROTO_FILES, qualifiedServiceName, type ServiceHandlers, type ServiceName } from './proto.js';

/** One service a server offers: its full name, definition and handlers. */
export interface ServedService {
  name: string;
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
}

/**
 * A vcstor.v1 service with its operations, ready to serve: methods without an operation
 * answer UNIMPLEMENTED (see makeHandlers).
 */
export function servedService<S extends ServiceName>(service: S, operations: Operations<ServiceHandlers[S]>, settings: HandlerSettings): ServedService {
  const definition = loadVcstorProto().grpcObject.vcstor.v1[service].service;
  return { name: qualifiedServiceName(service), definition, implementation: makeHandlers(definition, operations, settings) };
}

/** A started gRPC server. */
export interface RunningServer {
  /** The port bound (useful with port 0). */
  port: number;
  /** host:port clients can dial. */
  address: string;
  /**
   * Stop: health turns NOT_SERVING, new calls are refused, running calls get
   * `graceMs` to finish, then are cut off.
   */
  shutdown(graceMs?: number): Promise<void>;
}

/**
 * Server credentials: mTLS (client certs required and checked against the CA), or
 * plaintext only when the config says `insecure: true` explicitly.
 * @throws VcstorError FAILED_PRECONDITION when a PEM file cannot be read.
 */
export async function serverCredentials(tls: TlsConfig): Promise<grpc.ServerCredentials> {
  if (tls.insecure) return grpc.ServerCredentials.createInsecure();
  const read = async (what: string, file: string | undefined) => {
    if (!file) throw new VcstorError('FAILED_PRECONDITION', `tls.${what} is not set`);
    try {
      return await readFile(file);
    } catch (err) {
      throw new VcstorError('FAILED_PRECONDITION', `cannot read tls.${what} ${file}: ${(err as Error).message}`, { cause: err });
    }
  };
  const [ca, cert, key] = await Promise.all([read('ca', tls.ca), read('cert', tls.cert), read('key', tls.key)]);
  return grpc.ServerCredentials.createSsl(ca, [{ private_key: key, cert_chain: cert }], true);
}

let reflected: protoLoader.PackageDefinition | undefined;

/** vcstor.v1 and grpc.health.v1, for server reflection. */
function reflectionDefinition(): protoLoader.PackageDefinition {
  reflected ??= protoLoader.loadSync([...PROTO_FILES, healthProtoPath], LOADER_OPTIONS);
  return reflected;
}

/**
 * Start a gRPC server with `services`, the standard health service (grpc.health.v1:
 * "" and each service name SERVING once bound) and server reflection (v1 and v1alpha).
 * @throws VcstorError UNAVAILABLE when the address cannot be bound.
 */
export async function startGrpcServer(options: {
  listen: string;
  tls: TlsConfig;
  services: readonly ServedService[];
  log: Logger;
}): Promise<RunningServer> {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  const health = new HealthImplementation({ '': 'NOT_SERVING' });
  health.addToServer(server);
  // Reflection describes only what this server really serves, plus health.
  new ReflectionService(reflectionDefinition(), {
    services: [...options.services.map((s) => s.name), 'grpc.health.v1.Health'],
  }).addToServer(server);
  for (const service of options.services) {
    server.addService(service.definition, service.implementation);
    health.setStatus(service.name, 'NOT_SERVING');
  }
  const credentials = await serverCredentials(options.tls);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.listen, credentials, (err, bound) => {
      if (err) reject(new VcstorError('UNAVAILABLE', `cannot listen on ${options.listen}: ${err.message}`, { cause: err }));
      else resolve(bound);
    });
  });
  const setAll = (status: 'SERVING' | 'NOT_SERVING') => {
    health.setStatus('', status);
    for (const service of options.services) health.setStatus(service.name, status);
  };
  setAll('SERVING');
  const host = options.listen.replace(/:\d+$/, '');
  const address = `${host}:${port}`;
  options.log.info({ address, services: options.services.map((s) => s.name), tls: !options.tls.insecure }, 'serving');
  return {
    port,
    address,
    shutdown: async (graceMs = 5000) => {
      setAll('NOT_SERVING');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}
