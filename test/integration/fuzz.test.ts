import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import type { RunningAgent } from '../../common/agent.js';
import { makeClient } from '../../common/clients.js';
import type { AgentRole } from '../../common/config.js';
import { makeHandlers } from '../../common/handlers.js';
import { loadVcstorProto, ROLE_SERVICES, SERVICE_NAMES, type ServiceName } from '../../common/proto.js';
import { RecordingCommandRunner, type RecordedCall } from '../support/runner-recording.js';
import { CommandError } from '../../common/runner.js';
import { startGrpcServer, type RunningServer } from '../../common/server.js';
import { isWithin } from '../../common/validate.js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { coordinatorOperations } from '../../coordinator/service.js';
import { startTestAgent } from '../support/agents.js';

/**
 * A bounded, deterministic fuzz of every RPC of the three agents and the coordinator:
 * requests built from the proto's own message descriptors, every field drawn from
 * values valid for this agent, adversarial strings and numbers, and mutations of the
 * valid ones. Every program the agents run is recorded (and answers "not installed").
 *
 * What must hold for every call:
 * - the status is never UNKNOWN or INTERNAL (an unexpected exception somewhere);
 * - a call refused with INVALID_ARGUMENT ran no command at all;
 * - every command that did run got only arguments that stay in the agent's own
 *   directories (or /dev), hold no control characters, and inject no qemu option;
 * - nothing outside the agent's directories changed (a decoy directory, reachable
 *   only through symbolic links planted inside the roots, is untouched).
 *
 * VCSTOR_FUZZ_SEED and VCSTOR_FUZZ_CASES (per RPC) reproduce or widen a run.
 */

const SEED = Number(process.env.VCSTOR_FUZZ_SEED ?? 20261109);
const CASES = Number(process.env.VCSTOR_FUZZ_CASES ?? 150);
const CALL_TIMEOUT_MS = 5000;

/** mulberry32: small, fast, deterministic. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface FieldDescriptor {
  name: string;
  label: string;
  type: string;
  typeName: string;
}
interface MessageDescriptor {
  field: FieldDescriptor[];
}
interface EnumDescriptor {
  value: Array<{ name: string }>;
}

const ADVERSARIAL_STRINGS = [
  '', ' ', ';reboot', 'a;b', '$(id)', '`id`', '|id', '&& id', 'a\nb', 'a\u0000b', '\u0000', '\r', '\t',
  '../../etc/passwd', '..', '.', '/', '//', '/etc/passwd', '/etc/shadow', '/dev/../etc/shadow', '/proc/self/mem',
  'x'.repeat(5000), 'é', '\u202e', '😀', '%s%n%x', '-rf', '--help', '-o', '--force', 'a,b', 'a b', '"', "'", '\\', '*', '>', '#',
  'vcstor.>', 'iqn.', 'IQN.2026-11.ORG.VCSTOR:V0', 'iqn.2026-13.org.x:y', `iqn.2026-11.org.vcstor:${'a'.repeat(300)}`,
  'iqn.1999-01.com.other:target', 'nfs://x/y?uid=0', '/srv/x,driver=file,filename=/etc/shadow', '/srv/x?uid=0',
  '127.0.0.1:99999', '[::1', '999.1.1.1', '0.0.0.0/99', 'localhost:-1', 'secretpass12; reboot', 'short',
];

const ADVERSARIAL_NUMBERS = [0, 1, -1, 2, 3, 255, 256, 511, 512, 4096, 1 << 20, (1 << 20) + 1, 4 << 20, 16383, 16384, 70_000, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 32 + 1, 2 ** 40, 2 ** 53 - 1, 64 * 2 ** 40 + 1, -(2 ** 53)];

/** Request values an agent would accept, by field name: they lead the fuzz past the first check. */
function validPool(roots: { names: string[]; iqnPrefix: string; paths: string[] }): (field: string) => string[] {
  return (field) => {
    const f = field.toLowerCase();
    if (/iqn|initiators/.test(f)) return [`${roots.iqnPrefix}:v0`, 'iqn.2026-11.org.vcstor.lab:host0', 'eui.0123456789abcdef'];
    // Loopback only: a request that gets through must not reach a real server (the lab's
    // agents and daemons live on 198.51.100.0/24).
    if (/portal|server|host|address|match|ip$/.test(f)) return ['127.0.0.1:1', '127.0.0.1', 'localhost', '[::1]:1', '127.0.0.0/8', '*'];
    if (/password/.test(f)) return ['secretpass12', 'Zx9-Long.Secret1'];
    if (/username/.test(f)) return ['alice', 'tgt-user'];
    if (/options/.test(f)) return ['noatime', 'ro', '-E', 'lazy_itable_init=0', 'rsize=1048576', 'data=ordered'];
    if (/fstype|makefilesystem/.test(f)) return ['ext4', 'xfs', ''];
    if (f === 'vdev') return ['xvdb', 'hda', 'sdc'];
    if (f === 'rw') return ['write', 'randread'];
    if (f === 'ioengine') return ['psync', 'libaio'];
    if (f === 'mac') return ['00:16:3e:00:00:01'];
    if (f === 'cmdline') return ['root=/dev/xvda ro'];
    if (f === 'type') return ['pv', 'hvm'];
    if (f === 'runid') return ['r-abc', 'q-0123456789abcdef'];
    if (/path|directory|mountpoint|device|kernel|ramdisk/.test(f)) return roots.paths;
    return roots.names;
  };
}

