import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { VcstorError } from '../../common/errors.js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { parsePlan, parseSize } from '../../coordinator/plan.js';

describe('plans', () => {
  let dir = '';
  let secret = '';
  const good = () => `name: t
agents:
  storage: { address: 127.0.0.1:1, host: 127.0.0.1 }
  dom0: { address: 127.0.0.1:2, initiatorIqn: iqn.2026-11.org.vcstor:d, imageDir: /var/lib/i, mountDir: /var/lib/m }
  guest: { address: 127.0.0.1:3, initiatorIqn: iqn.2026-11.org.vcstor:g, mountDir: /var/lib/g, domain: guest0 }
tls: { insecure: true }
nfsClients: 127.0.0.0/8
chap: { username: vcstor, passwordFile: ${secret} }
campaign:
  methods: [file-local, iscsi]
  repetitions: 1
  volumeSize: 128MiB
  benchmarks:
    bonnie: { fileSize: 64MiB }
`;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-plan-'));
    secret = path.join(dir, 'chap');
    await writeFile(secret, 'secretpass12\n');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const refused = async (text: string, pattern: RegExp) => {
    await assert.rejects(parsePlan(text, 'p.yaml'), (err: unknown) => {
      assert.ok(err instanceof VcstorError, String(err));
      assert.equal(err.code, 'INVALID_ARGUMENT');
      assert.match(err.message, pattern);
      return true;
    });
  };

  it('reads sizes with units and fills the paper\'s defaults', async () => {
    assert.equal(parseSize('64MiB'), 64 * 2 ** 20);
    assert.equal(parseSize('8k'), 8192);
    assert.equal(parseSize('1.5GiB'), 1.5 * 2 ** 30);
    assert.throws(() => parseSize('12 parsecs'), /not a size/);
    const plan = await parsePlan(good(), 'p.yaml');
    assert.equal(plan.campaign.benchmarks.bonnie!.chunk, 8192);
    assert.equal(plan.campaign.volumeSize, 128 * 2 ** 20);
    assert.equal(plan.chapPassword, 'secretpass12');
    assert.equal(plan.campaign.stepTimeoutS, 6 * 3600);
  });

  it('names the field and line of an unknown method, a missing agent and a bad size', async () => {
    await refused(good().replace('[file-local, iscsi]', '[file-local, ftp]'), /p\.yaml:10: campaign\.methods\.1: /);
    await refused(good().replace(/  guest: .*\n/, ''), /p\.yaml:\d+: agents\.guest: /);
    await refused(good().replace('128MiB', '12 parsecs'), /p\.yaml:12: campaign\.volumeSize: "12 parsecs" is not a size/);
    await refused(good().replace('fileSize: 64MiB', 'fileSize: 0'), /campaign\.benchmarks\.bonnie\.fileSize: 0 is outside/);
    await refused(good().replace('128MiB', '64MiB'), /campaign\.volumeSize: .* cannot hold the benchmarks/);
    await refused(good().replace('iqn.2026-11.org.vcstor:g', 'iqn.bad'), /agents\.guest\.initiatorIqn: /);
    await refused(good().replace('127.0.0.1:3', '127.0.0.1:3;reboot'), /agents\.guest\.address: /);
    await refused(good().replace('name: t', 'name: t\nextra: 1'), /extra/);
    await refused(good().replace(secret, '/nonexistent/chap'), /chap\.passwordFile: cannot read/);
    await refused(good().replace('bonnie: { fileSize: 64MiB }', '{}'), /name at least one benchmark/);
    await refused(good().replace('  repetitions: 1', '  repetitions: 1\n  baselines: [dom0-ftp]'), /p\.yaml:12: campaign\.baselines\.0: /);
    await refused(good().replace('  repetitions: 1', '  repetitions: 1\n  nfsMountOptions: [rsize=32768, vers=2]'), /campaign\.nfsMountOptions\.1: .*"vers=2" is not an allowed option/);
  });

  it("takes dom0's baselines and Table 2's NFS options", async () => {
    const plan = await parsePlan(good().replace('  repetitions: 1', '  repetitions: 1\n  baselines: [dom0-local, dom0-iscsi]\n  nfsMountOptions: [rsize=32768, wsize=32768]'), 'p.yaml');
    assert.deepEqual(plan.campaign.baselines, ['dom0-local', 'dom0-iscsi']);
    assert.deepEqual(plan.campaign.nfsMountOptions, ['rsize=32768', 'wsize=32768']);
    const withIscsi = await parsePlan(good().replace('  repetitions: 1', '  repetitions: 1\n  iscsi: { initialR2T: true, immediateData: false, maxBurstLength: 64KiB, firstBurstLength: 64KiB }'), 'p.yaml');
    assert.deepEqual(withIscsi.campaign.iscsi, { initialR2T: true, immediateData: false, maxBurstLength: 65536, firstBurstLength: 65536 });
    await refused(good().replace('  repetitions: 1', '  repetitions: 1\n  iscsi: { maxBurstLength: 64KiB, firstBurstLength: 128KiB }'), /campaign\.iscsi\.firstBurstLength: firstBurstLength is more than maxBurstLength/);
    await refused(good().replace('  repetitions: 1', '  repetitions: 1\n  iscsi: { maxOutstandingR2T: 0 }'), /campaign\.iscsi\.maxOutstandingR2T/);
    const plain = await parsePlan(good(), 'p.yaml');
    assert.deepEqual([plain.campaign.baselines, plain.campaign.nfsMountOptions], [[], []], 'none unless asked');
  });

  it('a coordinator refuses a bad plan before anything runs', async () => {
    const coordinator = new Coordinator({ runsDir: path.join(dir, 'runs'), log: pino({ level: 'silent' }) });
    await assert.rejects(coordinator.submit(good().replace('[file-local, iscsi]', '[ftp]'), { source: 'p.yaml' }), /campaign\.methods\.0/);
    assert.deepEqual(await coordinator.list(), [], 'no run was created');
  });
});
