#!/usr/bin/env node
import { parseArgs } from 'node:util';
import type { ChannelCredentials } from '@grpc/grpc-js';
import type { AgentDefinition } from '../common/agent.js';
import { channelCredentials, checkHealth, getAgentInfo, type ClientTls } from '../common/clients.js';
import { loadAgentConfig, ROLES, type AgentConfig, type AgentRole } from '../common/config.js';
import { VcstorError } from '../common/errors.js';
import { createLogger } from '../common/log.js';
import { ExecaCommandRunner } from '../common/runner.js';
import { VCSTOR_VERSION } from '../common/version.js';
import { DEFAULT_LAB, Lab, labCredentials, readLabFile, type LabOptions } from '../lab/lab.js';
import { parseDiskRate, parseMemorySize } from '../lab/cgroups.js';

const USAGE = `vcstor ${VCSTOR_VERSION}: IP storage for virtual clusters

Usage:
  vcstor agent storage|dom0|guest --config FILE   serve an agent (runs until SIGTERM)
  vcstor lab up [options]        make the one-machine lab (root); safe to repeat
  vcstor lab up --vm [options]   the VM tier: storage server and dom0 as qemu guests with real
                                 kernels (LVM, LIO, kernel nfsd, open-iscsi, kernel NFS client)
  vcstor lab down [--name N]     remove all of it: processes, namespaces, mounts, loop devices
  vcstor lab status [--json]     what is up
  vcstor lab check               GetInfo from every agent of the lab
  vcstor coordinator --config F  serve the Coordinator gRPC API (submit, watch, results, cleanup)
  vcstor run PLAN [--no-report]  run a plan (a campaign) here, with live progress
  vcstor provision PLAN          give every guest of a cluster plan its disk and leave it there;
                                 again: converges (adds what is missing, changes nothing else)
  vcstor status RUN [--json]     what each guest of a cluster run has, and whether it is still there
  vcstor teardown RUN            take a cluster run's storage down (its journal, per guest); idempotent
                                 (RUN: a run id, or a cluster plan's name)
  vcstor runs                    the runs kept in --runs-dir (default /var/lib/vcstor/runs)
  vcstor results RUN [--format table|json|csv]
  vcstor report RUN [--out FILE] an HTML report with charts in the paper's style
  vcstor watch RUN [--nats URL]  a run's events, replayed then live (from NATS with --nats)
  vcstor cleanup RUN             tear down what a killed run left provisioned
  vcstor health ADDRESS [--service S]   the standard gRPC health check
  vcstor info ADDRESS            an agent's GetInfo, as JSON
  vcstor certs init --dir D      a CA for a deployment (D/ca.pem, D/ca.key 0600); keeps an existing one
  vcstor certs issue --dir D --name N [--server-address A ...] [--client] [--days N] [--force]
                                 a certificate signed by D's CA: an agent's (its addresses as SANs),
                                 or a client's (the coordinator, the CLI); keeps a valid one

Lab options:
  --name N      prefix of namespaces and links (default ${DEFAULT_LAB.name})
  --subnet S    a /24 (default ${DEFAULT_LAB.subnet})
  --storage N   storage servers (default 1)   --dom0 N  dom0 hosts (default 1)
  --guests N    guests (default 1)            --rate R  cap links, e.g. 1gbit
  --dir D       lab directory (default /var/lib/vcstor/lab/NAME)
  --memory M    each host's memory, a memory cgroup of its own (default 192MiB; none:
                hosts share the machine's memory and page cache)
  --disk-rate R each host's reads and writes of the machine's disk, per second (default
                80MiB/s; none: the machine's own, a cached virtual disk here)
  --insecure    agents serve plaintext gRPC; by default the lab makes a CA in DIR/pki,
                a certificate per agent and a client certificate (coordinator.pem/.key)
                and every agent serves mTLS

Client options (health, info):
  --insecure                 plaintext (the lab's agents)
  --ca F --cert F --key F    mTLS
`;

type Flags = Record<string, string | boolean | string[] | undefined>;

