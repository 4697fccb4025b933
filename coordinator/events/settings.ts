import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { VcstorError } from '../../common/errors.js';

/**
 * How the coordinator reaches NATS: the `nats:` section of plans and of the coordinator's
 * config, and the connection options it stands for (secrets read from their files).
 */

/** TLS to the NATS server: the CA that signed its certificate; a client cert if it verifies clients. */
export interface NatsTlsOptions {
  ca: string;
  cert?: string;
  key?: string;
}

/** Where NATS is and how to authenticate: what a `nats:` section becomes. */
export interface NatsConnectOptions {
  /** One NATS URL, or several separated by commas (e.g. "nats://10.0.0.2:4222"). */
  servers: string;
  /** User/password auth. At most one of user, token and nkeySeed. */
  user?: string;
  pass?: string;
  /** Token auth (the server's `authorization { token }`). */
  token?: string;
  /** Nkey auth: the user's seed ("SU..."); only a signature of the server's nonce leaves this process. */
  nkeySeed?: string;
  /** TLS (PEM files); the connection then refuses a server whose certificate `ca` did not sign. */
  tls?: NatsTlsOptions;
}

const absolutePath = z.string().refine((p) => path.isAbsolute(p) && path.normalize(p) === p, 'must be an absolute, normalised path');

/**
 * The `nats:` section of a plan and of the coordinator's config. Secrets are files
 * (never values in the plan, which is kept with the run): a password, a token or an
 * nkey seed, at most one way to authenticate.
 */
export const natsSettingsSchema = z
  .object({
    /** nats://host:port or tls://host:port, several separated by commas. */
    url: z.string().regex(/^(nats|tls):\/\/[A-Za-z0-9.:[\]-]+(,(nats|tls):\/\/[A-Za-z0-9.:[\]-]+)*$/, 'must be nats://host:port or tls://host:port (no credentials in the URL: use the *File fields)'),
    user: z.string().regex(/^[A-Za-z0-9._@-]{1,128}$/, 'must be 1-128 letters, digits and . _ @ -').optional(),
    passwordFile: absolutePath.optional(),
    tokenFile: absolutePath.optional(),
    /** A file holding the user's nkey seed (SU...), as `nk -gen user` writes it. */
    nkeySeedFile: absolutePath.optional(),
    tls: z
      .object({ ca: absolutePath, cert: absolutePath.optional(), key: absolutePath.optional() })
      .strict()
      .refine((t) => (t.cert === undefined) === (t.key === undefined), 'give both cert and key (a client certificate), or neither')
      .optional(),
  })
  .strict()
  .refine((n) => [n.user !== undefined, n.tokenFile !== undefined, n.nkeySeedFile !== undefined].filter(Boolean).length <= 1, 'use one of user (with passwordFile), tokenFile or nkeySeedFile')
  .refine((n) => n.passwordFile === undefined || n.user !== undefined, 'passwordFile needs user');

export type NatsSettings = z.output<typeof natsSettingsSchema>;

/**
 * The connection options of a plan's or config's `nats:` section, secrets read from
 * their files (trailing whitespace dropped).
 * @throws VcstorError INVALID_ARGUMENT naming the field whose file cannot be read or
 *   holds no usable secret (the secret itself never appears in the message).
 */
export async function natsOptionsFromSettings(settings: NatsSettings, source: string): Promise<NatsConnectOptions> {
  const secret = async (file: string, field: string, pattern?: RegExp, what?: string) => {
    let value: string;
    try {
      value = (await readFile(file, 'utf8')).trim();
    } catch (err) {
      throw new VcstorError('INVALID_ARGUMENT', `invalid ${source}: nats.${field}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    if (value === '' || (pattern && !pattern.test(value))) throw new VcstorError('INVALID_ARGUMENT', `invalid ${source}: nats.${field}: ${file} does not hold ${what ?? 'a secret'}`);
    return value;
  };
  return {
    servers: settings.url,
    ...(settings.user !== undefined ? { user: settings.user } : {}),
    ...(settings.passwordFile !== undefined ? { pass: await secret(settings.passwordFile, 'passwordFile') } : {}),
    ...(settings.tokenFile !== undefined ? { token: await secret(settings.tokenFile, 'tokenFile') } : {}),
    ...(settings.nkeySeedFile !== undefined ? { nkeySeed: await secret(settings.nkeySeedFile, 'nkeySeedFile', /^SU[A-Z2-7]{56}$/, 'a user nkey seed (SU...)') } : {}),
    ...(settings.tls !== undefined ? { tls: settings.tls } : {}),
  };
}

/** "nats://user:secret@host:4222" as "nats://***@host:4222", for logs and errors. */
export function withoutCredentials(url: string): string {
  return url.replace(/\/\/[^/@]*@/, '//***@');
}
