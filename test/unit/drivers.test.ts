import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeDrivers, packageVersion } from '../../common/requirements.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';

// dpkg-query's answers as this machine's gave them (Debian 12).
const NOT_FOUND = (pattern: string) => ({ exitCode: 1, stderr: `dpkg-query: no path found matching pattern ${pattern}\n` });

describe('package versions of the drivers (Table 1)', () => {
  it('asks dpkg which package owns the program and its version; tries /sbin for a merged /usr', async () => {
    const runner = new RecordingCommandRunner()
      .on('dpkg-query', ['--search', '/usr/sbin/mkfs.ext4'], NOT_FOUND('/usr/sbin/mkfs.ext4'))
      .on('dpkg-query', ['--search', '/sbin/mkfs.ext4'], { stdout: 'e2fsprogs: /sbin/mkfs.ext4\n' })
      .on('dpkg-query', ['--show', '--showformat=${Version}', 'e2fsprogs'], { stdout: '1.47.0-2' });
    // A path no other test asks for: answers are kept per path for the process.
    assert.equal(await packageVersion(runner, '/usr/sbin/mkfs.ext4'), 'e2fsprogs 1.47.0-2');
    assert.deepEqual(runner.lines, ['dpkg-query --search /usr/sbin/mkfs.ext4', 'dpkg-query --search /sbin/mkfs.ext4', "dpkg-query --show '--showformat=${Version}' e2fsprogs"]);
    assert.equal(await packageVersion(runner, '/usr/sbin/mkfs.ext4'), 'e2fsprogs 1.47.0-2');
    assert.equal(runner.calls.length, 3, 'asked once');
  });

  it('is empty where dpkg does not know the file or is not installed', async () => {
    const unknown = new RecordingCommandRunner().when((cmd) => cmd === 'dpkg-query', (_cmd, args) => NOT_FOUND(args[1] ?? ''));
    assert.equal(await packageVersion(unknown, '/opt/vcstor-test/bin/tool'), '');
    const noDpkg = new RecordingCommandRunner().when(() => true, new Error('spawn dpkg-query ENOENT'));
    assert.equal(await packageVersion(noDpkg, '/opt/vcstor-test/bin/other'), '');
  });

  it('reports the version of selected drivers and benchmarks only', async () => {
    // `node` is on PATH wherever the tests run: its package is asked for.
    const runner = new RecordingCommandRunner()
      .when((cmd, args) => cmd === 'dpkg-query' && args[0] === '--search', (_cmd, args) => ({ stdout: `nodejs: ${args[1]}\n` }))
      .on('dpkg-query', ['--show'], { stdout: '18.19.0+dfsg-6~deb12u2' });
    const statuses = await describeDrivers(
      [
        { concern: 'iscsi-target', driver: 'tgt', programs: ['node'] },
        { concern: 'iscsi-target', driver: 'lio', programs: ['node'] },
        { concern: 'benchmark', driver: 'fio', programs: ['node'] },
      ],
      { 'iscsi-target': 'tgt' },
      runner,
    );
    assert.deepEqual(
      statuses.map((s) => [s.driver, s.selected, s.version]),
      [
        ['tgt', true, 'nodejs 18.19.0+dfsg-6~deb12u2'],
        ['lio', false, ''],
        ['fio', false, 'nodejs 18.19.0+dfsg-6~deb12u2'],
      ],
    );
  });
});
