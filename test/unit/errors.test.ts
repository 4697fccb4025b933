import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromGrpcError, toWireError, VcstorError, type ErrorCode } from '../../common/errors.js';

describe('errors', () => {
  it('maps every code to the gRPC status of the same name', () => {
    const codes: ErrorCode[] = ['INVALID_ARGUMENT', 'NOT_FOUND', 'ALREADY_EXISTS', 'FAILED_PRECONDITION', 'PERMISSION_DENIED', 'UNAVAILABLE', 'ABORTED', 'DEADLINE_EXCEEDED', 'CANCELLED', 'RESOURCE_EXHAUSTED', 'UNIMPLEMENTED', 'INTERNAL'];
    for (const code of codes) {
      const wire = toWireError(new VcstorError(code, 'why'), 'id');
      assert.equal(wire.code, grpc.status[code], code);
      assert.equal(wire.details, 'why');
    }
  });

  it('hides unexpected errors behind INTERNAL with an error id', () => {
    const wire = toWireError(new TypeError('cannot read x of undefined at /work/secret/path.ts:12'), 'ab12cd34');
    assert.equal(wire.code, grpc.status.INTERNAL);
    assert.equal(wire.details, "internal error (see the agent's log, error id ab12cd34)");
  });

  it('marks only transient codes retryable', () => {
    assert.equal(new VcstorError('UNAVAILABLE', 'x').retryable, true);
    assert.equal(new VcstorError('INVALID_ARGUMENT', 'x').retryable, false);
    assert.equal(new VcstorError('INTERNAL', 'x', { retryable: true }).retryable, true);
  });

  it('reads a client-side gRPC error back into a VcstorError', () => {
    const serviceError = Object.assign(new Error('5 NOT_FOUND: no volume vol0'), { code: grpc.status.NOT_FOUND, details: 'no volume vol0', metadata: new grpc.Metadata() });
    const err = fromGrpcError(serviceError, 'storage0');
    assert.equal(err.code, 'NOT_FOUND');
    assert.equal(err.message, 'storage0: no volume vol0');
  });
});
