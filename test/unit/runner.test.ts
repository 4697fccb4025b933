import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { CommandError, ExecaCommandRunner, formatCommandLine } from '../../common/runner.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';

const runner = new ExecaCommandRunner();

describe('ExecaCommandRunner', () => {
  it('passes arguments as they are: no shell ever sees them', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'vcstor-runner-'));
    try {
      const marker = path.join(dir, 'pwned');
      const hostile = [`$(touch ${marker})`, `; touch ${marker}`, `| touch ${marker}`, `\`touch ${marker}\``, '*', '$HOME', "it's", '&&', '>x'];
      const result = await runner.run('printf', ['%s\\n', ...hostile], { cwd: dir });
      assert.deepEqual(result.stdout.split('\n').slice(0, -1), hostile);
      assert.deepEqual(await readdir(dir), [], 'no command ran, no file was created by a redirection');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('sets LC_ALL=C and passes extra environment', async () => {
    const result = await runner.run('env', [], { env: { VCSTOR_TEST: 'x y' } });
    assert.match(result.stdout, /^LC_ALL=C$/m);
    assert.match(result.stdout, /^VCSTOR_TEST=x y$/m);
  });

  it('feeds standard input', async () => {
    assert.equal((await runner.run('cat', [], { input: 'hello\n' })).stdout, 'hello\n');
  });

  it('reports a missing program as UNAVAILABLE', async () => {
    await assert.rejects(runner.run('vcstor-no-such-program', ['x']), (err: unknown) => {
      assert.ok(err instanceof CommandError);
      assert.equal(err.code, 'UNAVAILABLE');
      assert.match(err.message, /vcstor-no-such-program is not installed/);
      return true;
    });
  });

  it('turns a failing exit into an error with the exit code and stderr, secrets masked', async () => {
    await assert.rejects(runner.run('sh', ['-c', 'echo "bad password hunter2hunter2" >&2; exit 7', 'hunter2hunter2'], { sensitive: ['hunter2hunter2'] }), (err: unknown) => {
      assert.ok(err instanceof CommandError);
      assert.equal(err.code, 'INTERNAL');
      assert.equal(err.exitCode, 7);
      assert.match(err.message, /exited with 7: bad password \*\*\*/);
      assert.doesNotMatch(err.message, /hunter2/);
      assert.doesNotMatch(err.commandLine, /hunter2/);
      assert.doesNotMatch(`${err.stdout}${err.stderr}`, /hunter2/, 'captured output is masked too');
      assert.equal(err.cause, undefined, 'no raw result (with raw arguments) rides along');
      return true;
    });
  });

  it('accepts listed exit codes', async () => {
    assert.equal((await runner.run('sh', ['-c', 'exit 21'], { okExitCodes: [0, 21] })).exitCode, 21);
  });

  it('kills a command that outlives its timeout', async () => {
    const started = Date.now();
    await assert.rejects(runner.run('sleep', ['30'], { timeoutMs: 200 }), (err: unknown) => {
      assert.ok(err instanceof CommandError);
      assert.equal(err.code, 'DEADLINE_EXCEEDED');
      assert.equal(err.timedOut, true);
      return true;
    });
    assert.ok(Date.now() - started < 5000);
  });

  it('cancels with an AbortSignal and escalates to SIGKILL when SIGTERM is ignored, children too', async () => {
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 200);
    await assert.rejects(runner.run('sh', ['-c', 'trap "" TERM; sleep 30 & wait; sleep 30'], { signal: controller.signal, killGraceMs: 300 }), (err: unknown) => {
      assert.ok(err instanceof CommandError);
      assert.equal(err.code, 'CANCELLED');
      return true;
    });
    assert.ok(Date.now() - started < 5000, 'killed well before its sleep ended');
    const leftover = await runner.run('pgrep', ['-f', 'trap "" TERM; sleep 30'], { okExitCodes: [0, 1] });
    assert.equal(leftover.exitCode, 1, 'no process of the cancelled command is left');
  });

  it('does not start a command whose signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(runner.run('true', [], { signal: controller.signal }), /not started/);
  });
});

describe('RecordingCommandRunner', () => {
  it('records exact command lines and answers with scripted output', async () => {
    const recorder = new RecordingCommandRunner()
      .on('iscsiadm', ['-m', 'session'], { stdout: 'tcp: [1] 198.51.100.10:3260,1 iqn.2026-11.org.vcstor:vol0 (non-flash)\n' })
      .on('iscsiadm', ['-m', 'node'], { exitCode: 21, stderr: 'iscsiadm: No records found' });
    const sessions = await recorder.run('iscsiadm', ['-m', 'session']);
    assert.match(sessions.stdout, /vol0/);
    await assert.rejects(recorder.run('iscsiadm', ['-m', 'node', '--logout']), (err: unknown) => err instanceof CommandError && err.exitCode === 21);
    assert.deepEqual(recorder.lines, ['iscsiadm -m session', 'iscsiadm -m node --logout']);
  });

  it('fails loudly on a command nobody scripted', async () => {
    await assert.rejects(new RecordingCommandRunner().run('rm', ['-rf', '/']), /no scripted output for: rm -rf \//);
  });

  it('masks secrets in recorded lines', async () => {
    const recorder = new RecordingCommandRunner().on('tgtadm', [], {});
    await recorder.run('tgtadm', ['--mode', 'account', '--op', 'new', '--user', 'alice', '--password', 'secretpass12'], { sensitive: ['secretpass12'] });
    assert.equal(recorder.lines[0], 'tgtadm --mode account --op new --user alice --password ***');
  });

  it('formats command lines for people', () => {
    assert.equal(formatCommandLine('ls', ['-l', 'a b', "it's"]), `ls -l 'a b' 'it'\\''s'`);
  });
});
