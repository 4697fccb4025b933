import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { readFile } from 'node:fs/promises';
import { fromGrpcError, VcstorError } from './errors.js';
import type { BenchmarksClient } from './generated/vcstor/v1/Benchmarks.js';
import type { CoordinatorClient } from './generated/vcstor/v1/Coordinator.js';
import type { Dom0AgentClient } from './generated/vcstor/v1/Dom0Agent.js';
import type { GetInfoResponse__Output } from './generated/vcstor/v1/GetInfoResponse.js';
import type { GuestAgentClient } from './generated/vcstor/v1/GuestAgent.js';
import type { HostAccountingClient } from './generated/vcstor/v1/HostAccounting.js';
import type { HostStorageClient } from './generated/vcstor/v1/HostStorage.js';
import type { LoadSessionsClient } from './generated/vcstor/v1/LoadSessions.js';
import type { StorageAgentClient } from './generated/vcstor/v1/StorageAgent.js';
import { loadVcstorProto, ROLE_SERVICES, type ServerRole } from './proto.js';

/** How a client reaches a server: plaintext (explicitly) or mTLS with PEM files. */
export type ClientTls = { insecure: true } | { insecure?: false; ca: string; cert: string; key: string };

/** Channel credentials for `tls`. @throws VcstorError FAILED_PRECONDITION if a file cannot be read. */
export async function channelCredentials(tls: ClientTls): Promise<grpc.ChannelCredentials> {
  if (tls.insecure) return grpc.credentials.createInsecure();
  try {
    const [ca, key, cert] = await Promise.all([readFile(tls.ca), readFile(tls.key), readFile(tls.cert)]);
    return grpc.credentials.createSsl(ca, key, cert);
  } catch (err) {
    throw new VcstorError('FAILED_PRECONDITION', `cannot read client TLS files: ${(err as Error).message}`, { cause: err });
  }
}

/** A storage agent: StorageAgent, HostStorage and HostAccounting, on one channel. */
export type StorageClient = StorageAgentClient & HostStorageClient & HostAccountingClient;
/** A dom0 agent: Dom0Agent, HostStorage, LoadSessions, Benchmarks and HostAccounting, on one channel. */
export type Dom0Client = Dom0AgentClient & HostStorageClient & LoadSessionsClient & BenchmarksClient & HostAccountingClient;
/** A guest agent: GuestAgent, HostStorage, LoadSessions, Benchmarks and HostAccounting, on one channel. */
export type GuestClient = GuestAgentClient & HostStorageClient & LoadSessionsClient & BenchmarksClient & HostAccountingClient;

/** The client of each role: every method of every service it serves (ROLE_SERVICES). */
export interface AgentClients {
  storage: StorageClient;
  dom0: Dom0Client;
  guest: GuestClient;
  coordinator: CoordinatorClient;
}

const roleConstructors = new Map<ServerRole, grpc.ServiceClientConstructor>();

/**
 * One client class for all the services of `role`: their methods side by side (each
 * keeps its own path, /vcstor.v1.<Service>/<Method>), so one grpc.Client, one channel.
 * @throws Error when two services of the role share a method name (the proto must not).
 */
function roleClientConstructor(role: ServerRole): grpc.ServiceClientConstructor {
  let constructor = roleConstructors.get(role);
  if (!constructor) {
    const v1 = loadVcstorProto().grpcObject.vcstor.v1;
    const methods: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
    const taken = new Set<string>();
    for (const service of ROLE_SERVICES[role]) {
      for (const [name, method] of Object.entries(v1[service].service)) {
        for (const alias of new Set([name, method.originalName ?? name])) {
          if (taken.has(alias) || alias in grpc.Client.prototype) throw new Error(`${role} client: method ${alias} of ${service} is already taken`);
          taken.add(alias);
        }
        methods[name] = method;
      }
    }
    constructor = grpc.makeGenericClientConstructor(methods, `vcstor ${role}`);
    roleConstructors.set(role, constructor);
  }
  return constructor;
}

/**
 * A typed client for the `kind` process at `address` (host:port): the methods of every
 * service that role serves, on one channel. Close it once when done.
 */
export function makeClient<K extends keyof AgentClients>(kind: K, address: string, credentials: grpc.ChannelCredentials): AgentClients[K] {
  const Constructor = roleClientConstructor(kind);
  return new Constructor(address, credentials) as unknown as AgentClients[K];
}

/** Options of one remote call: every call has a deadline; a signal cancels it. */
export interface CallOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** Pass a server call on to propagate its deadline and cancellation. */
  parent?: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>;
}

