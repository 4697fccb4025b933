import type * as grpc from '@grpc/grpc-js';
import { fromGrpcError, VcstorError } from '../common/errors.js';

/** How {@link serverStream} reads one server-streaming call. */
export interface ServerStreamOptions<M, R> {
  /** What the call is, for errors: "create image", "the benchmark on the guest agent at ...". */
  what: string;
  /** The call's deadline, from now. */
  timeoutMs: number;
  /** Cancels the call; its error is then CANCELLED. */
  signal?: AbortSignal | undefined;
  /** Read one message: its result, if it carries one (the last one read wins); pass progress on here. */
  onMessage(message: M): R | undefined;
}

/**
 * A server-streaming call (CreateImage, RunBenchmark, RunLoad) read to its end: progress
 * goes to `onMessage`, and the promise settles with the result the stream carried. Not
 * idempotent by itself (it is the call's own semantics); times out after `timeoutMs`.
 * @throws VcstorError with the server's status code, named by `what`; CANCELLED when
 *   `signal` aborted the call; INTERNAL when the stream ended without a result.
 */
export function serverStream<M, R>(start: (options: grpc.CallOptions) => grpc.ClientReadableStream<M>, o: ServerStreamOptions<M, R>): Promise<R> {
  return new Promise((resolve, reject) => {
    const call = start({ deadline: Date.now() + o.timeoutMs });
    const onAbort = () => call.cancel();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    let result: R | undefined;
    call.on('data', (m: M) => {
      const r = o.onMessage(m);
      if (r !== undefined) result = r;
    });
    call.on('error', (err: grpc.ServiceError) => {
      o.signal?.removeEventListener('abort', onAbort);
      const e = fromGrpcError(err, o.what);
      reject(o.signal?.aborted ? new VcstorError('CANCELLED', e.message) : e);
    });
    call.on('end', () => {
      o.signal?.removeEventListener('abort', onAbort);
      if (result !== undefined) resolve(result);
      else reject(new VcstorError('INTERNAL', `${o.what}: the stream ended without a result`));
    });
  });
}
