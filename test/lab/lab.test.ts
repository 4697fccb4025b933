import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { access, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { checkHealth, getAgentInfo } from '../../common/clients.js';
import { ExecaCommandRunner } from '../../common/runner.js';
import { isWithin } from '../../common/validate.js';
import { Lab, labFilePath, tgtControlPort, type LabFile, type LabOptions } from '../../lab/lab.js';
import { VcstorError } from '../../common/errors.js';
import { isRunning, processStartTicks, startInNamespace } from '../../common/processes.js';
import { labAddress, labClientCredentials, TEST_LAB } from '../support/lab.js';
import { makeClient, unary } from '../../common/clients.js';
import { BLKIO_CONTROLLER, MEMORY_CONTROLLER } from '../../lab/cgroups.js';

function makeLabGuestClient(lab: LabFile) {
  return makeClient('guest', lab.hosts.find((h) => h.role === 'guest')!.agentAddress, labClientCredentials(lab));
}

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = path.join(ROOT, 'dist/cli/cli.js');
const PROBE = path.join(ROOT, 'test/tools/grpc_probe.py');
const runner = new ExecaCommandRunner();
const insecure = grpc.credentials.createInsecure();
const needsRoot = process.getuid?.() !== 0 ? 'the lab needs root' : false;

/** Everything of the lab still on this machine; all empty when it is really gone. */
async function leftovers(options: LabOptions, pids: number[]): Promise<Record<string, string[]>> {
  const namespaces = (await runner.run('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((ns) => ns.startsWith(`${options.name}-`));
  const links = (await runner.run('ip', ['-br', 'link'])).stdout.split('\n').map((l) => (l.split(/\s+/)[0] ?? '').replace(/@.*/, '')).filter((l) => l === `${options.name}-c`);
  const loops = (JSON.parse((await runner.run('losetup', ['--json', '--list', '--output', 'NAME,BACK-FILE'])).stdout || '{"loopdevices":[]}') as { loopdevices: Array<{ name: string; 'back-file': string | null }> }).loopdevices
    .filter((d) => d['back-file'] && isWithin(options.dir, d['back-file'].replace(/ \(deleted\)$/, '')))
    .map((d) => d.name);
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p && isWithin(options.dir, p));
  const processes: string[] = [];
  for (const pid of pids) if ((await processStartTicks(pid)) !== undefined) processes.push(String(pid));
  const sockets: string[] = [];
  for (const f of [`/var/run/tgtd/socket.${tgtControlPort(options.name)}`]) if (await access(f).then(() => true, () => false)) sockets.push(f);
  const cgroups: string[] = [];
  for (const controller of [MEMORY_CONTROLLER, BLKIO_CONTROLLER]) {
    for (const g of await readdir(controller).catch(() => [] as string[])) if (g === `vcstor.${options.name}`) cgroups.push(path.join(controller, g));
  }
  return { namespaces, links, loops, mounts, processes, sockets, cgroups };
}

const NOTHING = { namespaces: [], links: [], loops: [], mounts: [], processes: [], sockets: [], cgroups: [] };

/** The pids in a cgroup. */
async function pidsIn(cgroup: string, controller = MEMORY_CONTROLLER): Promise<number[]> {
  return (await readFile(path.join(controller, cgroup, 'cgroup.procs'), 'utf8')).split('\n').filter(Boolean).map(Number);
}

describe('the one-machine lab', { skip: needsRoot }, () => {
  let options: LabOptions;
  let lab: Lab;
  let record: LabFile;
  before(async () => {
    // A fixed place, so scripts/test.sh can remove a lab a killed run left behind.
    const dir = '/var/lib/vcstor/test-lab';
    // TEST-NET-3, and a name of its own, so a lab someone left up does not clash.
    options = { ...TEST_LAB, dir };
    lab = new Lab(runner, pino({ level: 'silent' }));
  });
  after(async () => {
    await lab.down(options.name, options.dir).catch(() => undefined);
    await rm(options.dir, { recursive: true, force: true });
  });

  it('comes up with an agent serving mTLS in every namespace; plaintext is refused', async () => {
    record = await lab.up(options);
    assert.ok(record.tls, 'mTLS by default');
    const mtls = labClientCredentials(record);
    assert.deepEqual(record.hosts.map((h) => `${h.name}:${h.role}:${h.agentAddress}`), [`storage0:storage:${labAddress(10)}:50051`, `host0:dom0:${labAddress(20)}:50051`, `guest0:guest:${labAddress(100)}:50051`]);
    assert.deepEqual(record.processes.map((p) => `${p.host}/${p.name}`).sort(), ['guest0/agent', 'host0/agent', 'storage0/agent', 'storage0/ganesha', 'storage0/nats-server', 'storage0/rpcbind', 'storage0/tgtd']);
    for (const host of record.hosts) {
      assert.equal(await checkHealth(host.agentAddress, mtls), 'SERVING', host.name);
      const plain = await checkHealth(host.agentAddress, insecure, '', 1000).then((s) => s, (err: unknown) => (err instanceof VcstorError ? err.code : String(err)));
      assert.ok(plain === 'UNAVAILABLE' || plain === 'DEADLINE_EXCEEDED', `${host.name} refuses plaintext: ${plain}`);
      const config = JSON.parse(await readFile(host.agentConfig, 'utf8')) as { tls: Record<string, unknown> };
      assert.deepEqual(Object.keys(config.tls).sort(), ['ca', 'cert', 'key'], `${host.name} serves its own certificate`);
    }
    const cli = await runner.run(process.execPath, [CLI, 'lab', 'check', '--name', options.name, '--dir', options.dir]);
    assert.match(cli.stdout, /all 3 agents answer/);
    assert.deepEqual(JSON.parse(await readFile(labFilePath(options.dir), 'utf8')).hosts, record.hosts);
  });

  it('agents answer health and GetInfo from another namespace, across the bridge', async () => {
    const storage = record.hosts[0]!;
    const guest = record.hosts[2]!;
    const tls = ['--ca', record.tls!.ca, '--cert', record.tls!.cert, '--key', record.tls!.key];
    const fromGuest = await runner.run('nsenter', [`--net=/run/netns/${guest.namespace}`, process.execPath, CLI, 'health', storage.agentAddress, ...tls, '--service', 'vcstor.v1.StorageAgent']);
    assert.equal(fromGuest.stdout.trim(), 'SERVING');
    const info = await runner.run('nsenter', [`--net=/run/netns/${record.hosts[1]!.namespace}`, process.execPath, CLI, 'info', guest.agentAddress, ...tls]);
    const parsed = JSON.parse(info.stdout) as { name: string; role: string };
    assert.deepEqual([parsed.name, parsed.role], ['guest0', 'ROLE_GUEST']);
    // The guest's own namespace has no route to anything but the lab: it reached storage0 over the bridge.
    const routes = await runner.run('ip', ['-n', guest.namespace, 'route']);
    assert.ok(routes.stdout.split('\n').some((r) => r.startsWith(`${TEST_LAB.subnet} dev eth0`)), routes.stdout);
    assert.doesNotMatch(routes.stdout, /default/);
  });

  it('a client from outside the project (python3-grpcio + reflection) lists and calls the API', async () => {
    const storage = record.hosts[0]!;
    const ns = `--net=/run/netns/${record.hosts[1]!.namespace}`;
    const env = { VCSTOR_PROBE_CA: record.tls!.ca, VCSTOR_PROBE_CERT: record.tls!.cert, VCSTOR_PROBE_KEY: record.tls!.key };
    const list = await runner.run('nsenter', [ns, '/usr/bin/python3', PROBE, storage.agentAddress, 'list'], { env });
    assert.deepEqual(list.stdout.trim().split('\n'), ['grpc.health.v1.Health', 'vcstor.v1.HostAccounting', 'vcstor.v1.HostStorage', 'vcstor.v1.StorageAgent']);
    const health = await runner.run('nsenter', [ns, '/usr/bin/python3', PROBE, storage.agentAddress, 'health', 'vcstor.v1.StorageAgent'], { env });
    assert.equal(health.stdout.trim(), 'SERVING');
    const info = JSON.parse((await runner.run('nsenter', [ns, '/usr/bin/python3', PROBE, storage.agentAddress, 'call', 'vcstor.v1.StorageAgent/GetInfo'], { env })).stdout) as { name: string; role: string; drivers: unknown[] };
    assert.equal(info.name, 'storage0');
    assert.equal(info.role, 'ROLE_STORAGE');
    assert.ok(info.drivers.length >= 6);
    const bad = await runner.run('nsenter', [ns, '/usr/bin/python3', PROBE, storage.agentAddress, 'call', 'vcstor.v1.StorageAgent/CreateVolume', '{"name":"x;reboot","sizeBytes":"1048576"}'], { okExitCodes: [3], env });
    assert.match(bad.stdout, /^ERROR INVALID_ARGUMENT name: "x;reboot" is not a valid name/);
  });

  it('every host has its own memory: a cgroup with the limit, holding its agent and daemons', async () => {
    const limit = String(TEST_LAB.memoryBytes);
    assert.equal(record.memoryBytes, TEST_LAB.memoryBytes);
    assert.match(record.disk ?? '', /^\d+:\d+$/);
    for (const host of record.hosts) {
      assert.equal(host.memoryCgroup, `/vcstor.${options.name}/${host.name}`);
      assert.equal((await readFile(path.join(MEMORY_CONTROLLER, host.memoryCgroup!, 'memory.limit_in_bytes'), 'utf8')).trim(), limit);
      const inGroup = await pidsIn(host.memoryCgroup!);
      const expected = record.processes.filter((p) => p.host === host.name && p.name !== 'nats-server').map((p) => p.pid);
      assert.ok(expected.length > 0);
      for (const pid of expected) assert.ok(inGroup.includes(pid), `${host.name}: pid ${pid} in ${host.memoryCgroup} (${inGroup.join(' ')})`);
      // Its disk: reads and writes of the lab's disk throttled in a blkio group of its own.
      const inBlkio = await pidsIn(host.memoryCgroup!, BLKIO_CONTROLLER);
      for (const pid of expected) assert.ok(inBlkio.includes(pid), `${host.name}: pid ${pid} in blkio ${host.memoryCgroup}`);
      for (const way of ['read', 'write']) {
        const rule = (await readFile(path.join(BLKIO_CONTROLLER, host.memoryCgroup!, `blkio.throttle.${way}_bps_device`), 'utf8')).trim();
        assert.equal(rule, `${record.disk} ${TEST_LAB.diskBytesPerSecond}`);
      }
      const config = JSON.parse(await readFile(host.agentConfig, 'utf8')) as { memoryCgroup: string; fuseServerCgroup: string };
      assert.equal(config.memoryCgroup, host.memoryCgroup, 'the agent is told its group');
      // Its FUSE servers run beside it, unlimited: inside, they would wait on their own writeback.
      assert.equal(config.fuseServerCgroup, `/vcstor.${options.name}/${host.name}-fuse`);
      assert.ok(Number((await readFile(path.join(MEMORY_CONTROLLER, config.fuseServerCgroup, 'memory.limit_in_bytes'), 'utf8')).trim()) > 2 ** 60, 'no limit');
    }
    const nats = record.processes.find((p) => p.name === 'nats-server')!;
    assert.ok(!(await pidsIn(record.hosts[0]!.memoryCgroup!)).includes(nats.pid), "NATS is the coordinator's, not storage0's");
    const status = await lab.status(options.dir);
    for (const host of status.hosts) {
      assert.equal(host.memory?.limitBytes, TEST_LAB.memoryBytes);
      assert.ok((host.memory?.usageBytes ?? 0) > 0, `${host.name} uses some memory`);
    }
    // The guest's agent drops its own group's cache, and says whose it is.
    const client = makeLabGuestClient(record);
    try {
      const drop = await unary(client, client.DropCaches, {}, { timeoutMs: 10_000 });
      assert.equal(drop.scope, `memory cgroup /vcstor.${options.name}/guest0`);
      const sample = await unary(client, client.SampleIo, { paths: [] }, { timeoutMs: 10_000 });
      const memory = sample.counters.find((c) => c.id === 'memory');
      assert.equal(Number(memory?.limitBytes), TEST_LAB.memoryBytes);
      assert.ok(sample.counters.some((c) => c.id.startsWith('process:node:')), 'the agent itself is among its processes');
      assert.ok(sample.counters.some((c) => c.id === 'net:eth0'), "the guest's link");
    } finally {
      client.close();
    }
  });

  it('up again changes nothing; after an agent dies, up restarts only that one', async () => {
    const again = await lab.up(options);
    assert.deepEqual(again.processes.map((p) => p.pid).sort(), record.processes.map((p) => p.pid).sort());
    const guestAgent = again.processes.find((p) => p.host === 'guest0' && p.name === 'agent')!;
    process.kill(guestAgent.pid, 'SIGKILL');
    for (let i = 0; i < 50 && (await isRunning(guestAgent)); i++) await new Promise((r) => setTimeout(r, 20));
    const status = await lab.status(options.dir);
    assert.notEqual(status.hosts.find((h) => h.name === 'guest0')!.agent, 'SERVING');
    const healed = await lab.up(options);
    const newGuest = healed.processes.find((p) => p.host === 'guest0' && p.name === 'agent')!;
    assert.notEqual(newGuest.pid, guestAgent.pid);
    assert.equal(healed.processes.find((p) => p.name === 'tgtd')!.pid, record.processes.find((p) => p.name === 'tgtd')!.pid, 'tgtd kept');
    assert.equal(await checkHealth(record.hosts[2]!.agentAddress, labClientCredentials(healed)), 'SERVING');
    record = healed;
  });

  it('down removes processes, namespaces, links, mounts and loop devices', async () => {
    // What agents will leave in later issues: a loop device, a mount, a stray process.
    const hostDir = path.join(options.dir, 'hosts', 'guest0');
    const image = path.join(hostDir, 'disk.img');
    await writeFile(image, '');
    await runner.run('truncate', ['-s', '64M', image]);
    const loop = (await runner.run('losetup', ['--find', '--show', image])).stdout.trim();
    await runner.run('mkfs.ext4', ['-q', '-F', loop]);
    const mountpoint = path.join(hostDir, 'mnt');
    await mkdir(mountpoint, { recursive: true });
    await runner.run('mount', [loop, mountpoint]);
    const stray = await startInNamespace('stray', 'guest0', record.hosts[2]!.namespace, ['sleep', '300'], path.join(options.dir, 'logs', 'stray.log'));
    const pids = [...record.processes.map((p) => p.pid), stray.pid];
    assert.notDeepEqual(await leftovers(options, pids), NOTHING, 'there is something to remove');

    const removed = await lab.down(options.name, options.dir);
    assert.ok(removed.some((r) => r.startsWith('mount ')));
    assert.ok(removed.some((r) => r.startsWith('loop device ')));
    assert.ok(removed.some((r) => r === `process ${stray.pid} in ${record.hosts[2]!.namespace}`));
    assert.deepEqual(await leftovers(options, pids), NOTHING);
    assert.deepEqual(await lab.down(options.name, options.dir), [], 'a second down has nothing to do');
    await access(path.join(options.dir, 'logs')); // logs stay for reading
  });

  it('--insecure: plaintext agents, asked for explicitly; down cleans up after a crash that left no record', async () => {
    const fresh = await lab.up({ ...options, insecure: true });
    assert.equal(fresh.tls, undefined);
    assert.equal(await checkHealth(fresh.hosts[0]!.agentAddress, insecure), 'SERVING');
    await assert.rejects(lab.up(options), /is up with plaintext \(--insecure\) agents; run lab down first/);
    await rm(labFilePath(options.dir));
    const removed = await lab.down(options.name, options.dir);
    assert.ok(removed.some((r) => r.startsWith('namespace ')));
    assert.deepEqual(await leftovers(options, fresh.processes.map((p) => p.pid)), NOTHING);
    const stillThere = await getAgentInfo(fresh.hosts[0]!.agentAddress, insecure, 1000).then(() => true, () => false);
    assert.equal(stillThere, false);
  });
});