/**
 * A generated client method. Its overloads end with `(request, callback)`, the one
 * TypeScript infers from, so Req and Res come out right; it is called with metadata
 * and options, which every overload set of grpc-js accepts.
 */
type UnaryMethod<Req, Res> = (request: Req, callback: grpc.requestCallback<Res>) => grpc.ClientUnaryCall;
type FullUnaryMethod<Req, Res> = (request: Req, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<Res>) => grpc.ClientUnaryCall;

/**
 * Call a unary method as a promise with a deadline and cancellation, e.g.
 * `await unary(client, client.GetInfo, {}, { timeoutMs: 5000 })`.
 * @throws VcstorError carrying the server's status code and message.
 */
export function unary<Req, Res>(client: grpc.Client, method: UnaryMethod<Req, Res>, request: Req, options: CallOptions): Promise<Res> {
  const full = method as unknown as FullUnaryMethod<Req, Res>;
  return promiseCall(client, (metadata, callOptions, callback) => full.call(client, request, metadata, callOptions, callback), options);
}

/**
 * Call the unary method named `rpc` of a `kind` client, for calls kept as data (the
 * coordinator's journaled undo steps): the method is looked up among the services that
 * role serves, so it is reached on its own service's path.
 * @throws VcstorError INTERNAL when the role has no unary method of that name; else as unary.
 */
export function unaryByName(kind: keyof AgentClients, client: grpc.Client, rpc: string, request: unknown, options: CallOptions): Promise<unknown> {
  const definition = Object.hasOwn(roleClientConstructor(kind).service, rpc) ? roleClientConstructor(kind).service[rpc] : undefined;
  if (!definition || definition.requestStream || definition.responseStream) return Promise.reject(new VcstorError('INTERNAL', `no unary ${rpc} on the ${kind} agent`));
  return promiseCall(client, (metadata, callOptions, callback) =>
    client.makeUnaryRequest(definition.path, definition.requestSerialize, definition.responseDeserialize, request, metadata, callOptions, callback),
  options);
}

/** Start a unary call with the options' deadline, parent and signal; settle with its outcome. */
function promiseCall<Res>(
  client: grpc.Client,
  start: (metadata: grpc.Metadata, callOptions: grpc.CallOptions, callback: grpc.requestCallback<Res>) => grpc.ClientUnaryCall,
  options: CallOptions,
): Promise<Res> {
  const callOptions: grpc.CallOptions = { deadline: Date.now() + options.timeoutMs };
  if (options.parent) callOptions.parent = options.parent;
  return new Promise<Res>((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(new VcstorError('CANCELLED', 'the call was cancelled before it started'));
      return;
    }
    const call = start(new grpc.Metadata(), callOptions, (err, response) => {
      options.signal?.removeEventListener('abort', onAbort);
      if (err) reject(fromGrpcError(err, `${client.getChannel().getTarget()}`));
      else resolve(response as Res);
    });
    const onAbort = () => call.cancel();
    options.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A client's read of a server's health. */
export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

const HealthClient = grpc.makeGenericClientConstructor(healthService, 'Health');

/**
 * Ask a server's standard health service (grpc.health.v1.Health/Check) about `service`
 * ("" for the whole server).
 * @throws VcstorError UNAVAILABLE / DEADLINE_EXCEEDED when it cannot be reached.
 */
export async function checkHealth(address: string, credentials: grpc.ChannelCredentials, service = '', timeoutMs = 3000): Promise<ServingStatus> {
  const client = new HealthClient(address, credentials);
  try {
    const check = (client as unknown as { check: UnaryMethod<{ service: string }, { status: ServingStatus }> }).check;
    const response = await unary(client, check, { service }, { timeoutMs });
    return response.status;
  } finally {
    client.close();
  }
}

/**
 * GetInfo from whichever agent role serves at `address` (GetInfo is in each role's own
 * service, StorageAgent, Dom0Agent, GuestAgent or Coordinator; the others answer
 * UNIMPLEMENTED).
 */
export async function getAgentInfo(address: string, credentials: grpc.ChannelCredentials, timeoutMs = 5000): Promise<GetInfoResponse__Output> {
  let lastError: unknown;
  for (const kind of ['storage', 'dom0', 'guest', 'coordinator'] as const) {
    const client = makeClient(kind, address, credentials);
    try {
      return await unary(client, client.GetInfo, {}, { timeoutMs });
    } catch (err) {
      lastError = err;
      if (!(err instanceof VcstorError && err.code === 'UNIMPLEMENTED')) throw err;
    } finally {
      client.close();
    }
  }
  throw lastError;
}
