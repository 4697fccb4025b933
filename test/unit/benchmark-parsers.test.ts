import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { BonnieFigure__Output } from '../../common/generated/vcstor/v1/BonnieFigure.js';
import { VcstorError } from '../../common/errors.js';
import { fioVerifyFailure } from '../../host-storage/benchmarks/fio-json.js';
import { bonnieStderrReason, parseBonnieCsv, parseFioJson, parsePostmarkTerse } from '../../host-storage/benchmarks/parsers.js';

/**
 * Outputs captured from the real tools in the lab (bonnie++ 2.00a, postmark "v1.51" of
 * Debian's 1.53, fio 3.33), run as root in a mkdtemp directory. The file names say the
 * run; the command lines and exit codes are noted where each is used.
 */
const FIXTURES = fixturesDir();

/** Beside the compiled tests in dist/, or from the repository root (a private build dir). */
function fixturesDir(): string {
  const besideBuild = fileURLToPath(new URL('../../../test/fixtures/benchmarks/', import.meta.url));
  return existsSync(besideBuild) ? besideBuild : path.join(process.cwd(), 'test', 'fixtures', 'benchmarks');
}

function fixture(name: string): string {
  return readFileSync(path.join(FIXTURES, name), 'utf8');
}

const MIB = 1024 * 1024;

/** A figure bonnie++ printed as "+++++" or left empty, with the latency it still reports. */
const unmeasured = (latencyUs: number): BonnieFigure__Output => ({ measured: false, perSecond: 0, cpuPercent: 0, latencyUs });
const measured = (perSecond: number, cpuPercent: number, latencyUs: number): BonnieFigure__Output => ({ measured: true, perSecond, cpuPercent, latencyUs });

const noFileTests = {
  sequentialCreate: unmeasured(0),
  sequentialStat: unmeasured(0),
  sequentialDelete: unmeasured(0),
  randomCreate: unmeasured(0),
  randomStat: unmeasured(0),
  randomDelete: unmeasured(0),
};

function assertInternalError(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof VcstorError, `expected a VcstorError, got ${String(err)}`);
    assert.equal(err.code, 'INTERNAL');
    assert.match(err.message, message);
    return true;
  });
}

function assertClose(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) < 1e-6, `${what}: ${actual} is not ${expected}`);
}

