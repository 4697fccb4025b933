import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DEFAULT_LAB, labTlsFiles, planHosts } from '../../lab/lab.js';
import { parsePlan } from '../../coordinator/plan.js';
import { isScalePlanText, parseScalePlan } from '../../coordinator/scale-plan.js';
import { clusterGuests, type ClusterPlan } from '../../coordinator/cluster-plan.js';
import { parsePlanText } from '../../coordinator/run-kinds.js';

/**
 * Every plan in plans/ is written for the default lab (`vcstor lab up`), or for the lab a
 * `# lab: --dom0 M --guests N` line in it names (the default lab with those counts): it
 * must parse, name that lab's agents, TLS files and directories, and size bonnie++ to
 * defeat the memory it says the hosts have.
 */
const PLANS = fileURLToPath(new URL('../../../plans/', import.meta.url));
const SECRET_FILE = path.join(DEFAULT_LAB.dir, 'secrets', 'chap');

describe('the plans in plans/ fit the default lab', () => {
  let dir = '';
  let files: string[] = [];
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-plans-'));
    await writeFile(path.join(dir, 'chap'), 'labsecret1234\n', { mode: 0o600 });
    files = (await readdir(PLANS)).filter((f) => /\.ya?ml$/.test(f)).sort();
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('there are plans to check', () => {
    assert.ok(['lab-small.yaml', 'paper.yaml', 'scale-small.yaml', 'cluster-small.yaml', 'shared-spaces.yaml'].every((f) => files.includes(f)), files.join(', '));
  });

  it('each parses, with the lab\'s agents, mTLS files and CHAP secret', async () => {
    const tls = labTlsFiles(DEFAULT_LAB.dir, false)!;
    for (const file of files) {
      const original = await readFile(path.join(PLANS, file), 'utf8');
      const counts = /^# lab: (?:--storage (\d+) )?--dom0 (\d+) --guests (\d+)$/m.exec(original);
      const hosts = planHosts(counts ? { ...DEFAULT_LAB, storage: Number(counts[1] ?? 1), dom0: Number(counts[2]), guests: Number(counts[3]) } : DEFAULT_LAB);
      const address = (role: string) => hosts.find((h) => h.role === role)!.agentAddress;
      assert.ok(original.includes(SECRET_FILE), `${file} reads the lab's CHAP secret (${SECRET_FILE})`);
      // The lab's secret is made by `lab up`; this test reads a copy of its own.
      const text = original.replaceAll(SECRET_FILE, path.join(dir, 'chap'));
      const parsed = await parsePlanText(text, file);
      if (parsed.kind === 'provision' || parsed.kind === 'shared') {
        const cluster = parsed.header as ClusterPlan;
        assert.deepEqual(cluster.tls, tls, `${file}: the default lab serves mTLS with these files`);
        assert.equal(cluster.chapPassword, 'labsecret1234', file);
        assert.deepEqual(cluster.cluster.storage.map((s) => s.address), hosts.filter((h) => h.role === 'storage').map((h) => h.agentAddress), file);
        assert.deepEqual(cluster.cluster.dom0.map((d) => d.address), hosts.filter((h) => h.role === 'dom0').map((h) => h.agentAddress), `${file}: every dom0 of its lab`);
        const guests = clusterGuests(cluster);
        assert.deepEqual(guests.map((g) => g.address), hosts.filter((h) => h.role === 'guest').map((h) => h.agentAddress), `${file}: every guest of its lab`);
        for (const g of guests) {
          assert.ok(g.mountDir.startsWith(`${DEFAULT_LAB.dir}/hosts/${g.name}/`), `${file}: ${g.name}'s mounts in the lab`);
          assert.ok(g.dom0.imageDir.startsWith(`${DEFAULT_LAB.dir}/hosts/${g.dom0.name}/`), `${file}: ${g.dom0.name}'s images in the lab`);
          assert.notEqual(g.method, 'nfs', `${file}: ${g.name}: the namespace lab has no kernel NFS client for the nfs method`);
        }
        continue;
      }
      const plan = isScalePlanText(text, file) ? await parseScalePlan(text, file) : await parsePlan(text, file);
      assert.deepEqual(plan.tls, tls, `${file}: the default lab serves mTLS with these files`);
      assert.equal(plan.agents.storage.address, address('storage'), file);
      assert.equal(plan.chapPassword, 'labsecret1234', file);
      if ('campaign' in plan) {
        assert.equal(plan.agents.dom0.address, address('dom0'), file);
        assert.equal(plan.agents.guest.address, address('guest'), file);
        assert.ok(plan.agents.dom0.imageDir.startsWith(`${DEFAULT_LAB.dir}/hosts/`), `${file}: dom0's images in the lab`);
        const bonnie = plan.campaign.benchmarks.bonnie;
        if (bonnie) {
          const memory = bonnie.ram ?? DEFAULT_LAB.memoryBytes!;
          assert.ok(bonnie.fileSize >= 2 * memory, `${file}: bonnie++'s file (${bonnie.fileSize}) is at least twice the hosts' memory (${memory})`);
          assert.ok(bonnie.ram !== undefined, `${file}: bonnie++ is told the hosts' memory`);
        }
      } else {
        for (const initiator of plan.agents.initiators) assert.equal(initiator.address, address(initiator.role), file);
      }
    }
  });
});
