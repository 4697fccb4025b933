import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expectCode } from '../support/errors.js';
import { after, before, describe, it } from 'node:test';
import type { RunningAgent } from '../../common/agent.js';
import { checkHealth, getAgentInfo, makeClient, unary } from '../../common/clients.js';
import { VcstorError } from '../../common/errors.js';
import type { RunBenchmarkResponse__Output } from '../../common/generated/vcstor/v1/RunBenchmarkResponse.js';
import { loadVcstorProto, ROLE_SERVICES, roleServiceNames } from '../../common/proto.js';
import { listServicesByReflection } from '../support/reflection.js';
import { capturingLogger, startTestAgent } from '../support/agents.js';

const insecure = grpc.credentials.createInsecure();

/** What each role serves (besides grpc.health.v1.Health), written out: the contract the README states. */
const EXPECTED_SERVICES = {
  storage: ['vcstor.v1.HostAccounting', 'vcstor.v1.HostStorage', 'vcstor.v1.StorageAgent'],
  dom0: ['vcstor.v1.Benchmarks', 'vcstor.v1.Dom0Agent', 'vcstor.v1.HostAccounting', 'vcstor.v1.HostStorage', 'vcstor.v1.LoadSessions'],
  guest: ['vcstor.v1.Benchmarks', 'vcstor.v1.GuestAgent', 'vcstor.v1.HostAccounting', 'vcstor.v1.HostStorage', 'vcstor.v1.LoadSessions'],
} as const;
const ALL_SERVICES = [...new Set(Object.values(EXPECTED_SERVICES).flat()), 'vcstor.v1.Coordinator'];


describe('agents serve health, info and reflection', () => {
  const agents: RunningAgent[] = [];
  after(async () => {
    await Promise.all(agents.map((a) => a.stop(100)));
  });

  for (const role of ['storage', 'dom0', 'guest'] as const) {
    it(`${role}: health SERVING for each of its services, GetInfo, and reflection names exactly its services`, async () => {
      const agent = await startTestAgent(role);
      agents.push(agent);
      const address = agent.server.address;
      assert.equal(await checkHealth(address, insecure, ''), 'SERVING');
      assert.deepEqual(roleServiceNames(role).sort(), [...EXPECTED_SERVICES[role]]);
      for (const service of EXPECTED_SERVICES[role]) assert.equal(await checkHealth(address, insecure, service), 'SERVING', service);
      // Services of other roles are not registered with health at all.
      for (const service of ALL_SERVICES.filter((s) => !(EXPECTED_SERVICES[role] as readonly string[]).includes(s))) {
        await expectCode(checkHealth(address, insecure, service), 'NOT_FOUND', /NOT_FOUND|Health status unknown/i);
      }
      await expectCode(checkHealth(address, insecure, 'vcstor.v1.NoSuchService'), 'NOT_FOUND', /NOT_FOUND|Health status unknown/i);

      const info = await getAgentInfo(address, insecure);
      assert.equal(info.role, `ROLE_${role.toUpperCase()}`);
      assert.equal(info.name, `${role}-test`);
      assert.equal(info.apiVersion, 'vcstor.v1');
      assert.match(info.version, /^\d+\.\d+\.\d+/);
      assert.ok(info.startedUnixMs > Date.now() - 60_000 && info.startedUnixMs <= Date.now());
      const selected = info.drivers.filter((d) => d.selected);
      assert.ok(selected.length >= 2, 'a selected driver per concern');
      for (const driver of info.drivers) {
        assert.equal(driver.available, driver.missingPrograms.length === 0 && !/this kernel has no/.test(driver.detail), `${driver.concern}/${driver.driver}`);
      }

      assert.deepEqual(await listServicesByReflection(address, insecure), ['grpc.health.v1.Health', ...EXPECTED_SERVICES[role]].sort());
    });
  }

  it('one client per role: the methods of every service it serves, on one channel, closed once', async () => {
    const agent = await startTestAgent('dom0');
    agents.push(agent);
    const client = makeClient('dom0', agent.server.address, insecure);
    const channel = client.getChannel();
    try {
      const v1 = loadVcstorProto().grpcObject.vcstor.v1;
      for (const service of ROLE_SERVICES.dom0) {
        for (const [method, definition] of Object.entries(v1[service].service)) {
          const fn: unknown = Reflect.get(client, method);
          assert.equal(typeof fn, 'function', `${service}/${method}`);
          // Each method keeps its own service's path: what the server routes by.
          assert.equal((fn as { path?: string }).path, `/vcstor.v1.${service}/${method}`);
          assert.equal(definition.path, `/vcstor.v1.${service}/${method}`);
        }
      }
      // One call to each service, all answered (none UNIMPLEMENTED), all on one channel.
      assert.equal((await unary(client, client.GetInfo, {}, { timeoutMs: 5000 })).role, 'ROLE_DOM0');
      assert.deepEqual((await unary(client, client.ListNfsMounts, {}, { timeoutMs: 5000 })).mounts, []);
      assert.equal((await unary(client, client.StopLoadSessions, { setId: 'never-started' }, { timeoutMs: 5000 })).wasStarted, false);
      assert.equal((await unary(client, client.SampleIo, { paths: [] }, { timeoutMs: 5000 })).host, 'dom0-test');
      const benchmark = client.RunBenchmark({ directory: '/etc', fio: { rw: 'write' } }, { deadline: Date.now() + 5000 });
      const status = await new Promise<grpc.ServiceError>((resolve) => {
        benchmark.on('data', () => undefined);
        benchmark.on('error', resolve);
      });
      assert.equal(status.code, grpc.status.INVALID_ARGUMENT, status.details);
      assert.equal(client.getChannel(), channel);
      assert.equal(channel.getConnectivityState(false), grpc.connectivityState.READY);
    } finally {
      client.close();
    }
    assert.equal(channel.getConnectivityState(false), grpc.connectivityState.SHUTDOWN);
  });

  it('stops cleanly: the port is closed afterwards', async () => {
    const agent = await startTestAgent('guest');
    const address = agent.server.address;
    await agent.stop(100);
    await agent.stop(100); // idempotent
    await expectCode(checkHealth(address, insecure, '', 1000), 'UNAVAILABLE', /./);
  });
});