describe('parseBonnieCsv', () => {
  it('reads every figure of a run with per-char tests (-s 64M:8k -r 32 -n 0 -q)', () => {
    const stdout = fixture('bonnie-perchar.stdout.txt');
    const result = parseBonnieCsv(stdout, fixture('bonnie-perchar.stderr.txt'));
    assert.deepEqual(result, {
      version: '2.00a',
      fileSizeBytes: 64 * MIB,
      // Not in the CSV: from the text report on stderr, which omits the default 8k.
      chunkSizeBytes: 8192,
      writePerChar: measured(1138, 99, 11847),
      writeBlock: unmeasured(103),
      rewrite: unmeasured(109),
      readPerChar: measured(1998, 99, 5037),
      readBlock: unmeasured(132),
      randomSeeks: unmeasured(2241),
      ...noFileTests,
      rawCsv: stdout.trimEnd(),
    });
  });

  it('reports the chunk size as unknown (0) without the text report', () => {
    assert.equal(parseBonnieCsv(fixture('bonnie-perchar.stdout.txt')).chunkSizeBytes, 0);
  });

  it('reads a non-default chunk size from the text report (-s 64M:4k)', () => {
    const result = parseBonnieCsv(fixture('bonnie-chunk4k.stdout.txt'), fixture('bonnie-chunk4k.stderr.txt'));
    assert.equal(result.chunkSizeBytes, 4096);
    assert.equal(result.fileSizeBytes, 64 * MIB);
  });

  it('marks per-char figures unmeasured with no latency when -f skips them', () => {
    const result = parseBonnieCsv(fixture('bonnie-fast.stdout.txt'));
    assert.deepEqual(result.writePerChar, unmeasured(0));
    assert.deepEqual(result.readPerChar, unmeasured(0));
    assert.deepEqual(result.writeBlock, unmeasured(135));
    assert.deepEqual(result.rewrite, unmeasured(158));
    assert.deepEqual(result.readBlock, unmeasured(77));
    assert.deepEqual(result.randomSeeks, unmeasured(2344));
  });

  it('reads the six file-creation figures (-n 1: too fast, latencies only)', () => {
    const result = parseBonnieCsv(fixture('bonnie-files.stdout.txt'));
    assert.deepEqual(
      [result.sequentialCreate, result.sequentialStat, result.sequentialDelete, result.randomCreate, result.randomStat, result.randomDelete],
      [unmeasured(4778), unmeasured(51), unmeasured(4040), unmeasured(4090), unmeasured(7), unmeasured(76)],
    );
    assert.deepEqual(result.randomSeeks, unmeasured(14271));
  });

  it('reads measured file-creation rates from the CSV, not the text report (-s 0 -n 64)', () => {
    // bonnie++'s text report prints 65536 for these rates (a double through %d); the CSV
    // has the real ones.
    const result = parseBonnieCsv(fixture('bonnie-files64.stdout.txt'), fixture('bonnie-files64.stderr.txt'));
    assert.equal(result.fileSizeBytes, 0);
    assert.equal(result.chunkSizeBytes, 0);
    assert.deepEqual(result.writeBlock, unmeasured(0));
    assert.deepEqual(result.randomSeeks, unmeasured(0));
    assert.deepEqual(
      [result.sequentialCreate, result.sequentialStat, result.sequentialDelete, result.randomCreate, result.randomStat, result.randomDelete],
      [measured(26449, 99, 1014), unmeasured(400), measured(99909, 95, 2844), measured(69862, 98, 807), unmeasured(82), measured(93124, 94, 3262)],
    );
  });

  it('reads a -D run', () => {
    const result = parseBonnieCsv(fixture('bonnie-direct.stdout.txt'));
    assert.deepEqual(
      [result.writeBlock, result.rewrite, result.readBlock, result.randomSeeks],
      [unmeasured(4451), unmeasured(7836), unmeasured(4065), unmeasured(8175)],
    );
  });

  it('reads measured block and seek figures and a size in G (-s 2048M:8k -r 1024 -f -D)', () => {
    const result = parseBonnieCsv(fixture('bonnie-big.stdout.txt'));
    assert.equal(result.fileSizeBytes, 2 * 1024 * MIB);
    assert.deepEqual(result.writeBlock, measured(117657, 47, 6073));
    assert.deepEqual(result.rewrite, measured(311437, 89, 8255));
    assert.deepEqual(result.readBlock, unmeasured(149));
    assert.deepEqual(result.randomSeeks, measured(8670, 71, 4853));
  });

  it('finds the CSV line after the text report bonnie++ prints to stdout without -q', () => {
    const result = parseBonnieCsv(fixture('bonnie-verbose.stdout.txt'));
    assert.equal(result.rawCsv.startsWith('1.98,2.00a,test,1,1795565637,64M,'), true);
    assert.deepEqual(result.randomSeeks, unmeasured(3785));
    // The text report is in stdout here: the default chunk size is known.
    assert.equal(result.chunkSizeBytes, 8192);
  });

  it('parses the last result line of -x 2, skipping the header line', () => {
    const result = parseBonnieCsv(fixture('bonnie-x2.stdout.txt'));
    assert.deepEqual(result.writeBlock, unmeasured(185));
    assert.deepEqual(result.randomSeeks, unmeasured(11199));
  });

  it('converts latencies in us, ms and s to microseconds', () => {
    // The captured line with its per-char latencies replaced: 100 ms and more were not
    // reachable on this machine; bonnie++ prints them as "%dms" and "%ds".
    const fields = fixture('bonnie-perchar.stdout.txt').trimEnd().split(',');
    fields[38] = '310ms';
    fields[41] = '2s';
    fields[43] = '919us';
    const result = parseBonnieCsv(fields.join(','));
    assert.equal(result.writePerChar?.latencyUs, 310_000);
    assert.equal(result.readPerChar?.latencyUs, 2_000_000);
    assert.equal(result.randomSeeks?.latencyUs, 919);
    fields[38] = '310 ms';
    assertInternalError(() => parseBonnieCsv(fields.join(',')), /write.*latency "310 ms"/i);
  });

  it('throws on a refused run (-s 16M -r 64: exit 1, nothing on stdout)', () => {
    assertInternalError(() => parseBonnieCsv(fixture('bonnie-refused.stdout.txt')), /^bonnie\+\+ printed no CSV result line \(no output\)$/);
  });

  it('throws on another CSV format and on a short line', () => {
    const line = fixture('bonnie-fast.stdout.txt').trimEnd();
    assertInternalError(() => parseBonnieCsv(`1.97${line.slice(4)}`), /CSV format 1\.97 is not supported/);
    assertInternalError(() => parseBonnieCsv(line.split(',').slice(0, 44).join(',')), /has 44 fields, expected 50/);
  });
});

