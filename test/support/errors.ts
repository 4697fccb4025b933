import assert from 'node:assert/strict';
import { VcstorError, type ErrorCode } from '../../common/errors.js';

/** An assert.rejects checker: a VcstorError with this code and a message matching `message`. */
export function vcstorError(code: ErrorCode, message?: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof VcstorError, `expected a VcstorError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  };
}

/** `call` fails with a VcstorError of `code` whose message matches `pattern`. */
export async function expectCode(call: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(call, vcstorError(code as ErrorCode, pattern));
}

/** The VcstorError `promise` rejects with (fails the test when it resolves or rejects with anything else). */
export async function rejects(promise: Promise<unknown>): Promise<VcstorError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof VcstorError, `expected a VcstorError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a rejection');
}
