import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { VcstorError } from './errors.js';
import { readStructured, validateValue } from './structured.js';
import { validateHostPort, validateIqn, validateName } from './validate.js';

/**
 * The one typed config of an agent: a YAML or JSON file, then environment overrides
 * (VCSTOR_NAME, VCSTOR_LISTEN, VCSTOR_LOG_LEVEL, VCSTOR_STATE_DIR, VCSTOR_TLS_INSECURE,
 * VCSTOR_TLS_CA, VCSTOR_TLS_CERT, VCSTOR_TLS_KEY). Secrets are file paths, never values.
 */

export const ROLES = ['storage', 'dom0', 'guest'] as const;
export type AgentRole = (typeof ROLES)[number];

/** Wrap a validator from validate.ts as a zod refinement, keeping its message. */
function checked(check: (value: string) => unknown) {
  return (value: string, ctx: z.RefinementCtx) => {
    try {
      check(value);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message.replace(/^[^:]*: /, '') : String(err) });
    }
  };
}

const absolutePath = z
  .string()
  .refine((p) => path.isAbsolute(p) && path.normalize(p) === p && !p.endsWith('/'), 'must be an absolute, normalised path');
const name = z.string().superRefine(checked((v) => validateName('name', v)));
const hostPort = z.string().superRefine(checked((v) => validateHostPort('address', v)));
// Port 0 asks the kernel for a free port (tests, and agents that report where they bound).
const listenAddress = z.string().superRefine(checked((v) => validateHostPort('address', v.replace(/:0$/, ':1'))));
const iqn = z.string().superRefine(checked((v) => validateIqn('iqn', v)));

const tlsSchema = z
  .object({
    /** Serve plaintext gRPC. Must be set explicitly (the lab does, when asked). */
    insecure: z.boolean().default(false),
    /** PEM files: the CA that signs client certs, and this agent's cert and key. */
    ca: absolutePath.optional(),
    cert: absolutePath.optional(),
    key: absolutePath.optional(),
  })
  .strict()
  .refine((t) => t.insecure || (t.ca !== undefined && t.cert !== undefined && t.key !== undefined), {
    message: 'set ca, cert and key for mTLS, or insecure: true to serve plaintext explicitly',
  })
  // A missing tls block is checked like an empty one, so the message above explains it.
  .prefault({});

/** A cgroup v1 group under its controller's mount, e.g. /vcstor.vct/host0. */
const cgroupPath = z
  .string()
  .regex(/^(\/[A-Za-z0-9._-]+)+$/, 'must be a cgroup path like /vcstor/host0 (letters, digits, . _ -)')
  .refine((v) => !v.split('/').some((seg) => seg === '.' || seg === '..'), 'must not hold . or .. segments');

const baseFields = {
  /** Unique name of this agent in a deployment, e.g. storage0. */
  name,
  /** host:port to serve gRPC on. */
  listen: listenAddress,
  tls: tlsSchema,
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
  /** Where the agent keeps its own records (what it exported, logged in, ...). */
  stateDir: absolutePath.optional(),
  /**
   * The memory cgroup (v1, under /sys/fs/cgroup/memory) this host's processes run in,
   * e.g. /vcstor.vct/storage0 in the lab: DropCaches empties it and SampleIo reports
   * its page cache and processes. Without one the host is the whole machine.
   */
  memoryCgroup: cgroupPath.optional(),
  /**
   * The memory cgroup (v1) for the FUSE servers this agent starts to reach storage
   * (qemu-storage-daemon iSCSI and NFS initiators), e.g. /vcstor.vct/host0-fuse: never
   * the host's own group. A FUSE server inside the group whose writeback it serves
   * deadlocks under cgroup v1: the group's reclaim waits for writeback that waits for
   * the server (seen: dom0's initiator stuck in folio_wait_writeback, 128 MiB hosts).
   */
  fuseServerCgroup: cgroupPath.optional(),
  /** Longest a single RPC may run when the client sets no deadline (ms). */
  maxCallMs: z.number().int().positive().default(30 * 60_000),
};

const initiatorSection = z
  .object({
    driver: z.enum(['qsd', 'open-iscsi']).default('qsd'),
    /** The default initiator IQN of this host. */
    initiatorIqn: iqn.optional(),
  })
  .strict()
  .default({ driver: 'qsd' });

