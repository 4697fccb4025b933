import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { VcstorError } from '../common/errors.js';
import { readStructured, validateValue } from '../common/structured.js';
import { NFS_MOUNT_OPTIONS } from '../common/requests.js';
import { validateAddressOrCidr, validateChapSecret, validateHost, validateHostPort, validateIqn, validateName, validateOptions } from '../common/validate.js';
import { natsSettingsSchema } from './events.js';
import { DOM0_BASELINES, METHODS } from './methods.js';

/**
 * A plan: which agents, and what to run on them. YAML or JSON, validated in full before
 * anything is provisioned; errors name the file, line and field.
 */

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1000, kib: 1024, m: 1024 ** 2, mb: 1e6, mib: 1024 ** 2, g: 1024 ** 3, gb: 1e9, gib: 1024 ** 3, t: 1024 ** 4, tib: 1024 ** 4 };

/** "64MiB", "1GiB", "8k", 4096 → bytes. */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  const unit = m ? UNITS[(m[2] ?? '').toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new Error(`${JSON.stringify(value)} is not a size (e.g. 64MiB, 1GiB, 8k)`);
  return Math.round(Number(m[1]) * unit);
}

/** A validator of validate.ts as a zod refinement, keeping its message (plans of every kind use these). */
export const check = (validate: (v: string) => unknown) => (value: string, ctx: z.RefinementCtx) => {
  try {
    validate(value);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message.replace(/^[^:]*: /, '') : String(err) });
  }
};