describe('bonnieStderrReason', () => {
  it('gives the first message without the usage text (all exit code 1)', () => {
    assert.equal(bonnieStderrReason(fixture('bonnie-refused.stderr.txt')), 'File size should be double RAM for good results, RAM is 64M.');
    assert.equal(bonnieStderrReason(fixture('bonnie-nodir.stderr.txt')), 'Can\'t change to directory "/nonexistent/dir".');
    assert.equal(bonnieStderrReason(fixture('bonnie-noroot.stderr.txt')), 'You must use the "-u" switch when running as root.');
  });

  it('reports I/O failures (read-only directory as nobody; a full 16 MiB tmpfs)', () => {
    assert.equal(bonnieStderrReason(fixture('bonnie-ro.stderr.txt')), "Can't open file ./Bonnie.2081");
    const full = "Can't write block.: No space left on device; Can't write block 2048.";
    assert.equal(bonnieStderrReason(fixture('bonnie-full.stderr.txt')), full);
    // Without -q the error follows a progress message on the same line.
    assert.equal(bonnieStderrReason(fixture('bonnie-full-v.stderr.txt')), full);
  });

  it('finds no reason in the stderr of successful runs', () => {
    assert.equal(bonnieStderrReason(fixture('bonnie-perchar.stderr.txt')), undefined);
    assert.equal(bonnieStderrReason(fixture('bonnie-files64.stderr.txt')), undefined);
    assert.equal(bonnieStderrReason(fixture('bonnie-verbose.stderr.txt')), undefined);
    assert.equal(bonnieStderrReason(''), undefined);
  });
});

describe('parsePostmarkTerse', () => {
  it('reads the 13 numbers in order (100 files, 1,000 transactions, 10 subdirectories)', () => {
    assert.deepEqual(parsePostmarkTerse(fixture('postmark-small.stdout.txt'), ''), {
      totalSeconds: 1,
      transactionSeconds: 1,
      transactionsPerSecond: 1000,
      filesCreatedPerSecond: 595,
      filesCreatedAlonePerSecond: 100,
      filesCreatedMixedPerSecond: 495,
      filesReadPerSecond: 507,
      filesAppendedPerSecond: 489,
      filesDeletedPerSecond: 595,
      filesDeletedAlonePerSecond: 90,
      filesDeletedMixedPerSecond: 505,
      bytesReadPerSecond: 3403582,
      bytesWrittenPerSecond: 3891182,
    });
  });

  it('reads a longer run (1,000 files, 100,000 transactions)', () => {
    const result = parsePostmarkTerse(fixture('postmark-big.stdout.txt'));
    assert.equal(result.totalSeconds, 10);
    assert.equal(result.transactionsPerSecond, 10000);
    assert.equal(result.filesCreatedMixedPerSecond, 4983.2);
    assert.equal(result.filesAppendedPerSecond, 4929.8);
    assert.equal(result.filesDeletedAlonePerSecond, 664);
    assert.equal(result.filesDeletedMixedPerSecond, 5016.8);
    assert.equal(result.bytesWrittenPerSecond, 34614408);
  });

  it('rejects a run whose stderr has errors, though postmark exited 0 with a report', () => {
    // `set location /nonexistent/pmdir`: exit code 0, a report of zeros on stdout, 1,908
    // "Error:" lines on stderr (the first five kept).
    const stdout = fixture('postmark-no-location.stdout.txt');
    assert.equal(parsePostmarkTerse(stdout).filesReadPerSecond, 0);
    assertInternalError(
      () => parsePostmarkTerse(stdout, fixture('postmark-no-location.stderr-head.txt')),
      /^postmark reported 5 errors, first: Error: cannot open '\/nonexistent\/pmdir\/s0\/1' for writing$/,
    );
  });

  it('throws when postmark ran out of files and printed no report (exit code 0)', () => {
    assertInternalError(() => parsePostmarkTerse(fixture('postmark-out-of-files.stdout.txt')), /ran out of files/);
  });

  it('throws when there is no terse line', () => {
    assertInternalError(() => parsePostmarkTerse(''), /no terse report line \(no output\)/);
    assertInternalError(() => parsePostmarkTerse('PostMark v1.51 : 8/14/01\n1 1 1000.00\n'), /no terse report line; its output starts: PostMark v1\.51/);
  });
});