function parse(argv: string[]): { positionals: string[]; flags: Flags } {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      name: { type: 'string' },
      subnet: { type: 'string' },
      storage: { type: 'string' },
      dom0: { type: 'string' },
      guests: { type: 'string' },
      rate: { type: 'string' },
      memory: { type: 'string' },
      'disk-rate': { type: 'string' },
      dir: { type: 'string' },
      port: { type: 'string' },
      service: { type: 'string' },
      json: { type: 'boolean' },
      vm: { type: 'boolean' },
      seed: { type: 'string' },
      insecure: { type: 'boolean' },
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean' },
      'runs-dir': { type: 'string' },
      format: { type: 'string' },
      out: { type: 'string' },
      'no-report': { type: 'boolean' },
      nats: { type: 'string' },
      'server-address': { type: 'string', multiple: true },
      client: { type: 'boolean' },
      force: { type: 'boolean' },
      days: { type: 'string' },
    },
  });
  return { positionals, flags: values };
}

function text(flags: Flags, key: string): string | undefined {
  const value = flags[key];
  return typeof value === 'string' ? value : undefined;
}

function count(flags: Flags, key: string, fallback: number): number {
  const value = text(flags, key);
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) throw new VcstorError('INVALID_ARGUMENT', `--${key}: ${value} is not a whole number`);
  return Number(value);
}

function labOptions(flags: Flags): LabOptions {
  const name = text(flags, 'name') ?? DEFAULT_LAB.name;
  const options: LabOptions = {
    name,
    subnet: text(flags, 'subnet') ?? DEFAULT_LAB.subnet,
    storage: count(flags, 'storage', DEFAULT_LAB.storage),
    dom0: count(flags, 'dom0', DEFAULT_LAB.dom0),
    guests: count(flags, 'guests', DEFAULT_LAB.guests),
    dir: text(flags, 'dir') ?? `/var/lib/vcstor/lab/${name}`,
    agentPort: count(flags, 'port', DEFAULT_LAB.agentPort),
  };
  const rate = text(flags, 'rate');
  if (rate !== undefined) options.rate = rate;
  const memory = text(flags, 'memory');
  const memoryBytes = memory === undefined ? DEFAULT_LAB.memoryBytes : parseMemorySize(memory);
  if (memoryBytes) options.memoryBytes = memoryBytes;
  const diskRate = text(flags, 'disk-rate');
  const diskBytesPerSecond = diskRate === undefined ? DEFAULT_LAB.diskBytesPerSecond : parseDiskRate(diskRate);
  if (diskBytesPerSecond) options.diskBytesPerSecond = diskBytesPerSecond;
  if (flags.insecure === true) options.insecure = true;
  return options;
}

async function clientCredentials(flags: Flags): Promise<ChannelCredentials> {
  const ca = text(flags, 'ca');
  const cert = text(flags, 'cert');
  const key = text(flags, 'key');
  let tls: ClientTls;
  if (ca && cert && key) tls = { ca, cert, key };
  else if (flags.insecure) tls = { insecure: true };
  else throw new VcstorError('INVALID_ARGUMENT', 'give --ca, --cert and --key for mTLS, or --insecure for a plaintext agent');
  return channelCredentials(tls);
}

async function agentDefinition(role: AgentRole): Promise<AgentDefinition<AgentConfig>> {
  // Each agent is loaded only when that role is started.
  const definitions = {
    storage: async () => (await import('../agent-storage/service.js')).storageAgent,
    dom0: async () => (await import('../agent-dom0/service.js')).dom0Agent,
    guest: async () => (await import('../agent-guest/service.js')).guestAgent,
  };
  return (await definitions[role]()) as unknown as AgentDefinition<AgentConfig>;
}