const storageSection = z
  .object({
    volumes: z
      .object({
        driver: z.enum(['filepool', 'lvm']).default('filepool'),
        /** filepool: directory of image files. */
        poolDir: absolutePath.default('/var/lib/vcstor/pool'),
        /** lvm: the volume group to carve from. */
        volumeGroup: z.string().optional(),
        /** lvm: a private LVM_SYSTEM_DIR (an lvm.conf of its own), e.g. for the lab. */
        lvmSystemDir: absolutePath.optional(),
        /** lvm: false where the kernel has no device-mapper: LVs are reached through loop devices. */
        activation: z.boolean().default(true),
      })
      .strict()
      .prefault({})
      .refine((v) => v.driver !== 'lvm' || (v.volumeGroup !== undefined && /^[A-Za-z0-9+_.-]+$/.test(v.volumeGroup)), {
        message: 'the lvm driver needs volumeGroup (letters, digits, + _ . -)',
      }),
    iscsiTarget: z
      .object({
        driver: z.enum(['tgt', 'lio']).default('tgt'),
        /** Targets are named <iqnPrefix>:<volume> unless a request names one. */
        iqnPrefix: iqn.default('iqn.2026-11.org.vcstor'),
        /** Address the target listens on, host:port. */
        portal: hostPort.optional(),
        /** tgt: tgtadm's -C control port of the tgtd to drive. */
        tgtControlPort: z.number().int().min(0).max(65535).default(0),
        /** Refuse exports without CHAP. */
        requireChap: z.boolean().default(true),
        /** tgt: how LUNs do I/O; aio was 2.3x faster than rdwr here (LAB.md). */
        backingStoreType: z.enum(['aio', 'rdwr']).default('aio'),
      })
      .strict()
      .prefault({}),
    nfsServer: z
      .object({
        driver: z.enum(['ganesha', 'kernel']).default('ganesha'),
        /** Directories and volume filesystems are exported from under here. */
        exportRoot: absolutePath.default('/srv/vcstor'),
        /** ganesha: its config file; the agent owns a marked section of it. */
        ganeshaConfig: absolutePath.default('/etc/ganesha/ganesha.conf'),
        /** ganesha: its pid file, to signal it to re-read its exports. */
        ganeshaPidFile: absolutePath.default('/run/ganesha/ganesha.pid'),
        /** kernel: the exports file the agent owns. */
        exportsFile: absolutePath.default('/etc/exports.d/vcstor.exports'),
      })
      .strict()
      .prefault({}),
    /**
     * The server's own iSCSI initiator, for a NAS head (paper section 5): it logs in to a
     * LUN of another storage server, mounts its filesystem under the export root and
     * re-exports it over NFS (HostStorage, served by storage agents too).
     */
    iscsiInitiator: initiatorSection,
    /** A parallel file system over several storage servers (paper section 5's shared space). */
    parallelFs: z
      .object({
        /** none: this server gives no bricks; glusterfs: its glusterd (run by the host) joins them. */
        driver: z.enum(['none', 'glusterfs']).default('none'),
        /** Volume filesystems given as bricks are mounted under here. */
        brickRoot: absolutePath.default('/srv/vcstor-bricks'),
        /** glusterfs: glusterd's CLI socket (its management.glusterd-sockfile). */
        glusterdSocket: absolutePath.default('/var/run/glusterd.socket'),
        /** glusterfs: the gluster CLI's log file (default its own, /var/log/glusterfs/cli.log). */
        cliLogFile: absolutePath.optional(),
      })
      .strict()
      .prefault({}),
    /** How often the agent re-checks the daemons against its record (ms). */
    reconcileIntervalMs: z.number().int().min(200).default(10_000),
  })
  .strict();

const dom0Section = z
  .object({
    iscsiInitiator: initiatorSection,
    nfsClient: z.object({ driver: z.enum(['libnfs', 'kernel']).default('libnfs') }).strict().default({ driver: 'libnfs' }),
    hypervisor: z
      .object({
        driver: z.enum(['sandbox', 'xen']).default('sandbox'),
        /** Where domain configs are written. */
        configDir: absolutePath.default('/etc/vcstor/domains'),
        /** sandbox: where domains' state and published VBDs live (a guest's vbdDirectory is ROOT/<domain>/dev). */
        sandboxRoot: absolutePath.default('/run/vcstor/sandbox'),
        /**
         * sandbox: how an image given as a `file` disk is served: a buffered loop device
         * (`loop`, Xen's loop backend; right where dom0 has a kernel of its own) or
         * dom0's own qemu-storage-daemon, buffered in dom0's memory (`qsd`, Xen's qdisk
         * backend; what the namespace lab uses, so dom0's cache stays in its cgroup).
         */
        fileBackend: z.enum(['loop', 'qsd']).default('loop'),
      })
      .strict()
      .prefault({}),
    /** Directories under which images may be created and filesystems mounted. */
    imageRoots: z.array(absolutePath).default(['/var/lib/vcstor/images']),
    mountRoot: absolutePath.default('/mnt/vcstor'),
  })
  .strict();

