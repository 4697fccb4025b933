import { z } from 'zod';
import { VcstorError } from '../common/errors.js';
import { MAX_LOAD_SESSIONS } from '../host-storage/load-requests.js';
import { readStructured, validateValue, type StructuredText } from '../common/structured.js';
import { validateAddressOrCidr, validateIqn } from '../common/validate.js';
import { address, check, name, planHeader, size, storageAgent, withSecrets, type WithSecrets } from './plan-header.js';

/**
 * A scale plan (paper section 5: how many initiators can one target serve?): one storage
 * agent's target, a ramp of initiator counts spread over dom0/guest agents, one fio job
 * per initiator, and optionally the control plane (N volumes + exports + logins at once).
 * Told apart from a campaign plan by its `scale` section.
 */

const MIB = 1024 ** 2;
// An IQN prefix: each session's IQN is `<prefix>.<index>`, which must still be an IQN.
const iqnPrefix = z.string().superRefine(check((v) => validateIqn('iqnPrefix', `${v}.0`)));

/** 1, 2, 4, ... up to `to` (always ending at `to`). */
export function rampCounts(from: number, to: number, factor: number): number[] {
  const out: number[] = [];
  for (let c = from; c < to; c = Math.max(c + 1, Math.round(c * factor))) out.push(c);
  out.push(to);
  return out;
}

const scaleSchema = z
  .object({
    counts: z
      .array(z.number().int().min(1).max(MAX_LOAD_SESSIONS))
      .min(1)
      .refine((c) => c.every((v, i) => i === 0 || v > c[i - 1]!), 'must be increasing')
      .optional(),
    ramp: z.object({ from: z.number().int().min(1).default(1), to: z.number().int().min(1).max(MAX_LOAD_SESSIONS), factor: z.number().min(1.1).max(16).default(2) }).strict().optional(),
    /** Volumes behind the target(s); sessions are spread over them round-robin. */
    luns: z.number().int().min(1).max(64).default(1),
    volumeSize: size(MIB, 64 * 1024 * MIB).default(64 * MIB),
    sparse: z.boolean().default(false),
    /** The target's ACL: the initiator agents' addresses (a CIDR). */
    allowedAddresses: z.string().superRefine(check((v) => validateAddressOrCidr('allowedAddresses', v))),
    fio: z
      .object({
        rw: z.enum(['read', 'write', 'randread', 'randwrite', 'rw', 'randrw']),
        blockSize: size(512, 16 * MIB).default(4096),
        iodepth: z.number().int().min(1).max(256).default(1),
        size: size(4096, 64 * 1024 * MIB).default(16 * MIB),
        runtimeS: z.number().int().min(1).max(3600).default(5),
        rwmixRead: z.number().int().min(0).max(100).default(50),
      })
      .strict(),
    sessionsPerDaemon: z.number().int().min(1).max(1024).default(64),
    loginTimeoutS: z.number().int().min(1).max(600).default(30),
    /** The knee: the count beyond which throughput grows less than minGainPercent, or p99 passes p99LatencyMs. */
    knee: z.object({ p99LatencyMs: z.number().positive().default(100), minGainPercent: z.number().min(0).max(1000).default(10) }).strict().default({ p99LatencyMs: 100, minGainPercent: 10 }),
    /** The control plane: N volumes, exports and logins, all at once, timed per stage. */
    controlPlane: z
      .object({ volumes: z.number().int().min(1).max(MAX_LOAD_SESSIONS), concurrency: z.number().int().min(1).max(256).default(32), volumeSize: size(MIB, 1024 * MIB).default(4 * MIB) })
      .strict()
      .optional(),
    stepTimeoutS: z.number().int().min(10).max(86_400).default(600),
  })
  .strict()
  .refine((s) => s.counts !== undefined || s.ramp !== undefined, 'give counts (e.g. [1, 2, 4, 8]) or ramp ({ to: 1024 })');

const scalePlanSchema = z
  .object({
    name: planHeader.name,
    agents: z
      .object({
        storage: storageAgent,
        initiators: z
          .array(z.object({ name, role: z.enum(['guest', 'dom0']), address, iqnPrefix }).strict())
          .min(1)
          .refine((a) => new Set(a.map((x) => x.iqnPrefix)).size === a.length, 'each initiator agent needs its own iqnPrefix'),
      })
      .strict(),
    tls: planHeader.tls,
    chap: planHeader.chap,
    nats: planHeader.nats,
    scale: scaleSchema,
  })
  .strict();

export type ScalePlan = WithSecrets<z.output<typeof scalePlanSchema>> & { counts: number[] };

/** True when the plan's text has a `scale` section (a scale plan, not a campaign). */
export function isScalePlanText(text: string, source = 'plan'): boolean {
  try {
    const { value } = readStructured(text, source);
    return typeof value === 'object' && value !== null && 'scale' in value;
  } catch {
    return false;
  }
}

/**
 * Parse and validate a scale plan; the CHAP (and NATS) password is read from its file.
 * @throws VcstorError INVALID_ARGUMENT naming the file, line and field at fault.
 */
export async function parseScalePlan(text: string, source: string): Promise<ScalePlan> {
  return validateScalePlan(readStructured(text, source), source);
}

/**
 * Validate a scale plan already read from its text (the run kinds read a plan once).
 * @throws VcstorError INVALID_ARGUMENT naming the file, line and field at fault.
 */
export async function validateScalePlan({ value, doc, lineCounter }: StructuredText, source: string): Promise<ScalePlan> {
  const plan = validateValue(scalePlanSchema, value, source, doc, lineCounter);
  const s = plan.scale;
  const counts = s.counts ?? rampCounts(s.ramp!.from, s.ramp!.to, s.ramp!.factor);
  if (s.fio.size > s.volumeSize) throw new VcstorError('INVALID_ARGUMENT', `invalid ${source}: scale.fio.size: ${s.fio.size} bytes is more than the volume (scale.volumeSize ${s.volumeSize})`);
  return { ...(await withSecrets(plan, source)), counts };
}
