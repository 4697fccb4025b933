import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, open, readdir, realpath, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { VcstorError, type ErrorCode } from '../../common/errors.js';
import type { FioResult__Output } from '../../common/generated/vcstor/v1/FioResult.js';
import type { FioSpec__Output } from '../../common/generated/vcstor/v1/FioSpec.js';
import type { RunBenchmarkRequest__Output } from '../../common/generated/vcstor/v1/RunBenchmarkRequest.js';
import type { RunBenchmarkResponse } from '../../common/generated/vcstor/v1/RunBenchmarkResponse.js';
import { ExecaCommandRunner, type CommandRunner } from '../../common/runner.js';
import { HostBenchmarks } from '../../host-storage/benchmarks/run.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';

/**
 * fio on a shared file (FioSpec.shared_file, verify_only): one host writes
 * <directory>/.vcstor-shared/<name>, which stays; others read it back later in separate
 * runs. First the exact fio command lines (a recording runner answering with fio 3.33's
 * captured output), then real fio runs in a temporary directory (a local root of the
 * runner, as dom0's image roots are).
 */

const MIB = 1024 * 1024;
const SIZE = 16 * MIB;
const FIXTURES = fixturesDir();

function fixturesDir(): string {
  const besideBuild = fileURLToPath(new URL('../../../test/fixtures/benchmarks/', import.meta.url));
  return existsSync(besideBuild) ? besideBuild : path.join(process.cwd(), 'test', 'fixtures', 'benchmarks');
}

function fixture(name: string): string {
  return readFileSync(path.join(FIXTURES, name), 'utf8');
}

/** A fio spec as the wire decodes it: every field at its default, then `fields`. */
function fioRequest(directory: string, fields: Partial<FioSpec__Output>): RunBenchmarkRequest__Output {
  const fio = { rw: 'write', blockSizeBytes: 0, iodepth: 0, sizeBytes: 0, runtimeS: 0, ioengine: '', numjobs: 0, direct: false, rwmixRead: 0, verify: false, sharedFile: '', verifyOnly: false, endFsync: false, ...fields };
  return { directory, label: 'test', spec: 'fio', fio };
}

function benchmarksWith(runner: CommandRunner, root: string): HostBenchmarks {
  return new HostBenchmarks({ runner, log: pino({ level: 'silent' }), mountRoot: path.join(root, 'no-mount-root'), localRoots: [root] });
}

/** Run one benchmark to its end: the messages it sent, and its fio result. */
async function runFio(benchmarks: HostBenchmarks, request: RunBenchmarkRequest__Output): Promise<{ messages: RunBenchmarkResponse[]; fio: FioResult__Output }> {
  const messages: RunBenchmarkResponse[] = [];
  await benchmarks.run(request, { signal: new AbortController().signal, deadlineMs: Date.now() + 120_000 }, async (m) => {
    messages.push(m);
  });
  const fio = messages.find((m) => m.result)?.result?.fio as FioResult__Output | undefined;
  assert.ok(fio, 'a fio result');
  return { messages, fio };
}

async function assertFails(promise: Promise<unknown>, code: ErrorCode, message: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof VcstorError, String(err));
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  });
}

/** What a directory holds besides `.vcstor-shared`: a run's private directory must be gone. */
async function leftovers(directory: string): Promise<string[]> {
  return (await readdir(directory)).filter((name) => name !== '.vcstor-shared');
}