async function main(argv: string[]): Promise<number> {
  const { positionals, flags } = parse(argv);
  const [command, sub, arg] = positionals;
  if (flags.version) {
    console.log(VCSTOR_VERSION);
    return 0;
  }
  if (flags.help || command === undefined || command === 'help') {
    console.log(USAGE);
    return command === undefined && !flags.help ? 2 : 0;
  }
  switch (command) {
    case 'agent': {
      if (!sub || !(ROLES as readonly string[]).includes(sub)) throw new VcstorError('INVALID_ARGUMENT', `vcstor agent: give a role: ${ROLES.join(', ')}`);
      const configFile = text(flags, 'config');
      if (!configFile) throw new VcstorError('INVALID_ARGUMENT', 'vcstor agent: --config FILE is required');
      const role = sub as AgentRole;
      const config = await loadAgentConfig(role, configFile);
      const { runAgentUntilSignalled } = await import('../common/agent.js');
      await runAgentUntilSignalled(config, await agentDefinition(role));
      return 0;
    }
    case 'lab':
      return labCommand(sub, flags);
    case 'vm-init': {
      // Inside a VM-tier guest, started by the image's systemd unit (see lab/vm-init.ts).
      const seed = text(flags, 'seed');
      if (!seed) throw new VcstorError('INVALID_ARGUMENT', 'vcstor vm-init: --seed FILE is required');
      const { vmInit } = await import('../lab/vm-init.js');
      return vmInit(new ExecaCommandRunner(), seed, (line) => console.log(line));
    }
    case 'coordinator': {
      const configFile = text(flags, 'config');
      if (!configFile) throw new VcstorError('INVALID_ARGUMENT', 'vcstor coordinator: --config FILE is required');
      const { serveCoordinator } = await import('../coordinator/service.js');
      await serveCoordinator(configFile);
      return 0;
    }
    case 'run': {
      if (!sub) throw new VcstorError('INVALID_ARGUMENT', 'vcstor run: give a PLAN file');
      const { runPlanCommand, DEFAULT_RUNS_DIR } = await import('../coordinator/run-commands.js');
      return runPlanCommand(sub, text(flags, 'runs-dir') ?? DEFAULT_RUNS_DIR, !flags['no-report']);
    }
    case 'provision': {
      if (!sub) throw new VcstorError('INVALID_ARGUMENT', 'vcstor provision: give a PLAN file (with a cluster: section)');
      const { runPlanCommand, DEFAULT_RUNS_DIR } = await import('../coordinator/run-commands.js');
      return runPlanCommand(sub, text(flags, 'runs-dir') ?? DEFAULT_RUNS_DIR, false, 'provision');
    }
    case 'status': {
      if (!sub) throw new VcstorError('INVALID_ARGUMENT', 'vcstor status: give a RUN id (see vcstor runs)');
      const { statusCommand, DEFAULT_RUNS_DIR } = await import('../coordinator/run-commands.js');
      return statusCommand(sub, text(flags, 'runs-dir') ?? DEFAULT_RUNS_DIR, flags.json === true);
    }
    case 'teardown': {
      if (!sub) throw new VcstorError('INVALID_ARGUMENT', 'vcstor teardown: give a RUN id (see vcstor runs)');
      const { teardownCommand, DEFAULT_RUNS_DIR } = await import('../coordinator/run-commands.js');
      return teardownCommand(sub, text(flags, 'runs-dir') ?? DEFAULT_RUNS_DIR);
    }
    case 'runs':
    case 'results':
    case 'report':
    case 'watch':
    case 'cleanup': {
      const { runsCommand, DEFAULT_RUNS_DIR } = await import('../coordinator/run-commands.js');
      const format = text(flags, 'format');
      const out = text(flags, 'out');
      const nats = text(flags, 'nats');
      return runsCommand(command, sub, text(flags, 'runs-dir') ?? DEFAULT_RUNS_DIR, { ...(format ? { format } : {}), ...(out ? { out } : {}), ...(nats ? { nats } : {}) });
    }
    case 'health': {
      if (!sub) throw new VcstorError('INVALID_ARGUMENT', 'vcstor health: give an ADDRESS (host:port)');
      const status = await checkHealth(sub, await clientCredentials(flags), text(flags, 'service') ?? '');
      console.log(status);
      return status === 'SERVING' ? 0 : 1;
    }
    case 'certs': {
      const { certsCommand } = await import('../coordinator/certs.js');
      const addresses = flags['server-address'];
      return certsCommand(new ExecaCommandRunner(), sub, {
        dir: text(flags, 'dir'),
        name: text(flags, 'name'),
        serverAddresses: Array.isArray(addresses) ? addresses : [],
        client: flags.client === true,
        force: flags.force === true,
        days: text(flags, 'days'),
      }, (line) => console.log(line));
    }
    case 'info': {
      if (!sub) throw new VcstorError('INVALID_ARGUMENT', 'vcstor info: give an ADDRESS (host:port)');
      console.log(JSON.stringify(await getAgentInfo(sub, await clientCredentials(flags)), null, 2));
      return 0;
    }
    default:
      void arg;
      throw new VcstorError('INVALID_ARGUMENT', `unknown command ${JSON.stringify(command)}; see vcstor help`);
  }
}

