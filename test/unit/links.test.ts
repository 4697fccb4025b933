import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { describeLinks, shapedBitsPerSecond } from '../../common/links.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/host/', import.meta.url));

describe("a host's links (Table 1's link rate)", () => {
  it("reads tbf's rate from tc's JSON (bytes/s there) as bit/s; other qdiscs are no shaping", async () => {
    // Captured from `tc -j qdisc show dev v0` after `tc qdisc replace dev v0 root tbf rate 1gbit ...`.
    const tbf = await readFile(path.join(FIXTURES, 'tc-qdisc-tbf.json'), 'utf8');
    assert.equal(shapedBitsPerSecond(tbf), 1_000_000_000);
    assert.equal(shapedBitsPerSecond('[{"kind":"noqueue","handle":"0:","dev":"eth0","root":true,"refcnt":2,"options":{}}]'), 0);
    assert.equal(shapedBitsPerSecond('not json'), 0);
  });

  it("lists the agent's own namespace's links that are up, with a speed only where sysfs shows the same link", async () => {
    const sys = await mkdtemp(path.join(tmpdir(), 'vcstor-links-'));
    try {
      // Captured with `ip netns exec NS ip -j link show` (a veth pair in a fresh namespace, lo down).
      const ipLinks = await readFile(path.join(FIXTURES, 'ip-link-show.json'), 'utf8');
      // sysfs as a process that entered the namespace sees it: the root namespace's. Its
      // eth0 is another link (index 4); eth1 happens to be this one.
      const sysfs: Record<string, Record<string, string>> = {
        eth0: { ifindex: '4\n', address: 'aa:bb:cc:dd:ee:ff\n', speed: '1000\n' },
        eth1: { ifindex: '2\n', address: '12:13:93:94:da:53\n', speed: '10000\n' },
      };
      for (const [name, files] of Object.entries(sysfs)) {
        await mkdir(path.join(sys, name));
        for (const [file, content] of Object.entries(files)) await writeFile(path.join(sys, name, file), content);
      }
      const tbf = await readFile(path.join(FIXTURES, 'tc-qdisc-tbf.json'), 'utf8');
      const runner = new RecordingCommandRunner()
        .on('ip', ['-j', 'link', 'show'], { stdout: ipLinks })
        .on('tc', ['-j', 'qdisc', 'show', 'dev', 'eth0'], { stdout: tbf })
        .on('tc', ['-j', 'qdisc', 'show', 'dev', 'eth1'], { stdout: '[]' });
      assert.deepEqual(await describeLinks(runner, sys), [
        { name: 'eth1', speedMbps: 10000, shapedBitsPerSecond: 0 },
        { name: 'eth0', speedMbps: 0, shapedBitsPerSecond: 1_000_000_000 },
      ]);
      assert.ok(!runner.lines.some((l) => l.includes(' lo')), 'loopback is not asked about');
    } finally {
      await rm(sys, { recursive: true, force: true });
    }
  });
});