describe('parseFioJson', () => {
  it('reads a randwrite run (8k, 16M, psync)', () => {
    const stdout = fixture('fio-randwrite.stdout.txt');
    const result = parseFioJson(stdout);
    assert.equal(result.version, '3.33');
    assert.equal(result.error, 0);
    // write.runtime is 11 ms, job_runtime 10: the larger counts.
    assert.equal(result.runtimeMs, 11);
    assert.deepEqual(result.read, { ioBytes: 0, bandwidthBytesPerSecond: 0, iops: 0, meanLatencyNs: 0, completionLatency: [] });
    const write = result.write;
    assert.ok(write);
    assert.equal(write.ioBytes, 16 * MIB);
    // bw_bytes, not "bw" (1489454 KiB/s).
    assert.equal(write.bandwidthBytesPerSecond, 1525201454);
    assert.equal(write.iops, 186181.818182);
    assert.equal(write.meanLatencyNs, 4739.22998);
    assert.equal(write.completionLatency.length, 17);
    assert.deepEqual(write.completionLatency[0], { percentile: 1, latencyNs: 3824 });
    assert.deepEqual(
      write.completionLatency.filter((p) => [50, 99, 99.9, 99.99].includes(p.percentile)),
      [
        { percentile: 50, latencyNs: 4448 },
        { percentile: 99, latencyNs: 11584 },
        { percentile: 99.9, latencyNs: 34560 },
        { percentile: 99.99, latencyNs: 83456 },
      ],
    );
    assert.equal(result.rawJson, stdout.trimEnd());
  });

  it('takes the final object of a --status-interval=1 run (4 objects)', () => {
    const stdout = fixture('fio-status-interval.stdout.txt');
    const result = parseFioJson(stdout);
    // The third (last interval) object has 6829039616 bytes in 2893 ms.
    assert.equal(result.write?.ioBytes, 7046438912);
    assert.equal(result.write?.bandwidthBytesPerSecond, 2348030293);
    assert.equal(result.runtimeMs, 3001);
    assert.deepEqual(result.write?.completionLatency.find((p) => p.percentile === 99.99), { percentile: 99.99, latencyNs: 173056 });
    assert.equal(result.rawJson, stdout.slice(stdout.lastIndexOf('\n{\n') + 1).trimEnd());
    assert.equal(result.rawJson.startsWith('{\n  "fio version" : "fio-3.33",\n  "timestamp" : 1795563575,'), true);
  });

  it('takes the last complete object when the final one is cut off', () => {
    const stdout = fixture('fio-status-interval.stdout.txt');
    const cut = stdout.slice(0, stdout.lastIndexOf('\n}'));
    const result = parseFioJson(cut);
    assert.equal(result.write?.ioBytes, 6829039616);
    assert.equal(result.runtimeMs, 2893);
  });

  it('sums two randrw jobs: bytes, bandwidth, IOPS; weights the mean; worst percentile', () => {
    const result = parseFioJson(fixture('fio-randrw-2jobs.stdout.txt'));
    const { read, write } = result;
    assert.ok(read && write);
    assert.equal(read.ioBytes, 8142848 + 8093696);
    assert.equal(write.ioBytes, 8634368 + 8683520);
    assert.equal(read.bandwidthBytesPerSecond, 78296615 + 78579572);
    assert.equal(write.bandwidthBytesPerSecond, 83022769 + 84306019);
    assertClose(read.iops, 9557.692308 + 9592.23301, 'read iops');
    assertClose(write.iops, 10134.615385 + 10291.262136, 'write iops');
    assertClose(read.meanLatencyNs, (90555.123742 * 994 + 91258.539474 * 988) / (994 + 988), 'read mean latency');
    assertClose(write.meanLatencyNs, (11135.111954 * 1054 + 9422.483962 * 1060) / (1054 + 1060), 'write mean latency');
    const at = (list: typeof read.completionLatency, percentile: number) => list.find((p) => p.percentile === percentile)?.latencyNs;
    assert.equal(at(read.completionLatency, 99), 224256);
    assert.equal(at(read.completionLatency, 10), 52480);
    assert.equal(at(write.completionLatency, 95), 60160);
    assert.equal(at(write.completionLatency, 99.95), 134144);
    assert.deepEqual(
      read.completionLatency.map((p) => p.percentile),
      [1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.5, 99.9, 99.95, 99.99],
    );
    assert.equal(result.runtimeMs, 104);
    assert.equal(result.error, 0);
  });

  it('reports a job error (--filename under a regular file: exit code 1, ENOTDIR)', () => {
    const result = parseFioJson(fixture('fio-enotdir.stdout.txt'));
    assert.equal(result.error, 20);
    assert.equal(result.write?.ioBytes, 0);
    assert.equal(result.runtimeMs, 0);
  });

  it('skips the line the nbd engine prints before the JSON', () => {
    const stdout = fixture('fio-nbd.stdout.txt');
    assert.equal(stdout.startsWith('fio: connected to NBD server\n{\n'), true);
    const result = parseFioJson(stdout);
    assert.equal(result.write?.ioBytes, 16 * MIB);
    assert.equal(result.write?.bandwidthBytesPerSecond, 58867424);
    assert.equal(result.runtimeMs, 285);
    assert.equal(result.rawJson.startsWith('{'), true);
  });

  it('reports error 0 for an nbd job that never connected (fio exit code 1)', () => {
    const result = parseFioJson(fixture('fio-nbd-refused.stdout.txt'));
    assert.equal(result.error, 0);
    assert.equal(result.write?.ioBytes, 0);
  });

  it('throws when there is no JSON object (--rw=bogus: exit code 1, help text on stdout)', () => {
    assertInternalError(() => parseFioJson(fixture('fio-bad-option.stdout.txt')), /^fio printed no JSON report; its output starts: valid values: read/);
    assertInternalError(() => parseFioJson(''), /no JSON report \(no output\)/);
  });

  it('throws on an object that does not parse or is not a fio report', () => {
    assertInternalError(() => parseFioJson('{\n  "fio version" : \n}\n'), /does not parse/);
    assertInternalError(() => parseFioJson('{\n  "jobs" : []\n}\n'), /"fio version" is missing/);
    const noClat = fixture('fio-randwrite.stdout.txt').replace('"clat_ns"', '"clat_ns_renamed"');
    assertInternalError(() => parseFioJson(noClat), /jobs\[0\]\.read\.clat_ns is not an object/);
  });
});

