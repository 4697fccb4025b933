import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { stringify } from 'yaml';
import type { AgentClients } from '../../common/clients.js';
import type { GetInfoResponse__Output } from '../../common/generated/vcstor/v1/GetInfoResponse.js';
import { readStructured } from '../../common/structured.js';
import { clusterStatus, executeCluster, teardownCluster, type ClusterAgents } from '../../coordinator/cluster.js';
import { validateClusterPlan, type ClusterPlan } from '../../coordinator/cluster-plan.js';
import { runLimited } from '../../coordinator/cluster-schedule.js';
import { UndoJournal } from '../../coordinator/journal.js';
import type { AgentRole } from '../../coordinator/methods.js';
import type { RunRecord } from '../../coordinator/model.js';
import type { ParsedPlan, RunContext } from '../../coordinator/run-kind.js';
import { RunEvents } from '../../coordinator/run-events.js';
import { RunStore } from '../../coordinator/store.js';
import { clusterPlanValue } from './cluster-plan.test.js';

const LISTS = /^(List|GetInfo)/;

/**
 * The agents of a cluster as one small world of volumes, targets, sessions, images,
 * domains and mounts: each client double answers its agent's calls (idempotently, as the
 * real agents do), records every call as "<address> <rpc>", and counts calls in flight
 * per agent (each takes a few milliseconds).
 */
class World {
  readonly calls: string[] = [];
  readonly volumes = new Set<string>();
  readonly targets = new Map<string, string>();
  readonly sessions = new Map<string, Set<string>>();
  readonly mounts = new Map<string, Set<string>>();
  readonly images = new Map<string, Set<string>>();
  readonly domains = new Map<string, Set<string>>();
  inFlight = 0;
  maxInFlight = 0;
  readonly perAgent = new Map<string, number>();
  readonly maxPerAgent = new Map<string, number>();
  /** The domain each guest agent is, by its address. */
  constructor(private readonly guestDomains: Map<string, string>) {}

  private of<T>(map: Map<string, Set<T>>, address: string): Set<T> {
    if (!map.has(address)) map.set(address, new Set());
    return map.get(address)!;
  }

  /** What is left anywhere. */
  leftovers(): string[] {
    const sets = [...this.sessions, ...this.mounts, ...this.images, ...this.domains].flatMap(([a, s]) => [...s].map((x) => `${a} ${x}`));
    return [...[...this.volumes].map((v) => `volume ${v}`), ...[...this.targets.keys()].map((v) => `target ${v}`), ...sets];
  }

  private answer(role: AgentRole, address: string, rpc: string, r: any): unknown {
    switch (rpc) {
      case 'GetInfo':
        return { drivers: [] };
      case 'CreateVolume':
        this.volumes.add(r.name);
        return { volume: { name: r.name } };
      case 'DeleteVolume':
        this.volumes.delete(r.name);
        return {};
      case 'ListVolumes':
        return { volumes: [...this.volumes].map((name) => ({ name })) };
      case 'ExportIscsi':
        this.targets.set(r.volume, `iqn.2026-11.test:${r.volume}`);
        return { target: { iqn: this.targets.get(r.volume), sessionParams: null } };
      case 'UnexportIscsi':
        this.targets.delete(r.volume);
        return {};
      case 'ListIscsiTargets':
        return { targets: [...this.targets].map(([volume, iqn]) => ({ iqn, luns: [{ volume }] })) };
      case 'IscsiLogin':
        this.of(this.sessions, address).add(r.target.iqn);
        return { session: { devicePath: `/dev/disk-${r.target.iqn.split(':')[1]}`, driver: 'double', negotiated: null }, sessionParamsDetail: '' };
      case 'IscsiLogout':
        this.of(this.sessions, address).delete(r.target.iqn);
        return {};
      case 'ListIscsiSessions':
        return { sessions: [...this.of(this.sessions, address)].map((iqn) => ({ target: { iqn }, initiatorIqn: '' })) };
      case 'MakeFilesystem':
        return { device: r.device, fsType: 'ext4', alreadyExisted: false };
      case 'MountFilesystem':
        this.of(this.mounts, address).add(r.mountpoint);
        return {};
      case 'UnmountFilesystem':
        this.of(this.mounts, address).delete(r.mountpoint);
        return {};
      case 'ListFilesystems':
        return { mounts: [...this.of(this.mounts, address)].map((mountpoint) => ({ mountpoint })) };
      case 'CreateImage':
        this.of(this.images, address).add(r.location.path);
        return {};
      case 'DeleteImage':
        this.of(this.images, address).delete(r.location.path);
        return {};
      case 'ListImages':
        return { images: [...this.of(this.images, address)].map((p) => ({ location: { path: p } })) };
      case 'WriteDomainConfig':
        return {};
      case 'StartDomain':
        this.of(this.domains, address).add(r.name);
        return {};
      case 'StopDomain':
        this.of(this.domains, address).delete(r.name);
        return {};
      case 'ListDomains':
        return { domains: [...this.of(this.domains, address)].map((name) => ({ name, state: 'DOMAIN_STATE_RUNNING' })) };
      case 'ListBlockDevices': {
        const domain = this.guestDomains.get(address)!;
        const running = [...this.domains.values()].some((s) => s.has(domain));
        return { devices: running ? [{ origin: 'vbd:xvdb', path: '/dev/xvdb' }] : [] };
      }
      default:
        throw new Error(`the ${role} double has no ${rpc}`);
    }
  }