async function labCommand(sub: string | undefined, flags: Flags): Promise<number> {
  const options = labOptions(flags);
  const log = createLogger({ name: 'lab', level: process.env.VCSTOR_LOG_LEVEL ?? 'warn' });
  const lab = new Lab(new ExecaCommandRunner(log), log, (message) => console.log(message));
  switch (sub) {
    case 'up':
      if (flags.vm) await lab.upVm(options);
      else await lab.up(options);
      return 0;
    case 'down': {
      const removed = await lab.down(options.name, options.dir);
      for (const line of removed) console.log(`removed ${line}`);
      console.log(`lab ${options.name} is down`);
      return 0;
    }
    case 'status': {
      const status = await lab.status(options.dir);
      if (flags.json) {
        console.log(JSON.stringify(status, null, 2));
      } else if (!status.lab) {
        console.log(`no lab in ${options.dir}`);
      } else {
        for (const host of status.hosts) {
          // A VM-tier host lives in a qemu guest, whose qemu runs in the switch namespace.
          const where = host.vm ? `vm ${host.vm}` : `namespace ${host.namespaceUp ? 'up' : 'MISSING'}`;
          const mib = (b: number) => `${Math.round(b / 2 ** 20)}`;
          const memory = host.memory ? `  memory ${mib(host.memory.usageBytes)}/${mib(host.memory.limitBytes)} MiB (${mib(host.memory.cacheBytes)} cache)` : '';
          console.log(`${host.name.padEnd(10)} ${host.role.padEnd(8)} ${host.agentAddress.padEnd(22)} ${where}  agent ${host.agent}${memory}`);
        }
        for (const proc of status.processes) console.log(`${proc.host.padEnd(10)} ${proc.name.padEnd(12)} pid ${proc.pid} ${proc.running ? 'running' : 'GONE'}`);
      }
      const healthy = status.lab !== undefined && status.hosts.every((h) => h.namespaceUp && h.agent === 'SERVING') && status.processes.every((p) => p.running);
      return healthy ? 0 : 1;
    }
    case 'check': {
      const record = await readLabFile(options.dir);
      if (!record) throw new VcstorError('NOT_FOUND', `no lab in ${options.dir}; run vcstor lab up`);
      const credentials = await labCredentials(record);
      let failures = 0;
      for (const host of record.hosts) {
        try {
          const info = await getAgentInfo(host.agentAddress, credentials);
          const selected = info.drivers.filter((d) => d.selected).map((d) => `${d.concern}=${d.driver}${d.available ? '' : ' (unavailable)'}`);
          console.log(`${host.name.padEnd(10)} ${info.role.padEnd(12)} vcstor ${info.version}  ${selected.join('  ')}`);
        } catch (err) {
          failures++;
          console.log(`${host.name.padEnd(10)} FAILED: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      console.log(failures === 0 ? `all ${record.hosts.length} agents answer` : `${failures} of ${record.hosts.length} agents failed`);
      return failures === 0 ? 0 : 1;
    }
    default:
      throw new VcstorError('INVALID_ARGUMENT', 'vcstor lab: give up, down, status or check');
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof VcstorError) console.error(`vcstor: ${err.message}`);
    else console.error('vcstor: unexpected error:', err);
    process.exitCode = err instanceof VcstorError && err.code === 'INVALID_ARGUMENT' ? 2 : 1;
  },
);