class RequestFuzzer {
  private readonly random: () => number;
  constructor(
    seed: number,
    private readonly definition: Record<string, { type?: unknown }>,
    private readonly valid: (field: string) => string[],
    private readonly extraStrings: readonly string[],
  ) {
    this.random = prng(seed);
  }

  private pick<T>(values: readonly T[]): T {
    return values[Math.floor(this.random() * values.length)]!;
  }

  string(field: string): string {
    const roll = this.random();
    const valid = this.valid(field);
    if (roll < 0.45) return this.pick(valid);
    if (roll < 0.75) return this.pick([...ADVERSARIAL_STRINGS, ...this.extraStrings]);
    const base = this.pick(valid);
    const bad = this.pick(ADVERSARIAL_STRINGS);
    switch (Math.floor(this.random() * 7)) {
      case 0:
        return base + bad;
      case 1:
        return bad + base;
      case 2:
        return `${base}/..`;
      case 3:
        return base.toUpperCase();
      case 4:
        return base.repeat(60);
      case 5: {
        const at = Math.floor(this.random() * (base.length + 1));
        return `${base.slice(0, at)}\u0000${base.slice(at)}`;
      }
      default:
        return `${base}/${bad}`;
    }
  }

  number(): number {
    return this.random() < 0.2 ? Math.floor(this.random() * 10) : this.pick(ADVERSARIAL_NUMBERS);
  }

  message(typeName: string, depth = 0): Record<string, unknown> {
    const descriptor = this.definition[typeName]?.type as MessageDescriptor | undefined;
    const out: Record<string, unknown> = {};
    if (!descriptor || depth > 4) return out;
    for (const field of descriptor.field) {
      if (this.random() < 0.25) continue; // absent: its default
      const one = () => this.value(field, depth);
      // A null element of a repeated message is not a message: the client cannot send it.
      const element = () => (field.type === 'TYPE_MESSAGE' ? this.message(`vcstor.v1.${field.typeName}`, depth + 1) : one());
      out[field.name] = field.label === 'LABEL_REPEATED' ? Array.from({ length: Math.floor(this.random() * 4) }, element) : one();
    }
    return out;
  }