  private async call(role: AgentRole, address: string, rpc: string, request: unknown): Promise<unknown> {
    this.calls.push(`${address} ${rpc}`);
    // GetInfo of every agent at once comes before any guest is set up: not counted.
    if (rpc === 'GetInfo') return this.answer(role, address, rpc, request);
    this.inFlight++;
    this.perAgent.set(address, (this.perAgent.get(address) ?? 0) + 1);
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    this.maxPerAgent.set(address, Math.max(this.maxPerAgent.get(address) ?? 0, this.perAgent.get(address)!));
    try {
      await new Promise((r) => setTimeout(r, 2));
      return this.answer(role, address, rpc, request);
    } finally {
      this.inFlight--;
      this.perAgent.set(address, this.perAgent.get(address)! - 1);
    }
  }

  /** A client double of `role` at `address`. */
  client(role: AgentRole, address: string): grpc.Client {
    const unary = (rpc: string) => (request: unknown, _metadata: unknown, _options: unknown, callback: (err: unknown, response?: unknown) => void) => {
      this.call(role, address, rpc, request).then(
        (r) => callback(null, r),
        (err: Error) => callback(Object.assign(err, { code: 13, details: err.message, metadata: undefined })),
      );
      return { cancel: () => undefined };
    };
    const target: Record<string, unknown> = {
      getChannel: () => ({ getTarget: () => `dns:${address}` }),
      makeUnaryRequest: (method: string, _s: unknown, _d: unknown, request: unknown, metadata: unknown, options: unknown, callback: (err: unknown, response?: unknown) => void) =>
        unary(method.split('/').pop()!)(request, metadata, options, callback),
      // CreateImage streams its progress, then the image.
      CreateImage: (request: { location: { path: string } }) => {
        const stream = Object.assign(new EventEmitter(), { cancel: () => undefined });
        void this.call(role, address, 'CreateImage', request).then(() => {
          stream.emit('data', { result: { image: { location: request.location } } });
          stream.emit('end');
        });
        return stream;
      },
    };
    return new Proxy(target, { get: (t, name) => (name in t ? t[name as string] : unary(String(name))) }) as unknown as grpc.Client;
  }

  agents(): ClusterAgents {
    return {
      client: <K extends AgentRole>(role: K, address: string) => this.client(role, address) as unknown as AgentClients[K],
      info: async (role, address) => (await this.call(role, address, 'GetInfo', {})) as GetInfoResponse__Output,
      close: () => undefined,
    };
  }
}