const guestSection = z
  .object({
    iscsiInitiator: initiatorSection,
    /**
     * How the guest mounts NFS directories: the kernel client, or fuse-nfs (vcstor-nfs-fuse,
     * NFSv3 in user space through FUSE) where the kernel has none (the namespace lab).
     */
    nfsClient: z.object({ driver: z.enum(['kernel', 'fuse-nfs']).default('kernel') }).strict().default({ driver: 'kernel' }),
    /** The client of a parallel file system the guests of a cluster share (paper section 5). */
    parallelFsClient: z.object({ driver: z.enum(['none', 'glusterfs']).default('glusterfs') }).strict().default({ driver: 'glusterfs' }),
    /** Filesystems are mounted (and benchmarks run) only under here. */
    mountRoot: absolutePath.default('/mnt/vcstor'),
    /**
     * Sandbox hypervisor only: the directory where dom0 publishes this guest's VBDs
     * (symlinks named by vdev), the lab's stand-in for a Xen frontend's /dev/xvdX.
     */
    vbdDirectory: absolutePath.optional(),
  })
  .strict();

export const storageConfigSchema = z.object({ ...baseFields, role: z.literal('storage'), storage: storageSection.prefault({}) }).strict();
export const dom0ConfigSchema = z.object({ ...baseFields, role: z.literal('dom0'), dom0: dom0Section.prefault({}) }).strict();
export const guestConfigSchema = z.object({ ...baseFields, role: z.literal('guest'), guest: guestSection.prefault({}) }).strict();
export const agentConfigSchema = z.discriminatedUnion('role', [storageConfigSchema, dom0ConfigSchema, guestConfigSchema]);

export type StorageAgentConfig = z.output<typeof storageConfigSchema>;
export type Dom0AgentConfig = z.output<typeof dom0ConfigSchema>;
export type GuestAgentConfig = z.output<typeof guestConfigSchema>;
export type AgentConfig = z.output<typeof agentConfigSchema>;
export type TlsConfig = z.output<typeof tlsSchema>;

/** Where an agent keeps its records: the config's stateDir, or /var/lib/vcstor/<name>. */
export function stateDirOf(config: AgentConfig): string {
  return config.stateDir ?? `/var/lib/vcstor/${config.name}`;
}

/** Environment variables that override config fields, for containers and the lab. */
export function applyEnvironment(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...raw };
  const tls: Record<string, unknown> = { ...(raw.tls as Record<string, unknown> | undefined) };
  if (env.VCSTOR_NAME) merged.name = env.VCSTOR_NAME;
  if (env.VCSTOR_LISTEN) merged.listen = env.VCSTOR_LISTEN;
  if (env.VCSTOR_LOG_LEVEL) merged.logLevel = env.VCSTOR_LOG_LEVEL;
  if (env.VCSTOR_STATE_DIR) merged.stateDir = env.VCSTOR_STATE_DIR;
  if (env.VCSTOR_TLS_INSECURE !== undefined) tls.insecure = /^(1|true|yes)$/i.test(env.VCSTOR_TLS_INSECURE);
  if (env.VCSTOR_TLS_CA) tls.ca = env.VCSTOR_TLS_CA;
  if (env.VCSTOR_TLS_CERT) tls.cert = env.VCSTOR_TLS_CERT;
  if (env.VCSTOR_TLS_KEY) tls.key = env.VCSTOR_TLS_KEY;
  if (Object.keys(tls).length > 0) merged.tls = tls;
  return merged;
}

/**
 * Read and validate an agent's config for `role`.
 * @throws VcstorError INVALID_ARGUMENT naming the file, field and line at fault;
 *   NOT_FOUND when the file does not exist.
 */
export async function loadAgentConfig(role: AgentRole, file: string, env: NodeJS.ProcessEnv = process.env): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new VcstorError('NOT_FOUND', `cannot read config ${file}: ${(err as Error).message}`, { cause: err });
  }
  const { value, doc, lineCounter } = readStructured(text, file);
  const raw = validateValue(z.record(z.string(), z.unknown()), value, file);
  if (raw.role !== undefined && raw.role !== role) {
    throw new VcstorError('INVALID_ARGUMENT', `${file}: role is ${JSON.stringify(raw.role)} but the agent was started as ${role}`);
  }
  return validateValue(agentConfigSchema, applyEnvironment({ ...raw, role }, env), file, doc, lineCounter);
}