const PROBE = path.join(fileURLToPath(new URL('../../../', import.meta.url)), 'test/tools/grpc_probe.py');
const PYTHON = '/usr/bin/python3';
/** Debian's python3-grpcio and python3-protobuf, which grpc_probe.py needs. */
const probeSkip = !existsSync(PYTHON) ? `${PYTHON} is missing` : undefined;

describe('an outside client (grpc_probe.py, no vcstor code) finds its way by reflection', { skip: probeSkip }, () => {
  let guest: RunningAgent;
  const probe = async (...args: string[]) => (await promisify(execFile)(PYTHON, [PROBE, guest.server.address, ...args], { timeout: 20_000 })).stdout;
  before(async () => {
    try {
      await promisify(execFile)(PYTHON, ['-c', 'import grpc, google.protobuf']);
    } catch {
      return; // each test below skips itself
    }
    guest = await startTestAgent('guest', { guest: { mountRoot: '/mnt/vcstor' } });
  });
  after(async () => {
    await guest?.stop(100);
  });

  it('lists exactly the guest\'s services and calls the shared ones by their own names', async (t) => {
    if (!guest) return t.skip('python3-grpcio or python3-protobuf is not installed');
    assert.deepEqual((await probe('list')).trim().split('\n'), ['grpc.health.v1.Health', ...EXPECTED_SERVICES.guest]);
    assert.equal((await probe('health', 'vcstor.v1.LoadSessions')).trim(), 'SERVING');
    assert.equal((JSON.parse(await probe('call', 'vcstor.v1.GuestAgent/GetInfo')) as { role: string }).role, 'ROLE_GUEST');
    assert.equal((JSON.parse(await probe('call', 'vcstor.v1.HostAccounting/SampleIo', '{"paths":[]}')) as { host: string }).host, 'guest-test');
    assert.deepEqual(JSON.parse(await probe('call', 'vcstor.v1.HostStorage/ListFilesystems')), {});
    assert.equal((JSON.parse(await probe('call', 'vcstor.v1.LoadSessions/StopLoadSessions', '{"setId":"never-started"}')) as { wasStarted?: boolean }).wasStarted, undefined);
  });
});

