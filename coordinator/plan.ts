import { z } from 'zod';
import { VcstorError } from '../common/errors.js';
import { readStructured, validateValue, type StructuredText } from '../common/structured.js';
import { NFS_MOUNT_OPTIONS } from '../common/requests.js';
import { validateAddressOrCidr, validateIqn, validateName, validateOptions } from '../common/validate.js';
import { DOM0_BASELINES, METHODS } from './methods/registry.js';
import { absolute, address, check, planHeader, size, storageAgent, withSecrets, type WithSecrets } from './plan-header.js';

/**
 * A plan: which agents, and what to run on them. YAML or JSON, validated in full before
 * anything is provisioned; errors name the file, line and field.
 */

export { parseSize, readPlanSecrets } from './plan-header.js';

const iqn = z.string().superRefine(check((v) => validateIqn('iqn', v)));
const MIB = 1024 ** 2;
const GIB = 1024 ** 3;

/** PostMark's parameters in a plan (the paper's defaults): campaigns and shared-space runs. */
export const postmarkSchema = z
  .object({
    transactions: z.number().int().min(1).max(100_000_000).default(100_000),
    files: z.number().int().min(1).max(10_000_000).default(1_000),
    subdirectories: z.number().int().min(0).max(100_000).default(100),
    minFileSize: size(1, 64 * MIB).default(500),
    maxFileSize: size(1, 64 * MIB).default(10_000),
  })
  .strict();

const benchmarksSchema = z
  .object({
    // ram: the guest's memory as bonnie++ is told it (-r); its file must be twice that,
    // or its figures measure the guest's cache. Unset: half the file (the agent's default).
    bonnie: z.object({ fileSize: size(MIB, 64 * GIB).default(GIB), chunk: size(256, MIB).default(8192), directIo: z.boolean().default(false), ram: size(MIB, 64 * GIB).optional() }).strict().optional(),
    postmark: postmarkSchema.optional(),
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
    name: planHeader.name,
    agents: z
      .object({
        storage: storageAgent,
        dom0: z.object({ address, initiatorIqn: iqn, imageDir: absolute, mountDir: absolute }).strict(),
        guest: z.object({ address, initiatorIqn: iqn, mountDir: absolute, domain: z.string().superRefine(check((v) => validateName('domain', v))) }).strict(),
      })
      .strict(),
    tls: planHeader.tls,
    /** Who may mount NFS exports: dom0 (file-nfs) and the guest (nfs). */
    nfsClients: z.string().superRefine(check((v) => validateAddressOrCidr('nfsClients', v))),
    chap: planHeader.chap,
    nats: planHeader.nats,
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

/** A campaign plan as parsed: validated, with its secrets. */
export type CampaignPlan = WithSecrets<Plan>;

/**
 * Parse and validate a plan's text; the CHAP password is read from its file.
 * @throws VcstorError INVALID_ARGUMENT naming the file, line and field at fault.
 */
export async function parsePlan(text: string, source: string): Promise<CampaignPlan> {
  return validateCampaignPlan(readStructured(text, source), source);
}

/**
 * Validate a campaign plan already read from its text (the run kinds read a plan once).
 * @throws VcstorError INVALID_ARGUMENT naming the file, line and field at fault.
 */
export async function validateCampaignPlan({ value, doc, lineCounter }: StructuredText, source: string): Promise<CampaignPlan> {
  const plan = validateValue(planSchema, value, source, doc, lineCounter);
  const b = plan.campaign.benchmarks;
  const needs = Math.max(b.bonnie?.fileSize ?? 0, b.fio?.size ?? 0, b.sparseImage ? Math.min(b.sparseImage.imageSize, b.sparseImage.fileSize * b.sparseImage.passes) : 0, b.sparseDisk?.fileSize ?? 0);
  if (needs * 1.25 > plan.campaign.volumeSize) {
    throw new VcstorError('INVALID_ARGUMENT', `invalid ${source}: campaign.volumeSize: ${plan.campaign.volumeSize} bytes cannot hold the benchmarks' ${needs} bytes (give it at least 25% more)`);
  }
  if (b.bonnie?.ram !== undefined && b.bonnie.fileSize < 2 * b.bonnie.ram) {
    throw new VcstorError('INVALID_ARGUMENT', `invalid ${source}: campaign.benchmarks.bonnie.fileSize: ${b.bonnie.fileSize} bytes is less than twice its ram (${b.bonnie.ram} bytes): bonnie++ refuses, as its figures would measure the cache`);
  }
  return withSecrets(plan, source);
}
