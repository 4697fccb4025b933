import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VcstorError } from '../../common/errors.js';
import type { FioSpec__Output } from '../../common/generated/vcstor/v1/FioSpec.js';
import type { RunBenchmarkRequest__Output } from '../../common/generated/vcstor/v1/RunBenchmarkRequest.js';
import { validateRunBenchmarkRequest } from '../../host-storage/benchmarks/requests.js';

/** RunBenchmark's validation of fio's shared_file and verify_only (host-storage/benchmarks/requests.ts). */

const ROOT = '/mnt/vcstor';

/** A fio spec as the wire decodes it: every field at its default, then `fields`. */
function fioSpec(fields: Partial<FioSpec__Output>): FioSpec__Output {
  return { rw: 'write', blockSizeBytes: 0, iodepth: 0, sizeBytes: 0, runtimeS: 0, ioengine: '', numjobs: 0, direct: false, rwmixRead: 0, verify: false, sharedFile: '', verifyOnly: false, endFsync: false, ...fields };
}

function fioRequest(fields: Partial<FioSpec__Output>): RunBenchmarkRequest__Output {
  return { directory: `${ROOT}/shared`, label: '', spec: 'fio', fio: fioSpec(fields) };
}

function validate(fields: Partial<FioSpec__Output>): void {
  validateRunBenchmarkRequest(fioRequest(fields), [ROOT]);
}

function refused(fields: Partial<FioSpec__Output>, message: RegExp): void {
  assert.throws(
    () => validate(fields),
    (err: unknown) => {
      assert.ok(err instanceof VcstorError, String(err));
      assert.equal(err.code, 'INVALID_ARGUMENT');
      assert.match(err.message, message);
      return true;
    },
  );
}

describe('RunBenchmark validation: fio shared_file and verify_only', () => {
  it('accepts a writer, a verify-only reader, a timed reader and a read-and-verify on a shared file', () => {
    validate({ rw: 'randwrite', sharedFile: 'guest-a.data', verify: true, sizeBytes: 16 * 1024 * 1024 });
    validate({ rw: 'randwrite', sharedFile: 'guest-a.data', verify: true, verifyOnly: true });
    validate({ rw: 'write', sharedFile: 'A_1-b.2', verify: true, verifyOnly: true, numjobs: 1, direct: true, ioengine: 'libaio', iodepth: 16 });
    validate({ rw: 'read', sharedFile: 'guest-a.data', runtimeS: 30 });
    validate({ rw: 'randread', sharedFile: 'guest-a.data', verify: true });
    validate({ rw: 'randrw', sharedFile: 'mixed', runtimeS: 10 });
    validate({ rw: 'write', sharedFile: 'x'.repeat(100) });
    validate({ rw: 'write', sharedFile: '..data' });
  });

  it('refuses a shared_file that is a path or not a plain file name', () => {
    refused({ sharedFile: 'a/b' }, /^fio\.shared_file: "a\/b" contains "\/": give a plain file name; the file goes in <directory>\/\.vcstor-shared\/$/);
    refused({ sharedFile: '/etc/passwd' }, /fio\.shared_file: "\/etc\/passwd" contains "\/"/);
    refused({ sharedFile: '../x' }, /fio\.shared_file: "\.\.\/x" contains "\/"/);
    refused({ sharedFile: '.' }, /^fio\.shared_file: "\." is not a plain file name: 1-100 of A-Z a-z 0-9 \. _ -, not "\." or "\.\."$/);
    refused({ sharedFile: '..' }, /fio\.shared_file: "\.\." is not a plain file name/);
    refused({ sharedFile: 'x'.repeat(101) }, /fio\.shared_file: "x{101}" is not a plain file name/);
    refused({ sharedFile: 'a b' }, /fio\.shared_file: "a b" is not a plain file name/);
    refused({ sharedFile: 'a:b' }, /fio\.shared_file: "a:b" is not a plain file name/);
    refused({ sharedFile: 'data\n' }, /fio\.shared_file: "data\\n" is not a plain file name/);
    refused({ sharedFile: 'dätä' }, /fio\.shared_file: "dätä" is not a plain file name/);
  });

  it('refuses more than one job on a shared file, saying why', () => {
    refused(
      { sharedFile: 'data', numjobs: 2 },
      /^fio\.numjobs: must be 1 with shared_file \(got 2\): all of fio's jobs would use the one file and write over each other's blocks \(fio warns "multiple writers may overwrite blocks that belong to other jobs" and its verify fails\); run one job per shared file$/,
    );
    refused({ sharedFile: 'data', rw: 'read', numjobs: 4 }, /fio\.numjobs: must be 1 with shared_file \(got 4\)/);
  });

  it('refuses verify_only without shared_file or without verify', () => {
    refused({ verifyOnly: true, verify: true }, /^fio\.verify_only: needs shared_file: name the file a writer left in \.vcstor-shared to read back$/);
    refused({ verifyOnly: true, sharedFile: 'data' }, /^fio\.verify_only: needs verify: without it fio reads nothing back and checks nothing; set verify as the writer's job did$/);
  });

  it('refuses a verified mixed job on a shared file: it verifies part of the file only', () => {
    for (const rw of ['rw', 'randrw', 'readwrite']) {
      refused({ rw, sharedFile: 'data', verify: true }, new RegExp(`^fio\\.rw: "${rw}" with shared_file and verify: a mixed job writes and verifies only part of the file`));
    }
    refused({ rw: 'randrw', sharedFile: 'data', verify: true, verifyOnly: true }, /^fio\.rw: "randrw" with shared_file and verify/);
  });

  it('refuses verify_only with a runtime, as any verify (the time-based job would verify nothing)', () => {
    refused({ sharedFile: 'data', verify: true, verifyOnly: true, runtimeS: 10 }, /^fio\.verify: cannot be combined with runtime_s/);
  });
  it('end_fsync only for a job that writes', () => {
    validate({ rw: 'write', endFsync: true });
    validate({ rw: 'randwrite', endFsync: true, sharedFile: 'a', verify: true, numjobs: 1 });
    refused({ rw: 'read', endFsync: true }, /^fio\.end_fsync: is for jobs that write/);
    refused({ rw: 'write', endFsync: true, sharedFile: 'a', verify: true, verifyOnly: true }, /^fio\.end_fsync: is for jobs that write/);
  });
});
