import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { describeLinks, shapedBitsPerSecond } from '../../common/links.js';
import { RecordingCommandRunner } from '../../common/runner-recording.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/host/', import.meta.url));

describe("a host's links (Table 1's link rate)", () => {
  it("reads tbf's rate from tc's JSON (bytes/s there) as bit/s; other qdiscs are no shaping", async () => {
    // Captured from `tc -j qdisc show dev v0` after `tc qdisc replace dev v0 root tbf rate 1gbit ...`.
    const tbf = await readFile(path.join(FIXTURES, 'tc-qdisc-tbf.json'), 'utf8');
    assert.equal(shapedBitsPerSecond(tbf), 1_000_000_000);
    assert.equal(shapedBitsPerSecond('[{"kind":"noqueue","handle":"0:","dev":"eth0","root":true,"refcnt":2,"options":{}}]'), 0);
    assert.equal(shapedBitsPerSecond('not json'), 0);
  });

  it('lists every link but loopback with its speed and shaping', async () => {
    const sys = await mkdtemp(path.join(tmpdir(), 'vcstor-links-'));
    try {
      for (const [name, speed] of [['lo', ''], ['eth0', '10000\n'], ['wlan0', '-1\n']] as const) {
        await mkdir(path.join(sys, name));
        if (speed) await writeFile(path.join(sys, name, 'speed'), speed);
      }
      const tbf = await readFile(path.join(FIXTURES, 'tc-qdisc-tbf.json'), 'utf8');
      const runner = new RecordingCommandRunner().on('tc', ['-j', 'qdisc', 'show', 'dev', 'eth0'], { stdout: tbf }).on('tc', ['-j', 'qdisc', 'show', 'dev', 'wlan0'], { stdout: '[]' });
      assert.deepEqual(await describeLinks(runner, sys), [
        { name: 'eth0', speedMbps: 10000, shapedBitsPerSecond: 1_000_000_000 },
        { name: 'wlan0', speedMbps: 0, shapedBitsPerSecond: 0 },
      ]);
    } finally {
      await rm(sys, { recursive: true, force: true });
    }
  });
});
