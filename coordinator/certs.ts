import { createPrivateKey, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import { VcstorError, invalidArgument } from '../common/errors.js';
import type { CommandRunner } from '../common/runner.js';
import { validateHost, validateName } from '../common/validate.js';
import { writeFileAtomic } from './files.js';

/**
 * The files of a vcstor deployment's PKI: one CA, a server certificate per agent (its
 * addresses as subjectAltNames), client certificates for the coordinator and the CLI.
 *
 * How: keys are made with node:crypto (EC P-256) and written 0600 from the first byte,
 * so no private key is ever readable by others even for an instant; certificates are
 * made by the `openssl` CLI through the command runner (argv arrays, no shell). Node can
 * read and verify X.509 certificates but cannot make them, and writing DER by hand (or
 * adding a crypto dependency) would be more code to trust than a tool every Debian host
 * has. Existing files are checked with node:crypto's X509Certificate.
 *
 * Usages are kept apart on purpose: an agent's certificate is serverAuth only, so a
 * tenant who is root in a guest and takes the guest agent's key cannot use it as a
 * client certificate against dom0 or storage agents (OpenSSL checks the extended key
 * usage of a client's certificate when the server verifies it).
 */

/** Days a CA certificate is valid by default (10 years). */
export const DEFAULT_CA_DAYS = 3650;
/** Days a leaf certificate is valid by default (825, the CA/Browser Forum's old maximum). */
export const DEFAULT_CERT_DAYS = 825;
/** A certificate that expires within this is renewed by `issue` even without --force. */
const RENEW_BEFORE_MS = 30 * 24 * 3600 * 1000;
const OPENSSL_TIMEOUT_MS = 30_000;

/** Where the files of one certificate are. */
export interface CertFiles {
  cert: string;
  key: string;
}

export interface CaFiles extends CertFiles {
  dir: string;
}

/** What `issue` made or kept. */
export interface IssuedCert extends CertFiles {
  ca: string;
  /** False when a valid certificate for the same names was kept. */
  created: boolean;
}

export interface IssueOptions {
  /** The certificate's name: its CN and the base of its file names (NAME.pem, NAME.key). */
  name: string;
  /** IP addresses and DNS names an agent is reached at; makes a server certificate. */
  serverAddresses?: readonly string[];
  /** Make a client certificate (the coordinator, the CLI). */
  client?: boolean;
  days?: number;
  /** Replace an existing certificate even when it is valid. */
  force?: boolean;
}

export function caFiles(dir: string): CaFiles {
  return { dir, cert: path.join(dir, 'ca.pem'), key: path.join(dir, 'ca.key') };
}

export function certFiles(dir: string, name: string): CertFiles {
  return { cert: path.join(dir, `${name}.pem`), key: path.join(dir, `${name}.key`) };
}

const exists = (file: string) => stat(file).then(() => true, () => false);

/** A fresh EC P-256 private key, PKCS#8 PEM, written with mode 0600 (atomically). */
async function writePrivateKey(file: string): Promise<void> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  await writeFileAtomic(file, privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), 0o600);
}

/** A random positive 127-bit serial number (RFC 5280: unique per CA, at most 20 octets). */
function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return `0x${bytes.toString('hex')}`;
}

function checkDays(days: number): number {
  if (!Number.isInteger(days) || days < 1 || days > 36500) throw invalidArgument('--days', `${days} is not a number of days (1-36500)`);
  return days;
}

async function readCert(file: string): Promise<X509Certificate> {
  try {
    return new X509Certificate(await readFile(file));
  } catch (err) {
    throw new VcstorError('FAILED_PRECONDITION', `${file} is not a readable PEM certificate: ${(err as Error).message}`, { cause: err });
  }
}

async function checkKeyMatches(cert: X509Certificate, certFile: string, keyFile: string): Promise<void> {
  let matches = false;
  try {
    matches = cert.checkPrivateKey(createPrivateKey(await readFile(keyFile)));
  } catch (err) {
    throw new VcstorError('FAILED_PRECONDITION', `${keyFile} is not a readable private key: ${(err as Error).message}`, { cause: err });
  }
  if (!matches) throw new VcstorError('FAILED_PRECONDITION', `${keyFile} is not the key of ${certFile}; remove both and run the command again`);
}

/**
 * Makes a CA in `dir`: ca.key (0600) and ca.pem. Idempotent: an existing CA is kept
 * (checked: its key matches, it is a CA), never replaced, as every certificate of the
 * deployment hangs on it.
 * @throws VcstorError FAILED_PRECONDITION when only half of a CA is there or its files
 *   do not belong together; UNAVAILABLE when openssl is missing.
 */
