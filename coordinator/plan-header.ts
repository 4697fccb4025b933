import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { VcstorError } from '../common/errors.js';
import { validateChapSecret, validateHost, validateHostPort, validateName } from '../common/validate.js';
import { natsSettingsSchema } from './events/settings.js';

/**
 * What plans of every kind share: the fields they are built of (sizes, addresses,
 * paths, validators as refinements) and the header — name, agents' TLS, CHAP, NATS —
 * with the secrets it names read from their files.
 */

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1000, kib: 1024, m: 1024 ** 2, mb: 1e6, mib: 1024 ** 2, g: 1024 ** 3, gb: 1e9, gib: 1024 ** 3, t: 1024 ** 4, tib: 1024 ** 4 };

/**
 * "64MiB", "1GiB", "8k", 4096 → bytes. Pure.
 * @throws Error when the text is not a size.
 */
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

/** host:port of an agent. */
export const address = z.string().superRefine(check((v) => validateHostPort('address', v)));
/** An absolute, normalised path. */
export const absolute = z.string().refine((p) => path.isAbsolute(p) && path.normalize(p) === p, 'must be an absolute, normalised path');
/** A name (of a plan, an agent, a domain). */
export const name = z.string().superRefine(check((v) => validateName('name', v)));

/** The storage agent of a plan: its address, and the host its exports are reached at. */
export const storageAgent = z.object({ address, host: z.string().superRefine(check((v) => validateHost('host', v))) }).strict();

/** The header every plan kind has: its fields, in the order plans write them, for each kind's schema to take. */
export const planHeader = {
  name,
  /** How the coordinator reaches the agents: plaintext (explicitly) or mTLS with PEM files. */
  tls: z.union([z.object({ insecure: z.literal(true) }).strict(), z.object({ ca: absolute, cert: absolute, key: absolute }).strict()]),
  /** The CHAP user of every export and login; the password is read from its file. */
  chap: z.object({ username: z.string().regex(/^[A-Za-z0-9._@:-]{1,64}$/), passwordFile: absolute }).strict(),
  /** NATS: URL, auth (user+passwordFile, tokenFile or nkeySeedFile) and TLS; see events/settings.ts. */
  nats: natsSettingsSchema.optional(),
};

const headerSchema = z.object(planHeader);
/** The header of a plan of any kind, as validated. */
export type PlanHeader = z.output<typeof headerSchema>;

/** The secrets a plan's header names, read from their files. */
export interface PlanSecrets {
  chapPassword: string;
  natsPassword?: string;
}

/**
 * A plan's secrets, read from the files it names: the CHAP password (checked as LIO and
 * tgt take it) and the NATS password when there is one. Plans of every kind use this.
 * Reads files only; idempotent.
 * @throws VcstorError INVALID_ARGUMENT naming the file and field.
 */
export async function readPlanSecrets(plan: { chap: { passwordFile: string }; nats?: { passwordFile?: string | undefined } | undefined }, source: string): Promise<PlanSecrets> {
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

/** A validated plan with its secrets: what every kind's parse returns. */
export type WithSecrets<P> = P & PlanSecrets;

/**
 * Add the header's secrets to a validated plan.
 * @throws VcstorError INVALID_ARGUMENT as readPlanSecrets.
 */
export async function withSecrets<P extends PlanHeader>(plan: P, source: string): Promise<WithSecrets<P>> {
  const { chapPassword, natsPassword } = await readPlanSecrets(plan, source);
  return { ...plan, chapPassword, ...(natsPassword ? { natsPassword } : {}) };
}