describe('provisioning a cluster', () => {
  let dir = '';
  let secret = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-cluster-'));
    secret = path.join(dir, 'chap');
    await writeFile(secret, 'labsecret1234\n', { mode: 0o600 });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  async function setUp(edit: (value: Record<string, any>) => void = () => undefined) {
    const value = clusterPlanValue(secret, { methods: ['iscsi', 'file-local', 'iscsi', 'file-local'] });
    edit(value);
    const plan: ClusterPlan = await validateClusterPlan(readStructured(stringify(value), 'c.yaml'), 'c.yaml');
    const guestDomains = new Map(plan.cluster.dom0.flatMap((d) => d.guests.map((g) => [g.address, g.name] as [string, string])));
    const world = new World(guestDomains);
    const store = new RunStore(path.join(dir, `runs-${Math.random().toString(36).slice(2)}`));
    const runId = 'cl-small';
    let seq = 0;
    const run = async (what: 'provision' | 'teardown') => {
      const record: RunRecord = { runId, planName: plan.name, kind: what, state: 'pending', createdUnixMs: Date.now(), finishedUnixMs: 0, stepsTotal: 0, stepsSucceeded: 0, stepsFailed: 0, error: '' };
      await store.create(record, stringify(value));
      const events = new RunEvents(runId, store, undefined, seq);
      const context = { run: record, store, events, journal: await UndoJournal.open(store, runId), log: pino({ level: 'silent' }), signal: new AbortController().signal };
      const calls = world.calls.length;
      const final = what === 'provision' ? await executeCluster(plan, context, world.agents()) : await teardownCluster(plan, context, world.agents());
      const all = await store.events(runId);
      const mine = all.filter((e) => e.seq > seq);
      seq = all.at(-1)?.seq ?? seq;
      return { final, events: mine, calls: world.calls.slice(calls) };
    };
    return { plan, world, store, runId, run };
  }

  it('gives every guest its disk and leaves it, within the limits per agent and overall', async () => {
    const { world, store, runId, run } = await setUp((v) => (v.cluster.concurrency = { overall: 3, perAgent: 1 }));
    const { final, events } = await run('provision');
    assert.equal(final.state, 'succeeded', final.error);
    assert.equal(final.stepsSucceeded, 4);
    assert.deepEqual(events.filter((e) => e.stepId.startsWith('guest/') && e.state === 'succeeded').map((e) => e.stepId).sort(), ['guest/guest0', 'guest/guest1', 'guest/guest2', 'guest/guest3']);
    assert.ok(events.filter((e) => e.state === 'succeeded' && e.stepId.startsWith('guest/')).every((e) => e.message.startsWith('provisioned: ')));
    // One storage server serves all four: one guest at a time there.
    assert.equal(world.maxPerAgent.get('198.51.100.10:50051'), 1);
    for (const [address, max] of world.maxPerAgent) assert.ok(max <= 1, `${address}: ${max} at once`);
    assert.ok(world.maxInFlight <= 3);
    // Left in place: volumes, targets, sessions, images, domains, mounts.
    assert.deepEqual([...world.volumes].sort(), ['small-guest0-iscsi', 'small-guest2-iscsi']);
    assert.deepEqual([...world.domains.get('198.51.100.20:50051')!], ['guest1']);
    assert.deepEqual([...world.mounts.get('198.51.100.100:50051')!], ['/lab/hosts/guest0/mnt/small-guest0-iscsi']);
    // Journaled per guest; a record per guest.
    const undo = await store.undo(runId);
    assert.deepEqual(Object.keys(undo).sort(), ['guest0', 'guest1', 'guest2', 'guest3']);
    assert.deepEqual(undo.guest0!.map((s) => s.rpc), ['DeleteVolume', 'UnexportIscsi', 'IscsiLogout', 'UnmountFilesystem']);
    assert.deepEqual(undo.guest1!.map((s) => s.rpc), ['DeleteImage', 'StopDomain', 'UnmountFilesystem']);
    const records = await store.measurements(runId);
    assert.deepEqual(records.map((m) => [m.guest, m.method, (m.result as any).state, (m.result as any).dom0.name]).sort(), [
      ['guest0', 'iscsi', 'provisioned', 'host0'],
      ['guest1', 'file-local', 'provisioned', 'host0'],
      ['guest2', 'iscsi', 'provisioned', 'host1'],
      ['guest3', 'file-local', 'provisioned', 'host1'],
    ]);
  });

  it('provisioned again, converges: only List calls, nothing new; a missing piece is put back and nothing else changed', async () => {
    const { world, store, runId, run, plan } = await setUp();
    await run('provision');
    const undo = await store.undo(runId);
    const records = await store.measurements(runId);
    const again = await run('provision');
    assert.equal(again.final.state, 'succeeded', again.final.error);
    assert.deepEqual(again.calls.filter((c) => !LISTS.test(c.split(' ')[1]!)), [], 'no call but List and GetInfo');
    assert.deepEqual(again.events.filter((e) => e.stepId.startsWith('guest/') && e.state === 'succeeded').map((e) => e.message.split(':')[0]), ['unchanged', 'unchanged', 'unchanged', 'unchanged']);
    assert.deepEqual(await store.undo(runId), undo, 'the journal is as it was');
    assert.deepEqual(await store.measurements(runId), records, 'the records are as they were');

    // guest2's session drops: a third provision logs it back in, and touches no other guest.
    world.sessions.get('198.51.100.102:50051')!.clear();
    const repair = await run('provision');
    assert.equal(repair.final.state, 'succeeded', repair.final.error);
    const mutating = repair.calls.filter((c) => !LISTS.test(c.split(' ')[1]!));
    assert.deepEqual(mutating, ['198.51.100.10:50051 CreateVolume', '198.51.100.10:50051 ExportIscsi', '198.51.100.102:50051 IscsiLogin', '198.51.100.102:50051 MakeFilesystem', '198.51.100.102:50051 MountFilesystem'], 'the recipe of guest2 only, each call idempotent');
    assert.match(repair.events.find((e) => e.stepId === 'guest/guest2' && e.state === 'succeeded')!.message, /^repaired \(missing guest iSCSI session to iqn\.2026-11\.test:small-guest2-iscsi\)/);
    assert.deepEqual(await store.undo(runId), undo);
    const status = await clusterStatus(plan, store, runId, world.agents());
    assert.deepEqual(status.map((g) => [g.guest, g.state, g.intact]), [['guest0', 'provisioned', true], ['guest1', 'provisioned', true], ['guest2', 'provisioned', true], ['guest3', 'provisioned', true]]);
    assert.deepEqual(status[0]!.pieces.map((p) => `${p.present} ${p.what} (${p.undo})`), [
      'true volume small-guest0-iscsi (delete volume)',
      'true iSCSI target of small-guest0-iscsi (unexport iscsi)',
      'true guest iSCSI session to iqn.2026-11.test:small-guest0-iscsi (guest iscsi logout)',
      'true guest mount /lab/hosts/guest0/mnt/small-guest0-iscsi (guest unmount)',
    ]);
    assert.equal(status[1]!.image, '/lab/hosts/host0/images/small-guest1-file-local.img');
  });

  it('changes nothing of a guest the plan now gives another method, and says so', async () => {
    const first = await setUp();
    await first.run('provision');
    const { plan: changed } = await setUp((v) => (v.cluster.dom0[0].guests[0].method = 'phy-iscsi'));
    const record: RunRecord = { runId: first.runId, planName: changed.name, kind: 'provision', state: 'pending', createdUnixMs: 0, finishedUnixMs: 0, stepsTotal: 0, stepsSucceeded: 0, stepsFailed: 0, error: '' };
    const calls = first.world.calls.length;
    const final = await executeCluster(changed, { run: record, store: first.store, events: new RunEvents(first.runId, first.store, undefined, 1000), journal: await UndoJournal.open(first.store, first.runId), log: pino({ level: 'silent' }), signal: new AbortController().signal }, first.world.agents());
    assert.equal(final.state, 'failed');
    assert.deepEqual(first.world.calls.slice(calls).filter((c) => !LISTS.test(c.split(' ')[1]!)), []);
    const failed = (await first.store.events(first.runId)).find((e) => e.stepId === 'guest/guest0' && e.state === 'failed');
    assert.match(failed!.message, /guest0 has iscsi from storage0 on host0 .* set up, which the plan now gives otherwise: nothing changed/);
  });

  it('tears down each guest in the reverse of its set-up, leaving nothing; a second teardown does nothing', async () => {
    const { world, store, runId, run } = await setUp();
    await run('provision');
    const down = await run('teardown');
    assert.equal(down.final.state, 'succeeded', down.final.error);
    assert.equal(down.final.kind, 'teardown');
    const of = (address: string) => down.calls.filter((c) => c.startsWith(`${address} `));
    // guest0 (iscsi): unmount and log out in the guest, then unexport and delete on the storage server.
    const guest0 = down.calls.filter((c) => /^198\.51\.100\.100:|^198\.51\.100\.10:.*/.test(c) && !/guest2/.test(c));
    assert.deepEqual(of('198.51.100.100:50051'), ['198.51.100.100:50051 UnmountFilesystem', '198.51.100.100:50051 IscsiLogout']);
    assert.ok(guest0.indexOf('198.51.100.100:50051 IscsiLogout') < guest0.indexOf('198.51.100.10:50051 UnexportIscsi'), guest0.join(', '));
    // guest1 (file-local): unmount in the guest, stop its domain, delete its image.
    const guest1 = down.calls.filter((c) => c.startsWith('198.51.100.101:') || c.startsWith('198.51.100.20:'));
    assert.deepEqual(guest1, ['198.51.100.101:50051 UnmountFilesystem', '198.51.100.20:50051 StopDomain', '198.51.100.20:50051 DeleteImage']);
    assert.deepEqual(world.leftovers(), []);
    assert.deepEqual(await store.undo(runId), {});
    assert.deepEqual(await store.measurements(runId), []);
    assert.deepEqual(down.events.filter((e) => e.stepId.startsWith('teardown/') && e.state === 'succeeded').map((e) => e.stepId).sort(), ['teardown/guest0', 'teardown/guest1', 'teardown/guest2', 'teardown/guest3']);

    const again = await run('teardown');
    assert.equal(again.final.state, 'succeeded');
    assert.deepEqual(again.calls, []);
    assert.match(again.events[0]!.message, /nothing is provisioned/);
  });

  it('a guest whose agent is down is told, and the others are torn down', async () => {
    const { world, store, runId, run } = await setUp();
    await run('provision');
    const agents = world.agents();
    const broken: ClusterAgents = { ...agents, client: (role, address) => (address === '198.51.100.103:50051' ? failing() : agents.client(role, address)) as never };
    const record: RunRecord = { runId, planName: 'small', kind: 'teardown', state: 'pending', createdUnixMs: 0, finishedUnixMs: 0, stepsTotal: 0, stepsSucceeded: 0, stepsFailed: 0, error: '' };
    const { plan } = await setUp();
    const final = await teardownCluster(plan, { run: record, store, events: new RunEvents(runId, store, undefined, 1000), journal: await UndoJournal.open(store, runId), log: pino({ level: 'silent' }), signal: new AbortController().signal }, broken);
    assert.equal(final.state, 'failed');
    assert.match(final.error, /guest3: teardown stopped at guest unmount/);
    assert.deepEqual(Object.keys(await store.undo(runId)), ['guest3'], 'guest3 stays journaled, whole');
    assert.deepEqual((await store.undo(runId)).guest3!.length, 3);
  });
});