  private value(field: FieldDescriptor, depth: number): unknown {
    switch (field.type) {
      case 'TYPE_STRING':
        return this.string(field.name);
      case 'TYPE_BOOL':
        return this.random() < 0.5;
      case 'TYPE_ENUM': {
        const e = this.definition[`vcstor.v1.${field.typeName}`]?.type as EnumDescriptor | undefined;
        return e ? this.pick(e.value).name : 0;
      }
      case 'TYPE_MESSAGE':
        return this.random() < 0.1 ? null : this.message(`vcstor.v1.${field.typeName}`, depth + 1);
      case 'TYPE_DOUBLE':
      case 'TYPE_FLOAT':
        return this.pick([0, -1, 0.5, 1e308, Number.NaN]);
      case 'TYPE_UINT32':
      case 'TYPE_FIXED32':
        return Math.abs(this.number()) % 2 ** 32;
      case 'TYPE_INT32':
      case 'TYPE_SINT32':
        return this.number() | 0;
      default:
        return this.number();
    }
  }
}

/** A command runner where every program is "not installed": nothing runs, all is recorded. */
function notInstalledRunner(): RecordingCommandRunner {
  return new RecordingCommandRunner().when(() => true, (command) => new CommandError('UNAVAILABLE', `${command} is not installed on this host (fuzz)`, { commandLine: command }));
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
/** qemu --blockdev properties the agents use; anything else came from a request. */
const BLOCKDEV_KEYS = new Set(['driver', 'transport', 'portal', 'target', 'lun', 'initiator-name', 'timeout', 'header-digest', 'user', 'password-secret', 'node-name', 'server.type', 'server.host', 'path', 'filename', 'aio', 'cache.direct']);

/** Why a recorded command's arguments are not acceptable, or undefined. */
function badArgument(call: RecordedCall, roots: readonly string[]): string | undefined {
  // GetInfo asks dpkg which package installed each program a driver runs (Table 1's
  // versions): a read-only lookup of the program's own path, not of anything a request gave.
  if (call.command === 'dpkg-query' && call.args.length === 2 && call.args[0] === '--search' && /^\/(usr\/)?s?bin\/[\w.+-]+$/.test(call.args[1] ?? '')) return undefined;
  for (const arg of call.args) {
    if (CONTROL.test(arg)) return `control character in ${JSON.stringify(arg)}`;
    if (arg.startsWith('nfs://')) {
      if (!/^nfs:\/\/[A-Za-z0-9.:[\]-]+\/[A-Za-z0-9._/+-]*$/.test(arg)) return `NFS URL with more than a host and a path: ${arg}`;
      continue;
    }
    if (/^[a-z.-]+=/.test(arg) && arg.includes(',') && (call.command.startsWith('qemu') || call.args.includes('--blockdev'))) {
      const keys = arg.split(',').map((kv) => kv.split('=')[0] ?? '');
      const unknown = keys.filter((k) => !BLOCKDEV_KEYS.has(k));
      if (unknown.length > 0) return `qemu option injection: ${unknown.join(',')} in ${arg}`;
      continue;
    }
    const local = arg.startsWith('/') ? arg : /^-[-\w]*=(\/.*)$/.exec(arg)?.[1];
    if (local !== undefined) {
      if (local.split('/').includes('..')) return `'..' in ${arg}`;
      if (!roots.some((root) => isWithin(root, local))) return `path outside the agent's directories: ${arg}`;
    }
  }
  return undefined;
}

interface Outcome {
  code: grpc.status;
  details: string;
}

function callOnce(client: grpc.Client, method: string, streaming: boolean, request: unknown): Promise<Outcome> {
  const fn = (client as unknown as Record<string, (...args: unknown[]) => unknown>)[method]!.bind(client);
  const options = { deadline: Date.now() + CALL_TIMEOUT_MS };
  return new Promise((resolve) => {
    if (!streaming) {
      fn(request, new grpc.Metadata(), options, (err: grpc.ServiceError | null) => resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '' }));
      return;
    }
    const call = fn(request, new grpc.Metadata(), options) as grpc.ClientReadableStream<unknown>;
    call.on('data', () => undefined);
    call.on('error', (err: grpc.ServiceError) => resolve({ code: err.code, details: err.details }));
    call.on('end', () => resolve({ code: grpc.status.OK, details: '' }));
  });
}

