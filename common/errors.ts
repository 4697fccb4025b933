import * as grpc from '@grpc/grpc-js';

/**
 * Stable error codes of vcstor. They name gRPC's canonical codes so that one table
 * maps them to the wire, but they are ours: drivers and domain code throw these, never
 * raw gRPC statuses.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'PERMISSION_DENIED'
  | 'UNAVAILABLE'
  | 'ABORTED'
  | 'DEADLINE_EXCEEDED'
  | 'CANCELLED'
  | 'RESOURCE_EXHAUSTED'
  | 'UNIMPLEMENTED'
  | 'INTERNAL';

const grpcStatusByCode: Record<ErrorCode, grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  NOT_FOUND: grpc.status.NOT_FOUND,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  ABORTED: grpc.status.ABORTED,
  DEADLINE_EXCEEDED: grpc.status.DEADLINE_EXCEEDED,
  CANCELLED: grpc.status.CANCELLED,
  RESOURCE_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
  UNIMPLEMENTED: grpc.status.UNIMPLEMENTED,
  INTERNAL: grpc.status.INTERNAL,
};

/** Codes after which the same request may succeed if tried again later. */
const retryableCodes: ReadonlySet<ErrorCode> = new Set([
  'UNAVAILABLE',
  'ABORTED',
  'DEADLINE_EXCEEDED',
  'RESOURCE_EXHAUSTED',
]);

/**
 * The one error type of vcstor: a stable code, a message a user can act on, the cause
 * (kept for logs, never sent over the wire) and whether retrying can help.
 */
export class VcstorError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'VcstorError';
    this.code = code;
    this.retryable = options.retryable ?? retryableCodes.has(code);
  }

  /** The gRPC status this error crosses the wire as. */
  get grpcStatus(): grpc.status {
    return grpcStatusByCode[this.code];
  }
}

/** Shorthand for the most common error: a request field that is not acceptable. */
export function invalidArgument(field: string, problem: string): VcstorError {
  return new VcstorError('INVALID_ARGUMENT', `${field}: ${problem}`);
}

/** An operation this agent version does not implement yet. */
export function notImplemented(operation: string): VcstorError {
  return new VcstorError('UNIMPLEMENTED', `${operation} is not implemented by this agent version`);
}

/** A gRPC error as a server sends it: a status code and a message safe to show. */
export interface WireError {
  code: grpc.status;
  details: string;
}

/**
 * Turn anything thrown inside a handler into what the client sees. VcstorErrors keep
 * their message; anything else becomes INTERNAL with a reference to the log entry, so
 * no stack trace or internal detail leaks to callers.
 */
export function toWireError(err: unknown, errorId: string): WireError {
  if (err instanceof VcstorError) {
    return { code: err.grpcStatus, details: err.message };
  }
  return { code: grpc.status.INTERNAL, details: `internal error (see the agent's log, error id ${errorId})` };
}

const codeByGrpcStatus = new Map<number, ErrorCode>(
  Object.entries(grpcStatusByCode).map(([code, status]) => [status, code as ErrorCode]),
);

/**
 * Turn an error from a gRPC client call into a VcstorError, keeping the server's code
 * and message. Used by the coordinator and the CLI.
 */
export function fromGrpcError(err: unknown, what: string): VcstorError {
  if (err instanceof VcstorError) return err;
  if (isServiceError(err)) {
    const code = codeByGrpcStatus.get(err.code) ?? 'INTERNAL';
    return new VcstorError(code, `${what}: ${err.details || err.message}`, { cause: err });
  }
  return new VcstorError('INTERNAL', `${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

/** True for errors produced by @grpc/grpc-js client calls. */
export function isServiceError(err: unknown): err is grpc.ServiceError {
  return err instanceof Error && typeof (err as Partial<grpc.ServiceError>).code === 'number' && 'details' in err;
}