/** A client whose every call fails UNAVAILABLE. */
function failing(): grpc.Client {
  const fail = (...args: unknown[]) => {
    const callback = args.at(-1) as (err: unknown) => void;
    setImmediate(() => callback(Object.assign(new Error('down'), { code: 14, details: 'down', metadata: undefined })));
    return { cancel: () => undefined };
  };
  return new Proxy({ getChannel: () => ({ getTarget: () => 'dns:down' }), makeUnaryRequest: fail } as Record<string, unknown>, { get: (t, name) => (name in t ? t[name as string] : fail) }) as unknown as grpc.Client;
}

describe('the cluster scheduler', () => {
  it('keeps within the limits in all and per agent, and lets an item with free agents pass one waiting', async () => {
    const running = new Map<string, number>();
    let now = 0;
    let max = 0;
    const maxPer = new Map<string, number>();
    const started: string[] = [];
    const items = [
      { id: 'a', agents: ['s0', 'd0'] },
      { id: 'b', agents: ['s0', 'd0'] },
      { id: 'c', agents: ['s0', 'd1'] },
      { id: 'd', agents: ['s1', 'd1'] },
      { id: 'e', agents: ['s1', 'd2'] },
      { id: 'f', agents: ['s1', 'd2'] },
      { id: 'g', agents: ['s2', 'd3'] },
    ];
    await runLimited(items, { overall: 3, perAgent: 1 }, (i) => i.agents, async (i) => {
      started.push(i.id);
      now++;
      max = Math.max(max, now);
      for (const a of i.agents) {
        running.set(a, (running.get(a) ?? 0) + 1);
        maxPer.set(a, Math.max(maxPer.get(a) ?? 0, running.get(a)!));
      }
      await new Promise((r) => setTimeout(r, 5));
      for (const a of i.agents) running.set(a, running.get(a)! - 1);
      now--;
    });
    assert.equal(started.length, 7);
    assert.equal(max, 3);
    for (const [a, m] of maxPer) assert.equal(m, 1, a);
    // b and c wait for s0; d (free agents) starts before them.
    assert.deepEqual(started.slice(0, 3), ['a', 'd', 'g']);
  });

  it('runs every item even when some fail, then throws the first error', async () => {
    const done: number[] = [];
    await assert.rejects(
      runLimited([1, 2, 3, 4], { overall: 2, perAgent: 2 }, () => ['x'], async (i) => {
        done.push(i);
        if (i === 2) throw new Error('two');
      }),
      /two/,
    );
    assert.deepEqual(done.sort(), [1, 2, 3, 4]);
  });

  it('with nothing to do, returns at once', async () => {
    await runLimited([], { overall: 1, perAgent: 1 }, () => [], async () => assert.fail('no work'));
  });
});