describe('the gRPC edge', () => {
  let storage: RunningAgent;
  let dom0: RunningAgent;
  let guest: RunningAgent;
  const captured = capturingLogger();
  before(async () => {
    storage = await startTestAgent('storage', {}, captured.log);
    dom0 = await startTestAgent('dom0', { dom0: { imageRoots: ['/var/lib/vcstor/images'], mountRoot: '/mnt/vcstor' } }); // validation only: nothing is created
    guest = await startTestAgent('guest', { guest: { mountRoot: '/mnt/vcstor' } });
  });
  after(async () => {
    await Promise.all([storage.stop(100), dom0.stop(100), guest.stop(100)]);
  });

  it('answers INVALID_ARGUMENT for names with shell metacharacters and impossible sizes', async () => {
    const client = makeClient('storage', storage.server.address, insecure);
    try {
      const create = (name: string, sizeBytes: number) => unary(client, client.CreateVolume, { name, sizeBytes }, { timeoutMs: 5000 });
      await expectCode(create('vol;reboot', 1 << 30), 'INVALID_ARGUMENT', /^.*name: "vol;reboot" is not a valid name/);
      await expectCode(create('$(id)', 1 << 30), 'INVALID_ARGUMENT', /name: /);
      await expectCode(create('vol0', 0), 'INVALID_ARGUMENT', /size_bytes: 0 bytes is too small/);
      await expectCode(create('vol0', -1), 'INVALID_ARGUMENT', /size_bytes: -1 bytes is too small/);
      await expectCode(create('vol0', 2 ** 52), 'INVALID_ARGUMENT', /size_bytes: .* is too large/);
      // A valid request passes the edge and reaches the volume code, which knows no pool "other".
      await expectCode(unary(client, client.CreateVolume, { name: 'vol0', sizeBytes: 1 << 30, pool: 'other' }, { timeoutMs: 5000 }), 'NOT_FOUND', /no pool other/);
    } finally {
      client.close();
    }
  });

  it('answers INVALID_ARGUMENT for bad IQNs and missing ACLs, and never logs CHAP secrets', async () => {
    const client = makeClient('storage', storage.server.address, insecure);
    try {
      const chap = { username: 'alice', password: 'secretpass12' };
      const exportIscsi = (targetIqn: string, allowedInitiators: string[]) =>
        unary(client, client.ExportIscsi, { volume: 'vol0', targetIqn, allowedInitiators, chap }, { timeoutMs: 5000 });
      await expectCode(exportIscsi('iqn.2026-13.org.vcstor:vol0', ['iqn.2026-11.org.vcstor:init0']), 'INVALID_ARGUMENT', /target_iqn: .*month 13/);
      await expectCode(exportIscsi('', ['iqn.bad']), 'INVALID_ARGUMENT', /allowed_initiators\[0\]: "iqn.bad" is not an iSCSI name/);
      await expectCode(exportIscsi('', []), 'INVALID_ARGUMENT', /allow_any_initiator/);
      await expectCode(
        unary(client, client.ExportIscsi, { volume: 'vol0', allowedInitiators: ['iqn.2026-11.org.vcstor:init0'] }, { timeoutMs: 5000 }),
        'INVALID_ARGUMENT',
        /requires CHAP/,
      );
      await expectCode(
        unary(client, client.ExportIscsi, { volume: 'vol0', allowAnyInitiator: true, chap: { username: 'alice', password: 'short' } }, { timeoutMs: 5000 }),
        'INVALID_ARGUMENT',
        /chap.password: must be 12-16 characters/,
      );
    } finally {
      client.close();
    }
    const logged = captured.lines.join('');
    assert.match(logged, /ExportIscsi/, 'the calls were logged');
    assert.doesNotMatch(logged, /secretpass12/, 'the CHAP secret was not');
  });

  it('confines paths to the configured roots', async () => {
    const client = makeClient('dom0', dom0.server.address, insecure);
    try {
      const stream = client.CreateImage({ location: { path: '/var/lib/vcstor/images/../../../etc/shadow' }, sizeBytes: 1 << 30 }, { deadline: Date.now() + 5000 });
      await expectCode(
        new Promise((resolve, reject) => {
          stream.on('data', resolve);
          stream.on('error', (err: grpc.ServiceError) => reject(new VcstorError(err.code === grpc.status.INVALID_ARGUMENT ? 'INVALID_ARGUMENT' : 'INTERNAL', err.details)));
        }),
        'INVALID_ARGUMENT',
        /location.path: .* contains '.' or '..' segments/,
      );
      await expectCode(
        unary(client, client.MountNfs, { server: '198.51.100.10', exportPath: '/srv/vcstor/vol0', mountpoint: '/etc' }, { timeoutMs: 5000 }),
        'INVALID_ARGUMENT',
        /mountpoint: "\/etc" is outside/,
      );
      await expectCode(
        unary(client, client.IscsiLogin, { target: { portal: '198.51.100.10:3260', iqn: 'IQN.2026-11.ORG.VCSTOR:VOL0' } }, { timeoutMs: 5000 }),
        'INVALID_ARGUMENT',
        /target.iqn: .*lower case/,
      );
    } finally {
      client.close();
    }
  });

  it('validates streaming calls before they start', async () => {
    const client = makeClient('guest', guest.server.address, insecure);
    try {
      const messages: RunBenchmarkResponse__Output[] = [];
      const stream = client.RunBenchmark({ directory: '/tmp', fio: { rw: 'randwrite' } }, { deadline: Date.now() + 5000 });
      const status = await new Promise<grpc.ServiceError>((resolve) => {
        stream.on('data', (m: RunBenchmarkResponse__Output) => messages.push(m));
        stream.on('error', resolve);
      });
      assert.equal(status.code, grpc.status.INVALID_ARGUMENT);
      assert.match(status.details, /directory: "\/tmp" is outside the agent's configured directories \(\/mnt\/vcstor\)/);
      assert.equal(messages.length, 0);
    } finally {
      client.close();
    }
  });

  it('refuses a fio verify that would verify nothing (a time-based write phase never ends to read back)', async () => {
    const client = makeClient('guest', guest.server.address, insecure);
    try {
      const call = client.RunBenchmark({ directory: '/mnt/vcstor/x', fio: { rw: 'randwrite', verify: true, runtimeS: 5 } }, { deadline: Date.now() + 5000 });
      const status = await new Promise<grpc.ServiceError>((resolve) => {
        call.on('data', () => undefined);
        call.on('error', resolve);
      });
      assert.equal(status.code, grpc.status.INVALID_ARGUMENT);
      assert.match(status.details, /fio\.verify: cannot be combined with runtime_s/);
    } finally {
      client.close();
    }
  });

  it('streaming calls report errors as statuses: a benchmark in a missing directory is NOT_FOUND', async () => {
    const client = makeClient('guest', guest.server.address, insecure);
    try {
      const call = client.RunBenchmark({ directory: '/mnt/vcstor/missing', fio: { rw: 'write' } }, { deadline: Date.now() + 5000 });
      const status = await new Promise<grpc.ServiceError>((resolve) => {
        call.on('data', () => undefined);
        call.on('error', resolve);
      });
      assert.equal(status.code, grpc.status.NOT_FOUND);
      assert.match(status.details, /\/mnt\/vcstor\/missing does not exist/);
    } finally {
      client.close();
    }
  });

  it('serves only its own role: other services are UNIMPLEMENTED', async () => {
    const client = makeClient('dom0', storage.server.address, insecure);
    try {
      await expectCode(unary(client, client.GetInfo, {}, { timeoutMs: 5000 }), 'UNIMPLEMENTED', /./);
      await expectCode(unary(client, client.ListDomains, {}, { timeoutMs: 5000 }), 'UNIMPLEMENTED', /./);
      await expectCode(unary(client, client.StopLoadSessions, { setId: 'x' }, { timeoutMs: 5000 }), 'UNIMPLEMENTED', /./);
      // HostAccounting and HostStorage are one service each, the same on every agent that
      // serves them: a dom0 client reaches the storage agent's (a NAS head's initiator and mounts).
      assert.deepEqual((await unary(client, client.ListNfsMounts, {}, { timeoutMs: 5000 })).mounts, []);
      assert.equal((await unary(client, client.SampleIo, { paths: [] }, { timeoutMs: 5000 })).host, 'storage-test');
    } finally {
      client.close();
    }
  });
});
