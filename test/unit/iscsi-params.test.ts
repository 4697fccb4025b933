import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { VcstorError } from '../../common/errors.js';
import type { IscsiSessionParams__Output } from '../../common/generated/vcstor/v1/IscsiSessionParams.js';
import {
  iscsiSessionParamsFromPairs,
  iscsiSessionParamsFromProto,
  iscsiSessionParamsToProto,
  parseKeyValueLines,
  parseLibiscsiLoginReplies,
  sameIscsiSessionParams,
  validateIscsiSessionParams,
} from '../../common/iscsi-params.js';
import { validateIscsiLoginRequest } from '../../common/requests.js';
import { validateExportIscsiRequest } from '../../agent-storage/requests.js';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'fixtures', 'iscsi');
const fixture = (name: string) => readFileSync(path.join(fixtures, name), 'utf8');

const params = (p: Partial<IscsiSessionParams__Output>): IscsiSessionParams__Output => ({
  maxRecvDataSegmentLength: 0,
  maxBurstLength: 0,
  firstBurstLength: 0,
  maxOutstandingR2t: 0,
  ...p,
});

function rejects(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof VcstorError, 'a VcstorError');
    assert.equal(err.code, 'INVALID_ARGUMENT');
    assert.match(err.message, pattern);
    return true;
  });
}

describe('validateIscsiSessionParams: RFC 7143 ranges', () => {
  it('accepts unset, zero (default) and the range edges', () => {
    validateIscsiSessionParams('session_params', null);
    validateIscsiSessionParams('session_params', params({}));
    validateIscsiSessionParams('session_params', params({ initialR2t: false, immediateData: true, maxRecvDataSegmentLength: 512, maxBurstLength: 16_777_215, firstBurstLength: 512, maxOutstandingR2t: 65_535 }));
    validateIscsiSessionParams('session_params', params({ maxOutstandingR2t: 1, firstBurstLength: 65_536, maxBurstLength: 65_536 }));
  });
  it('names the field and the range of a length out of range', () => {
    rejects(() => validateIscsiSessionParams('session_params', params({ maxRecvDataSegmentLength: 511 })), /^session_params\.max_recv_data_segment_length: 511 is outside .*MaxRecvDataSegmentLength \(512-16777215 bytes/);
    rejects(() => validateIscsiSessionParams('session_params', params({ maxBurstLength: 16_777_216 })), /^session_params\.max_burst_length: 16777216 /);
    rejects(() => validateIscsiSessionParams('session_params', params({ firstBurstLength: 100 })), /^session_params\.first_burst_length: 100 /);
    rejects(() => validateIscsiSessionParams('session_params', params({ maxOutstandingR2t: 65_536 })), /^session_params\.max_outstanding_r2t: 65536 .*\(1-65535/);
  });
  it('refuses a FirstBurstLength above the MaxBurstLength given with it', () => {
    rejects(() => validateIscsiSessionParams('session_params', params({ firstBurstLength: 131_072, maxBurstLength: 65_536 })), /^session_params\.first_burst_length: 131072 is more than max_burst_length 65536/);
  });
  it('is called by the ExportIscsi and IscsiLogin validators', () => {
    const bad = params({ maxBurstLength: 100 });
    rejects(
      () =>
        validateExportIscsiRequest(
          { volume: 'v1', pool: '', targetIqn: '', allowedInitiators: [], allowedAddresses: ['10.0.0.1'], allowAnyInitiator: false, chap: null, lun: 0, sessionParams: bad },
          false,
        ),
      /^session_params\.max_burst_length: /,
    );
    rejects(
      () =>
        validateIscsiLoginRequest({
          target: { portal: '10.0.0.1', iqn: 'iqn.2026-01.org.test:v1', lun: 0 },
          initiatorIqn: '',
          chap: null,
          headerDigest: false,
          timeoutMs: 0,
          sessionParams: bad,
        }),
      /^session_params\.max_burst_length: /,
    );
  });
});

describe('session parameter values', () => {
  it('unset booleans and zero lengths are absent; set ones survive the round trip', () => {
    assert.deepEqual(iscsiSessionParamsFromProto(params({})), {});
    const values = { initialR2T: true, immediateData: false, maxBurstLength: 65_536, firstBurstLength: 65_536 };
    assert.deepEqual(iscsiSessionParamsFromProto(iscsiSessionParamsToProto(values)), values);
    assert.ok(sameIscsiSessionParams(values, { ...values }));
    assert.ok(!sameIscsiSessionParams(values, { ...values, immediateData: true }));
    assert.ok(!sameIscsiSessionParams(values, { initialR2T: true }));
    assert.ok(sameIscsiSessionParams(undefined, {}));
  });
  it('reads the keys out of pairs, leaving out values that are not Yes/No or decimal', () => {
    assert.deepEqual(iscsiSessionParamsFromPairs([['InitialR2T', 'maybe'], ['MaxBurstLength', '64k'], ['ImmediateData', 'No'], ['FirstBurstLength', '512']]), {
      immediateData: false,
      firstBurstLength: 512,
    });
  });
});

describe('what tgtd 1.0.85 and libiscsi print (captured)', () => {
  it('tgtadm --mode target --op show --tid N: the target offers what was set, and its defaults', () => {
    // Captured after: update InitialR2T=Yes, ImmediateData=No, MaxBurstLength=65536, FirstBurstLength=65536.
    assert.deepEqual(iscsiSessionParamsFromPairs(parseKeyValueLines(fixture('tgtadm-show-target-params.txt'))), {
      initialR2T: true,
      immediateData: false,
      maxRecvDataSegmentLength: 8192,
      maxBurstLength: 65_536,
      firstBurstLength: 65_536,
      maxOutstandingR2T: 1,
    });
    // Another target: MaxRecvDataSegmentLength=65536, MaxOutstandingR2T=4, FirstBurstLength=1048576
    // (tgtd takes a FirstBurstLength above its MaxBurstLength: vcstor's validation does not).
    assert.deepEqual(iscsiSessionParamsFromPairs(parseKeyValueLines(fixture('tgtadm-show-target-params-mrdsl.txt'))), {
      initialR2T: true,
      immediateData: true,
      maxRecvDataSegmentLength: 65_536,
      maxBurstLength: 262_144,
      firstBurstLength: 1_048_576,
      maxOutstandingR2T: 4,
    });
  });
  it("libiscsi's debug log: the target's login reply is what the session negotiated", () => {
    assert.deepEqual(parseLibiscsiLoginReplies(fixture('libiscsi-debug6-login.txt')), {
      initialR2T: true,
      immediateData: false,
      maxBurstLength: 65_536,
      firstBurstLength: 65_536,
      maxOutstandingR2T: 1,
    });
  });
  it('a reconnect: the last login counts', () => {
    const log = fixture('libiscsi-debug6-login.txt');
    const again = log.replace('ImmediateData=No', 'ImmediateData=Yes').replace(/MaxBurstLength=65536/g, 'MaxBurstLength=262144');
    assert.equal(parseLibiscsiLoginReplies(`${log}\n${again}`).immediateData, true);
    assert.equal(parseLibiscsiLoginReplies(`${log}\n${again}`).maxBurstLength, 262_144);
    assert.deepEqual(parseLibiscsiLoginReplies('libiscsi:2 login successful\n'), {});
  });
});