export async function initCa(runner: CommandRunner, dir: string, options: { name?: string; days?: number } = {}): Promise<CaFiles & { created: boolean }> {
  const ca = caFiles(dir);
  const [haveCert, haveKey] = await Promise.all([exists(ca.cert), exists(ca.key)]);
  if (haveCert && haveKey) {
    const cert = await readCert(ca.cert);
    if (!cert.ca) throw new VcstorError('FAILED_PRECONDITION', `${ca.cert} is not a CA certificate`);
    await checkKeyMatches(cert, ca.cert, ca.key);
    await chmod(ca.key, 0o600);
    return { ...ca, created: false };
  }
  if (haveCert || haveKey) {
    throw new VcstorError('FAILED_PRECONDITION', `${dir} holds ${haveCert ? 'ca.pem but no ca.key' : 'ca.key but no ca.pem'}; restore the missing file, or remove the other to make a new CA (and reissue every certificate)`);
  }
  const days = checkDays(options.days ?? DEFAULT_CA_DAYS);
  const cn = validateName('--name', options.name ?? 'vcstor-ca');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writePrivateKey(ca.key);
  const tmp = `${ca.cert}.tmp`;
  try {
    await runner.run(
      'openssl',
      ['req', '-x509', '-new', '-sha256', '-key', ca.key, '-subj', `/CN=${cn}`, '-days', String(days), '-set_serial', serial(),
        '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', tmp],
      { timeoutMs: OPENSSL_TIMEOUT_MS },
    );
    await rename(tmp, ca.cert);
  } catch (err) {
    // A key without its certificate would make the next init refuse: leave nothing.
    await rm(ca.key, { force: true });
    await rm(tmp, { force: true });
    throw err;
  }
  return { ...ca, created: true };
}

/** The subjectAltName entries of `addresses`: IP:... or DNS:... each. */
function subjectAltNames(addresses: readonly string[]): string[] {
  return addresses.map((address, i) => {
    validateHost(`--server-address[${i}]`, address);
    return isIP(address) ? `IP:${address}` : `DNS:${address.toLowerCase()}`;
  });
}

/** How node prints a certificate's SANs ("IP Address:1.2.3.4, DNS:x"), as IP:/DNS: entries. */
function sansOf(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '')
    .split(', ')
    .filter(Boolean)
    .map((e) => e.replace(/^IP Address:/, 'IP:'));
}

function usagesOf(cert: X509Certificate): string[] {
  // node lists extended key usages by OID: 1.3.6.1.5.5.7.3.1 serverAuth, .2 clientAuth.
  const oids = cert.keyUsage ?? [];
  return [...(oids.includes('1.3.6.1.5.5.7.3.1') ? ['serverAuth'] : []), ...(oids.includes('1.3.6.1.5.5.7.3.2') ? ['clientAuth'] : [])];
}

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');

/**
 * Why the certificate at `files` cannot be kept for `wanted`, or undefined when it can:
 * signed by this CA, its key matching, not expiring within 30 days, the same names and
 * usages.
 */
async function whyNotKept(files: CertFiles, ca: X509Certificate, wanted: { cn: string; sans: string[]; usages: string[] }): Promise<string | undefined> {
  const cert = await readCert(files.cert);
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return 'it was not signed by this CA';
  await checkKeyMatches(cert, files.cert, files.key);
  if (Date.parse(cert.validTo) - Date.now() < RENEW_BEFORE_MS) return `it expires ${cert.validTo}`;
  if (cert.subject !== `CN=${wanted.cn}`) return `its subject is ${cert.subject}`;
  if (!sameSet(sansOf(cert), wanted.sans)) return `it names ${sansOf(cert).join(', ') || 'no address'}, not ${wanted.sans.join(', ') || 'no address'}`;
  if (!sameSet(usagesOf(cert), wanted.usages)) return `it is for ${usagesOf(cert).join(', ')}, not ${wanted.usages.join(', ')}`;
  return undefined;
}

/**
 * Issues a certificate signed by the CA in `dir`: NAME.key (0600) and NAME.pem. With
 * server addresses it is a server certificate (serverAuth, the addresses as SANs); with
 * `client` a client certificate (clientAuth); both may be asked for one certificate.
 *
 * Idempotent: a valid certificate for the same name, addresses and usages, signed by
 * this CA and not expiring within 30 days, is kept (created=false). One that differs is
 * refused unless `force`, so a typo never silently replaces a working certificate; one
 * that is expiring, or not this CA's, is replaced only with `force` as well.
 * @throws VcstorError INVALID_ARGUMENT for a bad name or address, or neither role;
 *   NOT_FOUND without a CA (run init first); FAILED_PRECONDITION as described.
 */
