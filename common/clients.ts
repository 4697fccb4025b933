import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { readFile } from 'node:fs/promises';
import { fromGrpcError, VcstorError } from './errors.js';
import type { CoordinatorClient } from './generated/vcstor/v1/Coordinator.js';
import type { Dom0AgentClient } from './generated/vcstor/v1/Dom0Agent.js';
import type { GetInfoResponse__Output } from './generated/vcstor/v1/GetInfoResponse.js';
import type { GuestAgentClient } from './generated/vcstor/v1/GuestAgent.js';
import type { StorageAgentClient } from './generated/vcstor/v1/StorageAgent.js';
import { loadVcstorProto } from './proto.js';

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

/** The typed clients of every vcstor service. */
export interface AgentClients {
  storage: StorageAgentClient;
  dom0: Dom0AgentClient;
  guest: GuestAgentClient;
  coordinator: CoordinatorClient;
}

/** A typed client for one service at `address` (host:port). Close it when done. */
export function makeClient<K extends keyof AgentClients>(kind: K, address: string, credentials: grpc.ChannelCredentials): AgentClients[K] {
  const v1 = loadVcstorProto().grpcObject.vcstor.v1;
  const constructors = {
    storage: v1.StorageAgent,
    dom0: v1.Dom0Agent,
    guest: v1.GuestAgent,
    coordinator: v1.Coordinator,
  };
  return new constructors[kind](address, credentials) as AgentClients[K];
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
  const callOptions: grpc.CallOptions = { deadline: Date.now() + options.timeoutMs };
  if (options.parent) callOptions.parent = options.parent;
  return new Promise<Res>((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(new VcstorError('CANCELLED', 'the call was cancelled before it started'));
      return;
    }
    const full = method as unknown as FullUnaryMethod<Req, Res>;
    const call = full.call(client, request, new grpc.Metadata(), callOptions, (err, response) => {
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
 * GetInfo from whichever agent role serves at `address` (each serves only its own
 * role's service, so the others answer UNIMPLEMENTED).
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