/** A size ("64MiB" or bytes) between `min` and `max` bytes, as a number of bytes. */
export const size = (min: number, max: number) =>
  z.union([z.string(), z.number()]).transform((v, ctx) => {
    try {
      const bytes = parseSize(v);
      if (!Number.isSafeInteger(bytes) || bytes < min || bytes > max) {
        ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is outside ${min}-${max} bytes` });
        return z.NEVER;
      }
      return bytes;
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });

export const address = z.string().superRefine(check((v) => validateHostPort('address', v)));
const iqn = z.string().superRefine(check((v) => validateIqn('iqn', v)));
export const absolute = z.string().refine((p) => path.isAbsolute(p) && path.normalize(p) === p, 'must be an absolute, normalised path');
const MIB = 1024 ** 2;
const GIB = 1024 ** 3;

const benchmarksSchema = z
  .object({
    // ram: the guest's memory as bonnie++ is told it (-r); its file must be twice that,
    // or its figures measure the guest's cache. Unset: half the file (the agent's default).
    bonnie: z.object({ fileSize: size(MIB, 64 * GIB).default(GIB), chunk: size(256, MIB).default(8192), directIo: z.boolean().default(false), ram: size(MIB, 64 * GIB).optional() }).strict().optional(),
    postmark: z
      .object({
        transactions: z.number().int().min(1).max(100_000_000).default(100_000),
        files: z.number().int().min(1).max(10_000_000).default(1_000),
        subdirectories: z.number().int().min(0).max(100_000).default(100),
        minFileSize: size(1, 64 * MIB).default(500),
        maxFileSize: size(1, 64 * MIB).default(10_000),
      })
      .strict()
      .optional(),
    fio: z
      .object({
        rw: z.enum(['read', 'write', 'randread', 'randwrite', 'rw', 'randrw']),
        blockSize: size(512, 64 * MIB).default(8192),
        iodepth: z.number().int().min(1).max(4096).default(1),
        size: size(4096, 64 * GIB).default(256 * MIB),
        runtimeS: z.number().int().min(0).max(86_400).default(0),
        ioengine: z.enum(['psync', 'sync', 'libaio', 'io_uring', 'posixaio']).default('psync'),
        direct: z.boolean().default(false),
      })
      .strict()
      .optional(),
    sparseImage: z
      .object({ imageSize: size(64 * MIB, 64 * GIB).default(2 * GIB), fileSize: size(4096, 64 * GIB).default(GIB), blockSize: size(512, 64 * MIB).default(8192), passes: z.number().int().min(1).max(1000).default(5) })
      .strict()
      .optional(),
    // The paper's section 4.3 test: for the file methods (file-local, file-iscsi,
    // file-nfs), the guest writes the file into its own disk, once over a sparse image
    // and once over a zero-filled one (the method is set up a second time the other way).
    sparseDisk: z
      .object({ fileSize: size(4096, 64 * GIB).default(GIB), blockSize: size(512, 64 * MIB).default(8192), passes: z.number().int().min(1).max(1000).default(5) })
      .strict()
      .optional(),
  })
  .strict()
  .refine((b) => Object.values(b).some((x) => x !== undefined), 'name at least one benchmark');

const planSchema = z
  .object({
    name: z.string().superRefine(check((v) => validateName('name', v))),
    agents: z
      .object({
        storage: z.object({ address, host: z.string().superRefine(check((v) => validateHost('host', v))) }).strict(),
        dom0: z.object({ address, initiatorIqn: iqn, imageDir: absolute, mountDir: absolute }).strict(),
        guest: z.object({ address, initiatorIqn: iqn, mountDir: absolute, domain: z.string().superRefine(check((v) => validateName('domain', v))) }).strict(),
      })
      .strict(),
    tls: z.union([z.object({ insecure: z.literal(true) }).strict(), z.object({ ca: absolute, cert: absolute, key: absolute }).strict()]),
    /** Who may mount NFS exports: dom0 (file-nfs) and the guest (nfs). */
    nfsClients: z.string().superRefine(check((v) => validateAddressOrCidr('nfsClients', v))),
    chap: z.object({ username: z.string().regex(/^[A-Za-z0-9._@:-]{1,64}$/), passwordFile: absolute }).strict(),
    /** NATS: URL, auth (user+passwordFile, tokenFile or nkeySeedFile) and TLS; see events.ts. */
    nats: natsSettingsSchema.optional(),
    campaign: z
      .object({
        methods: z.array(z.enum(METHODS)).min(1).default([...METHODS]),
        /**
         * The dom0 baselines (Fig. 3 and 5) run before the methods in each repetition:
         * bonnie++, PostMark and fio in dom0 on its local disk, over NFS, over iSCSI.
         */
        baselines: z.array(z.enum(DOM0_BASELINES)).default([]),
        /**
         * Options of the kernel NFS mounts (nfs, dom0-nfs), each on the agents' allow-list:
         * the paper's Table 2 is rsize=32768, wsize=32768. The agents add vers and proto=tcp.
         */
        /**
         * Table 2's iSCSI session parameters: offered by every target the campaign
         * exports and proposed by every initiator that can set them (open-iscsi; the qsd
         * initiator's libiscsi cannot, and says so). Left out: each driver's default.
         */
        iscsi: z
          .object({
            initialR2T: z.boolean().optional(),
            immediateData: z.boolean().optional(),
            maxRecvDataSegmentLength: size(512, 16_777_215).optional(),
            maxBurstLength: size(512, 16_777_215).optional(),
            firstBurstLength: size(512, 16_777_215).optional(),
            maxOutstandingR2T: z.number().int().min(1).max(65_535).optional(),
          })
          .strict()
          .refine((p) => p.firstBurstLength === undefined || p.maxBurstLength === undefined || p.firstBurstLength <= p.maxBurstLength, { message: 'firstBurstLength is more than maxBurstLength (RFC 7143 13.14)', path: ['firstBurstLength'] })
          .optional(),
        nfsMountOptions: z.array(z.string().superRefine(check((v) => validateOptions('option', [v], NFS_MOUNT_OPTIONS)))).default([]),
        repetitions: z.number().int().min(1).max(100).default(5),
        volumeSize: size(16 * MIB, 16 * 1024 * GIB).default(2 * GIB),
        sparse: z.boolean().default(false),
        benchmarks: benchmarksSchema,
        /** How long one step (a setup call, a benchmark) may take. */
        stepTimeoutS: z.number().int().min(10).max(7 * 86_400).default(6 * 3600),
      })
      .strict(),
  })
  .strict();

export type Plan = z.output<typeof planSchema>;
export type Campaign = Plan['campaign'];

/**
 * A plan's secrets, read from the files it names: the CHAP password (checked as LIO and
 * tgt take it) and the NATS password when there is one. Plans of every kind use this.
 * @throws VcstorError INVALID_ARGUMENT naming the file and field.
 */
export async function readPlanSecrets(plan: { chap: { passwordFile: string }; nats?: { passwordFile?: string | undefined } | undefined }, source: string): Promise<{ chapPassword: string; natsPassword?: string }> {
  const secret = async (file: string, what: string) => {
    try {
      return (await readFile(file, 'utf8')).trim();
    } catch (err) {
      throw new VcstorError('INVALID_ARGUMENT', `invalid ${source}: ${what}: cannot read ${file}: ${(err as Error).message}`);
    }
  };
  const chapPassword = await secret(plan.chap.passwordFile, 'chap.passwordFile');
  try {
    validateChapSecret('chap', chapPassword);
  } catch (err) {
    throw new VcstorError('INVALID_ARGUMENT', `invalid ${source}: chap.passwordFile: the secret ${(err as Error).message.replace(/^chap: /, '')}`);
  }
  const natsPassword = plan.nats?.passwordFile ? await secret(plan.nats.passwordFile, 'nats.passwordFile') : undefined;
  return { chapPassword, ...(natsPassword ? { natsPassword } : {}) };
}

/**
 * Parse and validate a plan's text; the CHAP password is read from its file.
 * @throws VcstorError INVALID_ARGUMENT naming the file, line and field at fault.
 */
export async function parsePlan(text: string, source: string): Promise<Plan & { chapPassword: string; natsPassword?: string }> {
  const { value, doc, lineCounter } = readStructured(text, source);
  const plan = validateValue(planSchema, value, source, doc, lineCounter);
  const b = plan.campaign.benchmarks;
  const needs = Math.max(b.bonnie?.fileSize ?? 0, b.fio?.size ?? 0, b.sparseImage ? Math.min(b.sparseImage.imageSize, b.sparseImage.fileSize * b.sparseImage.passes) : 0, b.sparseDisk?.fileSize ?? 0);
  if (needs * 1.25 > plan.campaign.volumeSize) {
    throw new VcstorError('INVALID_ARGUMENT', `invalid ${source}: campaign.volumeSize: ${plan.campaign.volumeSize} bytes cannot hold the benchmarks' ${needs} bytes (give it at least 25% more)`);
  }
  if (b.bonnie?.ram !== undefined && b.bonnie.fileSize < 2 * b.bonnie.ram) {
    throw new VcstorError('INVALID_ARGUMENT', `invalid ${source}: campaign.benchmarks.bonnie.fileSize: ${b.bonnie.fileSize} bytes is less than twice its ram (${b.bonnie.ram} bytes): bonnie++ refuses, as its figures would measure the cache`);
  }
  const { chapPassword, natsPassword } = await readPlanSecrets(plan, source);
  return { ...plan, chapPassword, ...(natsPassword ? { natsPassword } : {}) };
}
