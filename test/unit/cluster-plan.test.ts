import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { readStructured } from '../../common/structured.js';
import { clusterGuests, clusterRunId, guestSpecKey, validateClusterPlan } from '../../coordinator/cluster-plan.js';
import { parsePlanText } from '../../coordinator/run-kinds.js';

/** A cluster plan of `dom0s` dom0 hosts with `perDom0` guests each, changed by `edit`. */
export function clusterPlanValue(secret: string, o: { dom0s?: number; perDom0?: number; storages?: number; methods?: string[] } = {}): Record<string, any> {
  const dom0s = o.dom0s ?? 2;
  const perDom0 = o.perDom0 ?? 2;
  let n = 0;
  return {
    name: 'small',
    tls: { insecure: true },
    chap: { username: 'vcstor', passwordFile: secret },
    cluster: {
      storage: Array.from({ length: o.storages ?? 1 }, (_, i) => ({ name: `storage${i}`, address: `198.51.100.${10 + i}:50051`, host: `198.51.100.${10 + i}` })),
      dom0: Array.from({ length: dom0s }, (_, i) => ({
        name: `host${i}`,
        address: `198.51.100.${20 + i}:50051`,
        initiatorIqn: `iqn.2026-11.org.vcstor.lab:host${i}`,
        imageDir: `/lab/hosts/host${i}/images`,
        mountDir: `/lab/hosts/host${i}/mnt`,
        guests: Array.from({ length: perDom0 }, () => {
          const j = n++;
          return { name: `guest${j}`, address: `198.51.100.${100 + j}:50051`, initiatorIqn: `iqn.2026-11.org.vcstor.lab:guest${j}`, mountDir: `/lab/hosts/guest${j}/mnt`, ...(o.methods?.[j] ? { method: o.methods[j] } : {}) };
        }),
      })),
      method: 'iscsi',
      nfsClients: '198.51.100.0/24',
    },
  };
}

describe('cluster plans', () => {
  let dir = '';
  let secret = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-cluster-plan-'));
    secret = path.join(dir, 'chap');
    await writeFile(secret, 'labsecret1234\n', { mode: 0o600 });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const parse = (value: unknown) => validateClusterPlan(readStructured(stringify(value), 'c.yaml'), 'c.yaml');

  it('are a kind of their own (provision), named by their run id, with defaults', async () => {
    const text = stringify(clusterPlanValue(secret, { methods: ['iscsi', 'file-local', 'phy-iscsi', 'file-iscsi'] }));
    const parsed = await parsePlanText(text, 'c.yaml');
    assert.equal(parsed.kind, 'provision');
    assert.equal(parsed.runId, 'cl-small');
    assert.equal(parsed.description, 'cluster of 4 guests on 2 dom0 hosts');
    const plan = await parse(clusterPlanValue(secret));
    assert.deepEqual(plan.cluster.concurrency, { overall: 4, perAgent: 2 });
    assert.equal(plan.cluster.diskSize, 256 * 2 ** 20);
    assert.equal(plan.chapPassword, 'labsecret1234');
  });

  it('resolve every guest: its dom0, its storage server (in turn, or named), its method and names', async () => {
    const value = clusterPlanValue(secret, { storages: 2, methods: ['file-local'] });
    value.cluster.dom0[1].guests[1].storage = 'storage0';
    value.cluster.dom0[1].guests[0].diskSize = '1GiB';
    const guests = clusterGuests(await parse(value));
    assert.deepEqual(guests.map((g) => [g.name, g.dom0.name, g.storage.name, g.method, g.domain, g.prefix]), [
      ['guest0', 'host0', 'storage0', 'file-local', 'guest0', 'small-guest0'],
      ['guest1', 'host0', 'storage1', 'iscsi', 'guest1', 'small-guest1'],
      ['guest2', 'host1', 'storage0', 'iscsi', 'guest2', 'small-guest2'],
      ['guest3', 'host1', 'storage0', 'iscsi', 'guest3', 'small-guest3'],
    ]);
    assert.equal(guests[2]!.sizeBytes, 2 ** 30);
    assert.equal(guests[3]!.sizeBytes, 256 * 2 ** 20);
  });

  it('give a guest another spec key when what its set-up depends on changes', async () => {
    const a = await parse(clusterPlanValue(secret));
    const b = clusterPlanValue(secret);
    b.cluster.dom0[0].guests[0].method = 'phy-iscsi';
    const pb = await parse(b);
    const [ga, gb] = [clusterGuests(a), clusterGuests(pb)];
    assert.notEqual(guestSpecKey(ga[0]!, a), guestSpecKey(gb[0]!, pb));
    assert.equal(guestSpecKey(ga[1]!, a), guestSpecKey(gb[1]!, pb));
  });

  it('derive a run id from the name, hashed where the name has what a run id cannot', () => {
    assert.equal(clusterRunId('cluster-small'), 'cl-cluster-small');
    assert.match(clusterRunId('my_cluster.v2'), /^cl-my-cluster-v2-[0-9a-f]{8}$/);
    assert.notEqual(clusterRunId('a.b'), clusterRunId('a_b'));
  });

  it('are refused with the file, line and field at fault', async () => {
    const noMethod = clusterPlanValue(secret);
    delete noMethod.cluster.method;
    noMethod.cluster.dom0[0].guests[0].method = 'iscsi';
    await assert.rejects(parse(noMethod), (err: Error) => /c\.yaml:\d+: cluster\.dom0\.0\.guests\.1\.method: give the guest a method, or the cluster one/.test(err.message) && !/dom0\.0\.guests\.0\.method/.test(err.message));

    const twice = clusterPlanValue(secret);
    twice.cluster.dom0[1].guests[0].name = 'guest0';
    await assert.rejects(parse(twice), /c\.yaml:\d+: cluster\.dom0\.1\.guests\.0\.name: host name "guest0" is given twice \(also at dom0\.0\.guests\.0\.name\)/);

    const unknownStorage = clusterPlanValue(secret);
    unknownStorage.cluster.dom0[0].guests[1].storage = 'storage9';
    await assert.rejects(parse(unknownStorage), /cluster\.dom0\.0\.guests\.1\.storage: no storage server "storage9"/);

    const baseline = clusterPlanValue(secret);
    baseline.cluster.dom0[0].guests[0].method = 'dom0-local';
    await assert.rejects(parse(baseline), /cluster\.dom0\.0\.guests\.0\.method/);

    const badLimit = clusterPlanValue(secret);
    badLimit.cluster.concurrency = { perAgent: 0 };
    await assert.rejects(parse(badLimit), /cluster\.concurrency\.perAgent/);

    const sameIqn = clusterPlanValue(secret);
    sameIqn.cluster.dom0[1].initiatorIqn = sameIqn.cluster.dom0[0].initiatorIqn;
    await assert.rejects(parse(sameIqn), /cluster\.dom0\.1\.initiatorIqn: initiator IQN .* is given twice/);

    const noGuests = clusterPlanValue(secret);
    noGuests.cluster.dom0[0].guests = [];
    await assert.rejects(parse(noGuests), /cluster\.dom0\.0\.guests/);
  });
});