interface Target {
  label: string;
  client: grpc.Client;
  /** Every service the target serves, by short name (all reached through its one client). */
  services: ReadonlyArray<{ name: ServiceName; definition: grpc.ServiceDefinition }>;
  recorder: RecordingCommandRunner;
  roots: string[];
  fuzzer: RequestFuzzer;
  /** Request changes for safety (e.g. SubmitPlan only as a dry run). */
  adjust?: (method: string, request: Record<string, unknown>) => void;
}

/** Fuzz every method of one target; returns every failure found (empty: none). */
async function fuzzTarget(t: Target, failures: string[], counts: Map<string, number>): Promise<void> {
  for (const [service, method, definition] of t.services.flatMap((s) => Object.entries(s.definition).map(([m, d]) => [s.name, m, d] as const))) {
    const requestType = (definition as unknown as { requestType: { type: { name: string } } }).requestType.type;
    const typeName = `vcstor.v1.${requestType.name}`;
    for (let i = 0; i < CASES; i++) {
      const request = t.fuzzer.message(typeName);
      t.adjust?.(method, request);
      const before = t.recorder.calls.length;
      const outcome = await callOnce(t.client, method, definition.responseStream, request);
      const ran = t.recorder.calls.slice(before);
      const key = `${t.label}.${service}/${method} ${grpc.status[outcome.code]}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
      const shown = () => `${t.label}.${method} #${i} (seed ${SEED}) ${JSON.stringify(request).slice(0, 600)}`;
      if (outcome.code === grpc.status.UNKNOWN || outcome.code === grpc.status.INTERNAL) failures.push(`${shown()} -> ${grpc.status[outcome.code]}: ${outcome.details}`);
      // A tool's own time limit (e.g. a login timeout_ms of 1) is an answer; a call that
      // ran into the call's deadline hung.
      if (outcome.code === grpc.status.DEADLINE_EXCEEDED && /Deadline exceeded|ran past its deadline/i.test(outcome.details)) {
        failures.push(`${shown()} -> hung for ${CALL_TIMEOUT_MS} ms: ${outcome.details}`);
      }
      if (outcome.code === grpc.status.INVALID_ARGUMENT && ran.length > 0) failures.push(`${shown()} -> INVALID_ARGUMENT after running ${ran.map((c) => c.line).join(' ; ')}`);
      for (const call of ran) {
        const why = badArgument(call, t.roots);
        if (why) failures.push(`${shown()} ran ${call.line.slice(0, 300)}: ${why}`);
      }
    }
  }
}

async function snapshot(dir: string): Promise<string> {
  const entries = await readdir(dir, { recursive: true });
  const contents = await Promise.all(entries.sort().map(async (e) => `${e}:${await readFile(path.join(dir, e), 'utf8').catch(() => '<dir>')}`));
  return contents.join('\n');
}