export async function issueCert(runner: CommandRunner, dir: string, options: IssueOptions): Promise<IssuedCert> {
  const name = validateName('--name', options.name);
  if (name === 'ca') throw invalidArgument('--name', '"ca" is the CA\'s own file name');
  const sans = subjectAltNames(options.serverAddresses ?? []);
  const usages = [...(sans.length > 0 ? ['serverAuth'] : []), ...(options.client ? ['clientAuth'] : [])];
  if (usages.length === 0) throw invalidArgument('--server-address', 'give --server-address ADDRESS (an agent) and/or --client (the coordinator, the CLI)');
  const days = checkDays(options.days ?? DEFAULT_CERT_DAYS);
  const ca = caFiles(dir);
  if (!(await exists(ca.cert)) || !(await exists(ca.key))) throw new VcstorError('NOT_FOUND', `no CA in ${dir}; run vcstor certs init --dir ${dir} first`);
  const caCert = await readCert(ca.cert);
  const files = certFiles(dir, name);
  const [haveCert, haveKey] = await Promise.all([exists(files.cert), exists(files.key)]);
  if ((haveCert || haveKey) && !options.force) {
    if (!(haveCert && haveKey)) {
      throw new VcstorError('FAILED_PRECONDITION', `${haveCert ? files.key : files.cert} is missing; set --force to make a new key and certificate for ${name}`);
    }
    const why = await whyNotKept(files, caCert, { cn: name, sans, usages });
    if (why === undefined) {
      await chmod(files.key, 0o600);
      return { ...files, ca: ca.cert, created: false };
    }
    throw new VcstorError('FAILED_PRECONDITION', `${files.cert} exists and is not what was asked: ${why}; set --force to replace it`);
  }
  const work = await mkdtemp(path.join(dir, `.issue-${name}-`));
  try {
    const key = path.join(work, 'key.pem');
    await writePrivateKey(key);
    const csr = path.join(work, 'req.csr');
    await runner.run('openssl', ['req', '-new', '-sha256', '-key', key, '-subj', `/CN=${name}`, '-out', csr], { timeoutMs: OPENSSL_TIMEOUT_MS });
    // openssl 3.0's x509 -req takes extensions only from a file; every value in it was
    // validated above (names, IPs, host names), so nothing can inject another line.
    const extensions = path.join(work, 'ext.cnf');
    await writeFile(
      extensions,
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        `extendedKeyUsage=${usages.join(',')}`,
        ...(sans.length > 0 ? [`subjectAltName=${sans.join(',')}`] : []),
        'subjectKeyIdentifier=hash',
        'authorityKeyIdentifier=keyid,issuer',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    const cert = path.join(work, 'cert.pem');
    await runner.run(
      'openssl',
      ['x509', '-req', '-sha256', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', serial(), '-days', String(days), '-extfile', extensions, '-out', cert],
      { timeoutMs: OPENSSL_TIMEOUT_MS },
    );
    // The key first: a certificate is never there without its key.
    await rename(key, files.key);
    await rename(cert, files.cert);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return { ...files, ca: ca.cert, created: true };
}

/**
 * `vcstor certs init|issue`: prints what it made or kept, one line per file.
 * @returns the exit code.
 */
export async function certsCommand(
  runner: CommandRunner,
  sub: string | undefined,
  options: { dir?: string; name?: string; serverAddresses?: readonly string[]; client?: boolean; force?: boolean; days?: string },
  print: (line: string) => void,
): Promise<number> {
  const dir = options.dir;
  if (!dir) throw invalidArgument('--dir', 'give the directory of the deployment\'s certificates (e.g. /etc/vcstor/pki)');
  const absolute = path.resolve(dir);
  const days = options.days === undefined ? undefined : /^\d+$/.test(options.days) ? Number(options.days) : NaN;
  if (days !== undefined && Number.isNaN(days)) throw invalidArgument('--days', `${options.days} is not a whole number`);
  switch (sub) {
    case 'init': {
      const ca = await initCa(runner, absolute, { ...(options.name ? { name: options.name } : {}), ...(days ? { days } : {}) });
      print(`${ca.created ? 'created' : 'kept'} CA ${ca.cert} (key ${ca.key}, mode 0600)`);
      return 0;
    }
    case 'issue': {
      if (!options.name) throw invalidArgument('--name', 'give the certificate\'s name (an agent\'s name, or e.g. coordinator)');
      const issued = await issueCert(runner, absolute, {
        name: options.name,
        serverAddresses: options.serverAddresses ?? [],
        client: options.client ?? false,
        force: options.force ?? false,
        ...(days ? { days } : {}),
      });
      print(`${issued.created ? 'issued' : 'kept'} ${issued.cert} (key ${issued.key}, mode 0600; CA ${issued.ca})`);
      return 0;
    }
    default:
      throw invalidArgument('vcstor certs', 'give init or issue');
  }
}