/**
 * A shared file written by one fio and read back by another (fio 3.33, as root, cwd a
 * .vcstor-bench-* directory beside .vcstor-shared/): the writer's command line is
 *   fio --name=vcstor --filename=/tmp/vcstor-fio-capture/.vcstor-shared/data --rw=randwrite
 *     --bs=8192 --iodepth=1 --size=16777216 --ioengine=psync --numjobs=1 --rwmixread=50
 *     --output-format=json --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0
 * (fio-shared-write-verify, exit 0); the readers add --verify_only. fio-verify-only ran
 * in another uts namespace (`unshare -u`, hostname reader-b), exit 0. Then, each on a
 * copy of the written file, exit 1: -corrupt, one data byte at 5 MiB + 4000 set to 0xff
 * (dd conv=notrunc); -misplaced, block 0 copied over block 1; -bs16k, the reader with
 * --bs=16384. fio-shared-2jobs: a writer with --numjobs=2 on one --filename, exit 2.
 */
describe("fio's verify_only of a file another fio wrote", () => {
  it('reports the verify as reads with their bandwidth, and counts the writes it skipped', () => {
    const result = parseFioJson(fixture('fio-verify-only.stdout.txt'));
    assert.equal(result.error, 0);
    assert.equal(result.read?.ioBytes, 16 * MIB);
    assert.equal(result.read?.bandwidthBytesPerSecond, 114130721);
    assert.equal(result.runtimeMs, 147);
    // The skipped writes: the whole size, in no time.
    assert.equal(result.write?.ioBytes, 16 * MIB);
    assert.equal(result.write?.bandwidthBytesPerSecond, 0);
    const writer = parseFioJson(fixture('fio-shared-write-verify.stdout.txt'));
    assert.equal(writer.write?.ioBytes, 16 * MIB);
    assert.equal(writer.read?.ioBytes, 16 * MIB);
    assert.equal(writer.write?.bandwidthBytesPerSecond, 932067555);
  });

  it('reads a failed verify: error 84 (EILSEQ), the bytes read before fio stopped', () => {
    const corrupt = parseFioJson(fixture('fio-verify-only-corrupt.stdout.txt'));
    assert.equal(corrupt.error, 84);
    assert.equal(corrupt.read?.ioBytes, 9748480);
    const misplaced = parseFioJson(fixture('fio-verify-only-misplaced.stdout.txt'));
    assert.equal(misplaced.error, 84);
    assert.equal(misplaced.read?.ioBytes, 13312000);
    assert.equal(parseFioJson(fixture('fio-verify-only-bs16k.stdout.txt')).error, 84);
  });

  it("takes fio's words on the failed block from its stderr", () => {
    assert.equal(
      fioVerifyFailure(fixture('fio-verify-only-corrupt.stderr.txt')),
      'crc32c: verify failed at file /tmp/vcstor-fio-capture/.vcstor-shared/data offset 5242880, length 8192 (requested block: offset=5242880, length=8192, flags=88) | Expected CRC: e74ed32f | Received CRC: 1244e16d',
    );
    assert.equal(
      fioVerifyFailure(fixture('fio-verify-only-misplaced.stderr.txt')),
      'verify: bad header offset 0, wanted 8192 at file /tmp/vcstor-fio-capture/.vcstor-shared/data offset 8192, length 8192 (requested block: offset=8192, length=8192)',
    );
    assert.match(fioVerifyFailure(fixture('fio-verify-only-bs16k.stderr.txt')) ?? '', /^verify: bad header length 8192, wanted 16384 at file /);
    assert.equal(fioVerifyFailure('fio: some other failure\n'), undefined);
    assert.equal(fioVerifyFailure(''), undefined);
    assert.equal(fioVerifyFailure('fio: verify type mismatch (5 media, 2 given)\n'), 'fio: verify type mismatch (5 media, 2 given)');
  });

  it('two jobs on one --filename: fio warns on stdout, both jobs fail their verify', () => {
    const stdout = fixture('fio-shared-2jobs.stdout.txt');
    assert.equal(stdout.startsWith('fio: multiple writers may overwrite blocks that belong to other jobs. This can cause verification failures.\n'), true);
    const result = parseFioJson(stdout);
    assert.equal(result.error, 84);
    assert.equal(result.read?.ioBytes, 8192 + 24576);
    assert.match(fioVerifyFailure(fixture('fio-shared-2jobs.stderr.txt')) ?? '', /^verify: bad header numberio 1419, wanted 0 at file .* \| verify: bad header numberio 1675, wanted 2 at file /);
  });
});