describe(`fuzz: every RPC, ${CASES} cases each (seed ${SEED})`, () => {
  let scratch: string;
  let decoy: string;
  const agents: RunningAgent[] = [];
  const targets: Target[] = [];
  let coordinatorServer: RunningServer | undefined;
  let coordinator: Coordinator | undefined;

  before(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'vcstor-fuzz-'));
    // What the symbolic links planted in every root lead to: it must never change.
    decoy = path.join(scratch, 'outside');
    await mkdir(decoy);
    await writeFile(path.join(decoy, 'passwd'), 'root:x:0:0\n');
    await writeFile(path.join(decoy, 'a.img'), 'not an image\n');
    const { definition } = loadVcstorProto();
    const defs = definition as unknown as Record<string, { type?: unknown }>;
    const credentials = grpc.credentials.createInsecure();

    const start = async (role: AgentRole, extra: Record<string, unknown>, rootsOf: (config: Record<string, unknown>) => string[], seed: number) => {
      const recorder = notInstalledRunner();
      const agent = await startTestAgent(role, extra, pino({ level: 'silent' }), recorder);
      agents.push(agent);
      const config = agent.runtime.config as unknown as Record<string, unknown>;
      const roots = rootsOf(config);
      const own = path.dirname(String(config.stateDir));
      for (const root of roots) {
        await mkdir(root, { recursive: true });
        await symlink(decoy, path.join(root, 'link')).catch(() => undefined);
      }
      const paths = roots.flatMap((r) => [r, `${r}/x`, `${r}/a.img`, `${r}/d/e`, `${r}/link`, `${r}/link/passwd`, `${r}/link/a.img`, `${r}/../outside/passwd`]);
      const valid = validPool({ names: ['v0', 'vol-1', 'guest0', 'a.b_c', 'default', 'xenbr0', 'pygrub'], iqnPrefix: 'iqn.2026-11.org.vcstor', paths: [...paths, '/dev/loop0', '/dev/sda', '/srv/vcstor/x', '/srv/vcstor/x,driver=file,filename=/etc/shadow', '/srv/vcstor/x?uid=0'] });
      const v1 = loadVcstorProto().grpcObject.vcstor.v1;
      const kind = role;
      targets.push({
        label: role,
        client: makeClient(kind, agent.server.address, credentials),
        services: ROLE_SERVICES[role].map((name) => ({ name, definition: v1[name].service })),
        recorder,
        roots: [own, '/dev', '/proc/self', '/sys/kernel/config/target'],
        fuzzer: new RequestFuzzer(seed, defs, valid, paths),
        // Large preallocated volumes and images are real zero-fills: keep valid ones sparse.
        adjust: (method, request) => {
          if ((method === 'CreateVolume' || method === 'CreateImage') && Number(request.sizeBytes) > 16 << 20) request.provisioning = 'PROVISIONING_SPARSE';
        },
      });
      recorder.calls.length = 0;
    };

    const dir = (name: string) => path.join(scratch, name);
    await start('storage', {}, (c) => {
      const storage = c.storage as { volumes: { poolDir: string }; nfsServer: { exportRoot: string } };
      return [storage.volumes.poolDir, storage.nfsServer.exportRoot];
    }, SEED + 1);
    // open-iscsi: logins go through the recording runner (qsd would start real daemons).
    await start('dom0', { dom0: { iscsiInitiator: { driver: 'open-iscsi' }, imageRoots: [dir('dom0-images')], mountRoot: dir('dom0-mnt'), hypervisor: { driver: 'sandbox', configDir: dir('dom0-domains'), sandboxRoot: dir('dom0-sandbox') } }, stateDir: dir('dom0-state') }, () => [dir('dom0-images'), dir('dom0-mnt')], SEED + 2);
    await start('guest', { guest: { iscsiInitiator: { driver: 'open-iscsi' }, mountRoot: dir('guest-mnt'), vbdDirectory: dir('guest-vbd') }, stateDir: dir('guest-state') }, () => [dir('guest-mnt'), dir('guest-vbd')], SEED + 3);
    // The dom0 and guest test agents' own paths are under scratch: let their commands use it.
    for (const t of targets.slice(1)) t.roots.push(scratch);

    // The coordinator: SubmitPlan with mutated plans, always as a dry run (nothing provisioned).
    coordinator = new Coordinator({ runsDir: dir('runs'), log: pino({ level: 'silent' }) });
    const coordinatorDefinition = loadVcstorProto().grpcObject.vcstor.v1.Coordinator.service;
    coordinatorServer = await startGrpcServer({
      listen: '127.0.0.1:0',
      tls: { insecure: true },
      services: [{ name: SERVICE_NAMES.coordinator, definition: coordinatorDefinition, implementation: makeHandlers(coordinatorDefinition, coordinatorOperations(coordinator, Date.now()), { log: pino({ level: 'silent' }), maxCallMs: 10_000 }) }],
      log: pino({ level: 'silent' }),
    });
    await writeFile(dir('chap'), 'secretpass12\n');
    const plan = `name: fuzz
agents:
  storage: { address: 127.0.0.1:1, host: 127.0.0.1 }
  dom0: { address: 127.0.0.1:2, initiatorIqn: iqn.2026-11.org.vcstor:d, imageDir: /var/lib/i, mountDir: /var/lib/m }
  guest: { address: 127.0.0.1:3, initiatorIqn: iqn.2026-11.org.vcstor:g, mountDir: /var/lib/g, domain: guest0 }
tls: { insecure: true }
nfsClients: 127.0.0.0/8
chap: { username: vcstor, passwordFile: ${dir('chap')} }
nats: { url: nats://127.0.0.1:4222, user: u, passwordFile: ${dir('chap')} }
campaign:
  methods: [file-local, iscsi]
  repetitions: 1
  volumeSize: 128MiB
  benchmarks:
    bonnie: { fileSize: 64MiB }
`;
    const planRandom = prng(SEED + 4);
    const mutatePlan = (): string => {
      const lines = plan.split('\n');
      const at = Math.floor(planRandom() * lines.length);
      const bad = ADVERSARIAL_STRINGS[Math.floor(planRandom() * ADVERSARIAL_STRINGS.length)]!;
      const line = lines[at]!;
      const colon = line.indexOf(': ');
      lines[at] = planRandom() < 0.5 && colon > 0 ? `${line.slice(0, colon + 2)}${JSON.stringify(bad)}` : `${line}${bad}`;
      return planRandom() < 0.1 ? plan : lines.join('\n');
    };
    targets.push({
      label: 'coordinator',
      client: makeClient('coordinator', coordinatorServer.address, credentials),
      services: [{ name: 'Coordinator', definition: coordinatorDefinition }],
      recorder: new RecordingCommandRunner(),
      roots: [],
      fuzzer: new RequestFuzzer(SEED + 5, defs, validPool({ names: ['r-abc', 'fuzz'], iqnPrefix: 'iqn.2026-11.org.vcstor', paths: [] }), []),
      adjust: (method, request) => {
        if (method === 'SubmitPlan') {
          request.plan = planRandom() < 0.8 ? mutatePlan() : request.plan;
          request.dryRun = true;
        }
      },
    });
  });

  after(async () => {
    for (const t of targets) t.client.close();
    await Promise.all(agents.map((a) => a.stop(100)));
    await coordinator?.stop();
    await coordinatorServer?.shutdown(100);
    await rm(scratch, { recursive: true, force: true });
  });

  it('never UNKNOWN or INTERNAL, no command for a refused request, only validated arguments, nothing outside the roots touched', async () => {
    const decoyBefore = await snapshot(decoy);
    const failures: string[] = [];
    const counts = new Map<string, number>();
    const started = Date.now();
    // The four targets run side by side; each one's calls one at a time, so every
    // recorded command belongs to the call that ran it.
    await Promise.all(targets.map((t) => fuzzTarget(t, failures, counts)));
    const summary = [...counts.entries()].sort().map(([k, n]) => `${k}: ${n}`).join('\n');
    process.stderr.write(`fuzz: ${[...counts.values()].reduce((a, b) => a + b, 0)} calls in ${Date.now() - started} ms\n`);
    // One line per distinct failure kind keeps a broken build's report readable.
    const distinct = [...new Map(failures.map((f) => [f.replace(/ #\d+ .*? (->|ran)/, ' $1').slice(0, 200), f])).values()];
    assert.deepEqual(distinct, [], `${failures.length} failures; outcome counts:\n${summary}`);
    assert.equal(await snapshot(decoy), decoyBefore, 'nothing reached through a symbolic link changed');
    // The fuzz reached past validation: some calls were accepted, and some ran commands.
    const statuses = new Set([...counts.keys()].map((k) => k.split(' ')[1]));
    assert.ok(statuses.has('OK') && statuses.has('INVALID_ARGUMENT'), `outcomes: ${[...statuses].join(', ')}`);
    assert.ok(targets.some((t) => t.recorder.calls.length > 0), 'some calls reached a command');
    // Every method of every service each role serves was called, on that role's agent.
    const v1 = loadVcstorProto().grpcObject.vcstor.v1;
    const called = new Set([...counts.keys()].map((k) => k.split(' ')[0]));
    for (const [role, services] of Object.entries(ROLE_SERVICES)) {
      for (const service of services) {
        for (const method of Object.keys(v1[service].service)) assert.ok(called.has(`${role}.${service}/${method}`), `${role}.${service}/${method} was fuzzed`);
      }
    }
  });
});
