import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Filesystems, mkfsArgs } from '../../common/filesystems.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';

describe('mkfs never punches holes in a zero-filled image: no discard, no lazy inode table init', () => {
  it('ext4: -E nodiscard, merged into the caller\'s -E', () => {
    assert.deepEqual(mkfsArgs('ext4', '/dev/loop3', {}), ['-q', '-F', '-E', 'nodiscard,lazy_itable_init=0', '/dev/loop3']);
    assert.deepEqual(mkfsArgs('ext4', '/dev/loop3', { label: 'data', mkfsOptions: ['-E', 'lazy_journal_init=0', '-m', '0'] }), ['-q', '-F', '-L', 'data', '-E', 'lazy_journal_init=0,nodiscard,lazy_itable_init=0', '-m', '0', '/dev/loop3']);
    assert.deepEqual(mkfsArgs('ext4', '/dev/sdb', { mkfsOptions: ['-E', 'lazy_itable_init=0,nodiscard'] }), ['-q', '-F', '-E', 'lazy_itable_init=0,nodiscard', '/dev/sdb'], 'said once');
  });
  it('xfs: -K', () => {
    assert.deepEqual(mkfsArgs('xfs', '/dev/sdb', {}), ['-f', '-K', '/dev/sdb']);
  });
  it('ensure runs exactly that command line', async () => {
    const runner = new RecordingCommandRunner().on('blkid', [], { exitCode: 2 }).on('mkfs.ext4', [], {});
    const made = await new Filesystems(runner).ensure('/dev/loop7', 'ext4', { signal: new AbortController().signal });
    assert.equal(made, true);
    assert.equal(runner.lines.at(-1), 'mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0 /dev/loop7');
    assert.deepEqual(runner.calls.at(-1)?.options.env, { UNIX_IO_NOZEROOUT: '1' }, 'mke2fs writes zeros rather than punching holes');
  });
});