/** A file of `size` bytes (sparse). */
async function makeFile(file: string, size: number): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, '');
  await truncate(file, size);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('fio on a shared file: the command lines', () => {
  let root: string;
  let runner: RecordingCommandRunner;
  let benchmarks: HostBenchmarks;
  /** What the scripted fio found when it ran: the shared file's size then (undefined: missing). */
  let sizeAtStart: number | undefined;

  before(async () => {
    root = await realpath(await mkdtemp(path.join(os.tmpdir(), 'vcstor-fio-shared-rec-')));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** A runner whose fio prints `stdout` (and `stderr`, exit code); a writer's fio leaves a file of SIZE. */
  function scriptFio(reply: { stdout: string; stderr?: string; exitCode?: number }, writes = false): void {
    runner = new RecordingCommandRunner();
    runner.on('losetup', ['--json', '--list'], { stdout: '' });
    runner.on('fio', [], (_command, args) => {
      const file = args.find((a) => a.startsWith('--filename='))?.slice('--filename='.length).replace(/\\:/g, ':');
      sizeAtStart = file && existsSync(file) ? statSync(file).size : undefined;
      if (file && writes) {
        writeFileSync(file, '');
        truncateSync(file, SIZE);
      }
      return reply;
    });
    benchmarks = benchmarksWith(runner, root);
  }

  function fioCall() {
    const calls = runner.calls.filter((c) => c.command === 'fio');
    assert.equal(calls.length, 1, 'fio ran once');
    return calls[0]!;
  }

  it('a writer: fio --filename=<directory>/.vcstor-shared/<name>, no state file, cwd the private directory; the file replaces an old one and stays', async () => {
    const directory = path.join(root, 'writer');
    const shared = path.join(directory, '.vcstor-shared');
    await mkdir(directory);
    const oldUmask = process.umask(0o077);
    try {
      scriptFio({ stdout: fixture('fio-shared-write-verify.stdout.txt') }, true);
      const { fio, messages } = await runFio(benchmarks, fioRequest(directory, { rw: 'randwrite', sizeBytes: SIZE, verify: true, sharedFile: 'guest-a.data' }));
      const call = fioCall();
      assert.deepEqual(call.args, [
        '--name=vcstor',
        `--filename=${shared}/guest-a.data`,
        '--rw=randwrite',
        '--bs=8192',
        '--iodepth=1',
        `--size=${SIZE}`,
        '--ioengine=psync',
        '--numjobs=1',
        '--rwmixread=50',
        '--output-format=json',
        '--verify=crc32c',
        // The pattern is written, not read back: a later verify_only job checks it.
        '--do_verify=0',
        '--verify_fatal=1',
        '--verify_state_save=0',
      ]);
      assert.match(call.options.cwd ?? '', new RegExp(`^${escapeRegExp(directory)}/\\.vcstor-bench-`));
      assert.equal(sizeAtStart, undefined, 'a new file');
      assert.equal((await stat(shared)).mode & 0o777, 0o755, '.vcstor-shared is 0755 whatever the umask');
      assert.equal(fio.sharedFilePath, `${shared}/guest-a.data`);
      assert.equal(fio.sharedFileSizeBytes, SIZE);
      assert.equal(fio.verifiedBytes, 0, 'a shared file\'s writer reads nothing back');
      assert.equal(fio.write?.ioBytes, SIZE);
      assert.ok(fio.finishedUnixMs > 1.7e12, 'fio\'s clock at its report');
      assert.deepEqual(await leftovers(directory), [], 'the private directory is gone');
      assert.deepEqual(await readdir(shared), ['guest-a.data'], 'the shared file stays');
      assert.ok(messages.some((m) => m.progress?.phase === 'fio:randwrite'));

      // Again: the old file is removed before fio starts (it would otherwise overwrite it in place).
      await writeFile(path.join(shared, 'guest-a.data'), 'old');
      scriptFio({ stdout: fixture('fio-shared-write-verify.stdout.txt') }, true);
      await runFio(benchmarks, fioRequest(directory, { rw: 'randwrite', sizeBytes: SIZE, verify: true, sharedFile: 'guest-a.data', endFsync: true }));
      assert.equal(sizeAtStart, undefined, 'the old file was removed first');
      assert.equal(fioCall().args.at(-1), '--end_fsync=1', 'end_fsync: the flush is inside the timed run');
    } finally {
      process.umask(oldUmask);
    }
  });

  it('a verify-only reader: the same job with --verify_only; no writes in the result, the verified bytes, the file left as it was', async () => {
    const directory = path.join(root, 'reader');
    const file = path.join(directory, '.vcstor-shared', 'guest-a.data');
    await makeFile(file, SIZE);
    const original = await stat(file);
    scriptFio({ stdout: fixture('fio-verify-only.stdout.txt') });
    const { fio, messages } = await runFio(benchmarks, fioRequest(directory, { rw: 'randwrite', sizeBytes: SIZE, verify: true, verifyOnly: true, sharedFile: 'guest-a.data', direct: true, ioengine: 'libaio', iodepth: 8 }));
    assert.deepEqual(fioCall().args, [
      '--name=vcstor',
      `--filename=${file}`,
      '--rw=randwrite',
      '--bs=8192',
      '--iodepth=8',
      `--size=${SIZE}`,
      '--ioengine=libaio',
      '--numjobs=1',
      '--rwmixread=50',
      '--output-format=json',
      '--direct=1',
      '--verify=crc32c',
      '--do_verify=1',
      '--verify_fatal=1',
      '--verify_state_save=0',
      '--verify_only',
    ]);
    assert.equal(sizeAtStart, SIZE, 'fio found the file as it was');
    assert.equal((await stat(file)).ino, original.ino, 'the same file: a reader does not replace it');
    assert.equal(fio.verifiedBytes, SIZE);
    assert.equal(fio.read?.ioBytes, SIZE);
    assert.equal(fio.read?.bandwidthBytesPerSecond, 114130721);
    assert.deepEqual(fio.write, { ioBytes: 0, bandwidthBytesPerSecond: 0, iops: 0, meanLatencyNs: 0, completionLatency: [] }, 'fio counts the writes it skipped; the result does not');
    assert.equal(fio.sharedFileSizeBytes, SIZE);
    assert.ok(messages.every((m) => !m.progress || m.progress.phase === 'fio:start' || m.progress.phase === 'fio:verify'));
    assert.deepEqual(await leftovers(directory), []);
  });

  it('a timed read of a shared file: no verify options, the runtime; a colon in the path is escaped for fio', async () => {
    const directory = path.join(root, 'a:b');
    const file = path.join(directory, '.vcstor-shared', 'data');
    await makeFile(file, SIZE);
    scriptFio({ stdout: fixture('fio-verify-only.stdout.txt') });
    const { fio } = await runFio(benchmarks, fioRequest(directory, { rw: 'read', sizeBytes: SIZE, runtimeS: 5, sharedFile: 'data' }));
    assert.deepEqual(fioCall().args, [
      '--name=vcstor',
      `--filename=${root}/a\\:b/.vcstor-shared/data`,
      '--rw=read',
      '--bs=8192',
      '--iodepth=1',
      `--size=${SIZE}`,
      '--ioengine=psync',
      '--numjobs=1',
      '--rwmixread=50',
      '--output-format=json',
      '--runtime=5',
      '--time_based',
      '--verify_state_save=0',
    ]);
    assert.equal(fio.verifiedBytes, 0, 'nothing verified without verify');
    assert.equal(fio.sharedFilePath, file);
  });

  it('without shared_file the command line is as before: fio makes its files in the private directory', async () => {
    const directory = path.join(root, 'private');
    await mkdir(directory);
    scriptFio({ stdout: fixture('fio-randwrite.stdout.txt') });
    const { fio } = await runFio(benchmarks, fioRequest(directory, { rw: 'randwrite', sizeBytes: SIZE }));
    const call = fioCall();
    assert.deepEqual(call.args, [
      '--name=vcstor',
      `--directory=${call.options.cwd}`,
      '--rw=randwrite',
      '--bs=8192',
      '--iodepth=1',
      `--size=${SIZE}`,
      '--ioengine=psync',
      '--numjobs=1',
      '--rwmixread=50',
      '--output-format=json',
    ]);
    assert.equal(fio.sharedFilePath, '');
    assert.equal(fio.verifiedBytes, 0);
    assert.deepEqual(await readdir(directory), [], 'no .vcstor-shared either');
  });

  it("a failed verify says which file and what fio found (fio's stderr), and how far it got", async () => {
    const directory = path.join(root, 'corrupt');
    const file = path.join(directory, '.vcstor-shared', 'data');
    await makeFile(file, SIZE);
    scriptFio({ stdout: fixture('fio-verify-only-corrupt.stdout.txt'), stderr: fixture('fio-verify-only-corrupt.stderr.txt'), exitCode: 1 });
    await assertFails(
      runFio(benchmarks, fioRequest(directory, { rw: 'randwrite', sizeBytes: SIZE, verify: true, verifyOnly: true, sharedFile: 'data' })),
      'INTERNAL',
      new RegExp(
        `^fio's verify of ${escapeRegExp(file)} failed, the data read back differs from what was written: crc32c: verify failed at file \\S+ offset 5242880, length 8192 \\(requested block: offset=5242880, length=8192, flags=88\\) \\| Expected CRC: e74ed32f \\| Received CRC: 1244e16d \\(fio error 84; 9748480 bytes read before it stopped\\)$`,
      ),
    );
    assert.equal((await stat(file)).size, SIZE, 'the file is left as it is');
    assert.deepEqual(await leftovers(directory), []);
  });

  it('a verify that covers less than the file fails: the rest was not checked', async () => {
    const directory = path.join(root, 'bigger');
    const file = path.join(directory, '.vcstor-shared', 'data');
    await makeFile(file, 2 * SIZE);
    scriptFio({ stdout: fixture('fio-verify-only.stdout.txt') });
    await assertFails(
      runFio(benchmarks, fioRequest(directory, { rw: 'randwrite', sizeBytes: SIZE, verify: true, verifyOnly: true, sharedFile: 'data' })),
      'INTERNAL',
      new RegExp(`^fio verified ${SIZE} of the ${2 * SIZE} bytes of ${escapeRegExp(file)}: the rest was not checked \\(size_bytes ${SIZE}; use the size its writer's job had\\)$`),
    );
  });

  it('a reader never starts fio on a missing or short file (fio would write one): NOT_FOUND with the path', async () => {
    const directory = path.join(root, 'missing');
    await mkdir(directory);
    const file = path.join(directory, '.vcstor-shared', 'data');
    for (const fields of [
      { rw: 'randwrite', verify: true, verifyOnly: true },
      { rw: 'read', runtimeS: 5 },
      { rw: 'randread', verify: true },
    ]) {
      scriptFio({ stdout: fixture('fio-verify-only.stdout.txt') });
      await assertFails(
        runFio(benchmarks, fioRequest(directory, { ...fields, sizeBytes: SIZE, sharedFile: 'data' })),
        'NOT_FOUND',
        new RegExp(`^${escapeRegExp(file)} does not exist \\(no \\.vcstor-shared in ${escapeRegExp(directory)}\\): write it first`),
      );
      assert.equal(runner.calls.filter((c) => c.command === 'fio').length, 0, 'fio did not run');
    }
    await makeFile(path.join(directory, '.vcstor-shared', 'other'), SIZE);
    scriptFio({ stdout: fixture('fio-verify-only.stdout.txt') });
    await assertFails(
      runFio(benchmarks, fioRequest(directory, { rw: 'read', sizeBytes: SIZE, sharedFile: 'data' })),
      'NOT_FOUND',
      new RegExp(`^${escapeRegExp(file)} does not exist: write it first with a fio job with this shared_file$`),
    );
    await makeFile(file, SIZE - 8192);
    for (const fields of [{ rw: 'write', verify: true, verifyOnly: true }, { rw: 'read' }]) {
      scriptFio({ stdout: fixture('fio-verify-only.stdout.txt') });
      await assertFails(
        runFio(benchmarks, fioRequest(directory, { ...fields, sizeBytes: SIZE, sharedFile: 'data' })),
        'NOT_FOUND',
        new RegExp(`^${escapeRegExp(file)} holds ${SIZE - 8192} bytes, fewer than size_bytes ${SIZE}: not the whole file a job of this size writes`),
      );
      assert.equal(runner.calls.filter((c) => c.command === 'fio').length, 0, 'fio did not run');
    }
    assert.equal((await stat(file)).size, SIZE - 8192, 'the short file is left as it is');
    assert.deepEqual(await leftovers(directory), []);
  });

  it('refuses a symlink for .vcstor-shared or for the file: the directory is shared with other hosts', async () => {
    const directory = path.join(root, 'links');
    await mkdir(directory);
    const elsewhere = path.join(root, 'elsewhere');
    await mkdir(elsewhere);
    await symlink(elsewhere, path.join(directory, '.vcstor-shared'));
    scriptFio({ stdout: fixture('fio-shared-write-verify.stdout.txt') }, true);
    await assertFails(runFio(benchmarks, fioRequest(directory, { rw: 'write', sizeBytes: SIZE, sharedFile: 'data' })), 'FAILED_PRECONDITION', /\.vcstor-shared is not a directory \(a symlink or a file\): remove it$/);
    await rm(path.join(directory, '.vcstor-shared'));
    await mkdir(path.join(directory, '.vcstor-shared'));
    await makeFile(path.join(elsewhere, 'target'), SIZE);
    await symlink(path.join(elsewhere, 'target'), path.join(directory, '.vcstor-shared', 'data'));
    for (const fields of [{ rw: 'write' }, { rw: 'read' }]) {
      scriptFio({ stdout: fixture('fio-shared-write-verify.stdout.txt') }, true);
      await assertFails(runFio(benchmarks, fioRequest(directory, { ...fields, sizeBytes: SIZE, sharedFile: 'data' })), 'FAILED_PRECONDITION', /data is not a regular file \(a symlink, a directory or a device\): remove it$/);
      assert.equal(runner.calls.filter((c) => c.command === 'fio').length, 0);
    }
    assert.equal((await stat(path.join(elsewhere, 'target'))).size, SIZE, 'the link target is untouched');
    assert.equal((await lstat(path.join(directory, '.vcstor-shared', 'data'))).isSymbolicLink(), true);
  });
});

const hasFio = (() => {
  try {
    execFileSync('fio', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('fio on a shared file: real runs (fio, 16 MiB)', { skip: hasFio ? false : 'fio is not installed' }, () => {
  let root: string;
  let benchmarks: HostBenchmarks;
  const job = { rw: 'randwrite', sizeBytes: SIZE, blockSizeBytes: 8192, verify: true, sharedFile: 'guest-a.data' };

  before(async () => {
    root = await realpath(await mkdtemp(path.join(os.tmpdir(), 'vcstor-fio-shared-')));
    benchmarks = benchmarksWith(new ExecaCommandRunner(), root);
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('a writer leaves a checkable file; a separate verify-only run reads all of it back intact, with its read bandwidth', async () => {
    const file = path.join(root, '.vcstor-shared', 'guest-a.data');
    const started = Date.now();
    const written = await runFio(benchmarks, fioRequest(root, job));
    assert.equal(written.fio.error, 0);
    assert.equal(written.fio.write?.ioBytes, SIZE);
    assert.equal(written.fio.verifiedBytes, 0, 'written, not read back');
    assert.equal(written.fio.read?.ioBytes, 0);
    assert.ok(written.fio.finishedUnixMs >= started && written.fio.finishedUnixMs <= Date.now(), 'fio\'s report time is when it ended');
    assert.equal(written.fio.sharedFilePath, file);
    assert.equal((await stat(file)).size, SIZE);
    assert.equal((await stat(path.dirname(file))).mode & 0o777, 0o755);
    assert.deepEqual(await leftovers(root), [], 'the private directory and its verify state are gone');

    const contentBefore = readFileSync(file);
    const read = await runFio(benchmarks, fioRequest(root, { ...job, verifyOnly: true }));
    assert.equal(read.fio.error, 0);
    assert.equal(read.fio.verifiedBytes, SIZE);
    assert.equal(read.fio.read?.ioBytes, SIZE);
    assert.ok((read.fio.read?.bandwidthBytesPerSecond ?? 0) > 0, 'the verify reads have a bandwidth');
    assert.equal(read.fio.write?.ioBytes, 0);
    assert.equal(read.fio.sharedFileSizeBytes, SIZE);
    assert.ok(readFileSync(file).equals(contentBefore), 'verify_only wrote nothing');
    assert.deepEqual(await leftovers(root), []);

    // A plain timed read of the same file (by size here, to be quick).
    const timed = await runFio(benchmarks, fioRequest(root, { rw: 'read', sizeBytes: SIZE, sharedFile: 'guest-a.data' }));
    assert.equal(timed.fio.read?.ioBytes, SIZE);
    assert.equal(timed.fio.verifiedBytes, 0);
    assert.ok(readFileSync(file).equals(contentBefore));
  });

  it('one changed byte fails the verify-only run with the block fio found bad', async () => {
    const file = path.join(root, '.vcstor-shared', 'guest-a.data');
    const handle = await open(file, 'r+');
    try {
      const [byte] = (await handle.read(Buffer.alloc(1), 0, 1, 5 * MIB + 4000)).buffer;
      await handle.write(Buffer.from([(byte ?? 0) ^ 0xff]), 0, 1, 5 * MIB + 4000);
    } finally {
      await handle.close();
    }
    await assertFails(
      runFio(benchmarks, fioRequest(root, { ...job, verifyOnly: true })),
      'INTERNAL',
      new RegExp(`^fio's verify of ${escapeRegExp(file)} failed, the data read back differs from what was written: crc32c: verify failed at file ${escapeRegExp(file)} offset ${5 * MIB}, length 8192 .* \\| Expected CRC: [0-9a-f]+ \\| Received CRC: [0-9a-f]+ \\(fio error 84; \\d+ bytes read before it stopped\\)$`),
    );
    assert.equal((await stat(file)).size, SIZE);
    assert.deepEqual(await leftovers(root), []);
  });

  it('a missing file: NOT_FOUND with its path, for a verify-only and for a read job, and fio makes none', async () => {
    const file = path.join(root, '.vcstor-shared', 'nobody-wrote-this');
    await assertFails(runFio(benchmarks, fioRequest(root, { ...job, sharedFile: 'nobody-wrote-this', verifyOnly: true })), 'NOT_FOUND', new RegExp(`^${escapeRegExp(file)} does not exist`));
    await assertFails(runFio(benchmarks, fioRequest(root, { rw: 'read', sizeBytes: SIZE, sharedFile: 'nobody-wrote-this' })), 'NOT_FOUND', new RegExp(`^${escapeRegExp(file)} does not exist`));
    assert.equal(existsSync(file), false);
    assert.deepEqual(await leftovers(root), []);
    // A directory with no .vcstor-shared at all.
    const fresh = path.join(root, 'fresh');
    await mkdir(fresh);
    await chmod(fresh, 0o755);
    await assertFails(runFio(benchmarks, fioRequest(fresh, { rw: 'read', sizeBytes: SIZE, sharedFile: 'data' })), 'NOT_FOUND', /does not exist \(no \.vcstor-shared in /);
    assert.deepEqual(await readdir(fresh), []);
  });
});
