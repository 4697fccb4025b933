import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Filesystems, mkfsArgs } from '../../common/filesystems.js';
import { RecordingCommandRunner } from '../../common/runner-recording.js';

describe('mkfs never discards (a discard punches holes in a zero-filled image)', () => {
  it('ext4: -E nodiscard, merged into the caller\'s -E', () => {
    assert.deepEqual(mkfsArgs('ext4', '/dev/loop3', {}), ['-q', '-F', '-E', 'nodiscard', '/dev/loop3']);
    assert.deepEqual(mkfsArgs('ext4', '/dev/loop3', { label: 'data', mkfsOptions: ['-E', 'lazy_itable_init=0', '-m', '0'] }), ['-q', '-F', '-L', 'data', '-E', 'lazy_itable_init=0,nodiscard', '-m', '0', '/dev/loop3']);
    assert.deepEqual(mkfsArgs('ext4', '/dev/sdb', { mkfsOptions: ['-E', 'nodiscard'] }), ['-q', '-F', '-E', 'nodiscard', '/dev/sdb'], 'said once');
  });
  it('xfs: -K', () => {
    assert.deepEqual(mkfsArgs('xfs', '/dev/sdb', {}), ['-f', '-K', '/dev/sdb']);
  });
  it('ensure runs exactly that command line', async () => {
    const runner = new RecordingCommandRunner().on('blkid', [], { exitCode: 2 }).on('mkfs.ext4', [], {});
    const made = await new Filesystems(runner).ensure('/dev/loop7', 'ext4', { signal: new AbortController().signal });
    assert.equal(made, true);
    assert.equal(runner.lines.at(-1), 'mkfs.ext4 -q -F -E nodiscard /dev/loop7');
  });
});