describe('the coordinator runs a plan with a run id of its own again under that id', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-cluster-coord-'));
    await writeFile(path.join(dir, 'chap'), 'labsecret1234\n', { mode: 0o600 });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /**
   * A parsed plan whose kind names its runs (as a cluster's does), its runs one event
   * each; its text a cluster plan, which teardown reads back (with nothing journaled, it
   * calls no agent).
   */
  function fakePlan(gate?: Promise<void>): ParsedPlan {
    const act = (what: string) => async (context: RunContext): Promise<RunRecord> => {
      await gate;
      context.run.state = 'succeeded';
      context.run.finishedUnixMs = Date.now();
      await context.store.saveRun(context.run);
      await context.events.emit({ stepId: what, state: 'succeeded', message: '', runState: 'succeeded' });
      return context.run;
    };
    return {
      kind: 'provision',
      text: stringify({ ...clusterPlanValue(path.join(dir, 'chap')), name: 'c' }),
      source: 'c.yaml',
      header: { name: 'c' } as ParsedPlan['header'],
      description: 'a cluster',
      runId: 'cl-c',
      execute: act('provision'),
      teardown: act('teardown'),
      cleanup: async () => ({ removed: [], leftBehind: [] }),
    };
  }

  it('numbers the events of every run after the last, and tears down as the same run', async () => {
    const { Coordinator } = await import('../../coordinator/coordinator.js');
    const coordinator = new Coordinator({ runsDir: path.join(dir, 'runs'), log: pino({ level: 'silent' }) });
    const first = await coordinator.submit(fakePlan());
    assert.deepEqual([first.run.runId, first.created, first.afterSeq], ['cl-c', true, 0]);
    await coordinator.wait('cl-c');
    let release = () => undefined as void;
    const gate = new Promise<void>((r) => (release = r));
    const second = await coordinator.submit(fakePlan(gate));
    assert.deepEqual([second.run.runId, second.created, second.afterSeq], ['cl-c', true, 1]);
    const busy = await coordinator.submit(fakePlan());
    assert.equal(busy.created, false, 'one still running is returned as it is');
    await assert.rejects(coordinator.teardown('cl-c'), /still running/);
    release();
    await coordinator.wait('cl-c');
    const watched: string[] = [];
    for await (const e of coordinator.watch('cl-c', second.afterSeq)) watched.push(`${e.seq} ${e.stepId}`);
    assert.deepEqual(watched, ['2 provision'], 'a watcher of the second run sees its events only');
    const down = await coordinator.teardown('cl-c');
    assert.equal(down.afterSeq, 2);
    const tornDown = await coordinator.wait('cl-c');
    assert.deepEqual([tornDown.kind, tornDown.state], ['teardown', 'succeeded']);
    assert.deepEqual((await coordinator.store.events('cl-c')).map((e) => `${e.seq} ${e.stepId} ${e.message}`), ['1 provision ', '2 provision ', '3 teardown nothing is provisioned', '4 run 0 steps ok, 0 failed']);
    // Provisioned again after a teardown: a provision run again.
    await coordinator.submit(fakePlan());
    assert.equal((await coordinator.wait('cl-c')).kind, 'provision');
  });
});
