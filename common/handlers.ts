import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { notImplemented, toWireError, VcstorError } from './errors.js';
import { redactSecrets, type Logger } from './log.js';

/** What every operation gets besides its request. */
export interface CallContext {
  /** Aborted when the client cancels, the call's deadline passes, or the agent stops. */
  signal: AbortSignal;
  /** When the call must be done by (epoch ms). */
  deadlineMs: number;
  /** The call's logger (method and peer bound). */
  log: Logger;
}

/** A unary operation: request in, response out. */
export type UnaryOperation<Req, Res> = (request: Req, ctx: CallContext) => Promise<Res>;
/** A server-streaming operation: sends messages (progress, then a result), then returns. */
export type StreamOperation<Req, Res> = (request: Req, ctx: CallContext, send: (message: Res) => Promise<void>) => Promise<void>;

/**
 * The operations of a service, typed from its generated handler interface (e.g.
 * StorageAgentHandlers). Any that are left out answer UNIMPLEMENTED.
 */
export type Operations<Handlers> = {
  // Generated handler interfaces extend grpc's index signature; keep only real methods.
  [Method in keyof Handlers as string extends Method ? never : Method]?: Handlers[Method] extends grpc.handleUnaryCall<infer Req, infer Res>
    ? UnaryOperation<Req, Res>
    : Handlers[Method] extends grpc.handleServerStreamingCall<infer Req, infer Res>
      ? StreamOperation<Req, Res>
      : never;
};

/** Per-process settings for handlers. */
export interface HandlerSettings {
  log: Logger;
  /** Longest a call may run when the client sets no deadline (ms). */
  maxCallMs: number;
  /** Aborted when the agent shuts down; every running call is cancelled with it. */
  shutdownSignal?: AbortSignal;
}

function callSignal(
  call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>,
  settings: HandlerSettings,
): { signal: AbortSignal; deadlineMs: number; done: () => void } {
  const controller = new AbortController();
  const rawDeadline = call.getDeadline();
  const clientDeadline = rawDeadline instanceof Date ? rawDeadline.getTime() : Number(rawDeadline);
  const deadlineMs = Math.min(Number.isFinite(clientDeadline) ? clientDeadline : Infinity, Date.now() + settings.maxCallMs);
  const timer = setTimeout(
    () => controller.abort(new VcstorError('DEADLINE_EXCEEDED', 'the call ran past its deadline')),
    Math.max(0, deadlineMs - Date.now()),
  );
  const onCancel = () => controller.abort(new VcstorError('CANCELLED', 'the client cancelled the call'));
  const onShutdown = () => controller.abort(new VcstorError('UNAVAILABLE', 'the agent is shutting down'));
  call.on('cancelled', onCancel);
  settings.shutdownSignal?.addEventListener('abort', onShutdown, { once: true });
  return {
    signal: controller.signal,
    deadlineMs,
    done: () => {
      clearTimeout(timer);
      settings.shutdownSignal?.removeEventListener('abort', onShutdown);
    },
  };
}

/** Log the outcome and turn any error into a gRPC status the client can act on. */
function toServiceError(err: unknown, log: Logger, startedMs: number): Partial<grpc.StatusObject> {
  const errorId = randomUUID().slice(0, 8);
  const wire = toWireError(err, errorId);
  const ms = Math.round(performance.now() - startedMs);
  if (err instanceof VcstorError) {
    log.warn({ code: err.code, ms, err: { message: err.message, cause: err.cause instanceof Error ? err.cause.message : undefined } }, 'call failed');
  } else {
    log.error({ errorId, ms, err }, 'call failed unexpectedly');
  }
  return { code: wire.code, details: wire.details };
}

/**
 * Turn operations into grpc-js handlers for every method of `service`: validation and
 * work happen in the operation; here the call gets its AbortSignal (deadline,
 * cancellation, shutdown), its request is logged without secrets, and errors become
 * gRPC statuses. Methods without an operation answer UNIMPLEMENTED.
 */
export function makeHandlers<Handlers>(
  service: grpc.ServiceDefinition,
  operations: Operations<Handlers>,
  settings: HandlerSettings,
): grpc.UntypedServiceImplementation {
  const handlers: grpc.UntypedServiceImplementation = {};
  const ops = operations as Record<string, UnaryOperation<unknown, unknown> | StreamOperation<unknown, unknown> | undefined>;
  for (const [method, definition] of Object.entries(service)) {
    const operation: UnaryOperation<unknown, unknown> | StreamOperation<unknown, unknown> =
      ops[method] ??
      (async () => {
        throw notImplemented(method);
      });
    if (definition.requestStream) throw new Error(`${method}: client-streaming methods are not supported`);
    handlers[method] = definition.responseStream
      ? streamHandler(method, operation as StreamOperation<unknown, unknown>, settings)
      : unaryHandler(method, operation as UnaryOperation<unknown, unknown>, settings);
  }
  return handlers;
}

function unaryHandler(method: string, operation: UnaryOperation<unknown, unknown>, settings: HandlerSettings): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    const started = performance.now();
    const log = settings.log.child({ method, peer: call.getPeer() });
    const { signal, deadlineMs, done } = callSignal(call, settings);
    log.debug({ req: redactSecrets(call.request) }, 'call');
    operation(call.request, { signal, deadlineMs, log }).then(
      (response) => {
        done();
        log.info({ ms: Math.round(performance.now() - started) }, 'call ok');
        callback(null, response);
      },
      (err: unknown) => {
        done();
        callback(toServiceError(signal.aborted && !(err instanceof VcstorError) ? signal.reason : err, log, started));
      },
    );
  };
}

function streamHandler(method: string, operation: StreamOperation<unknown, unknown>, settings: HandlerSettings): grpc.handleServerStreamingCall<unknown, unknown> {
  return (call) => {
    const started = performance.now();
    const log = settings.log.child({ method, peer: call.getPeer() });
    const { signal, deadlineMs, done } = callSignal(call, settings);
    log.debug({ req: redactSecrets(call.request) }, 'call');
    // Respect flow control: wait for 'drain' when the client reads slower than we send.
    const send = (message: unknown) =>
      new Promise<void>((resolve) => {
        if (signal.aborted || call.write(message)) resolve();
        else call.once('drain', () => resolve());
      });
    operation(call.request, { signal, deadlineMs, log }, send).then(
      () => {
        done();
        log.info({ ms: Math.round(performance.now() - started) }, 'stream ok');
        call.end();
      },
      (err: unknown) => {
        done();
        call.emit('error', toServiceError(signal.aborted && !(err instanceof VcstorError) ? signal.reason : err, log, started));
      },
    );
  };
}
