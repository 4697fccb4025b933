import { realpath } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import { invalidArgument } from './errors.js';

/**
 * Validators for everything a request can name. Each returns the value it checked (in
 * its normal form) or throws INVALID_ARGUMENT naming the field and what is wrong, so
 * the service layer can check a whole request before anything runs.
 */

// Control characters and NUL can hide in logs, break config files and argv parsing.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/**
 * A resource name (volume, pool, domain, image file): 1-63 characters of a-z, 0-9,
 * '.', '_' and '-', starting with a letter or digit. Such a name is safe as one path
 * component, in an IQN suffix, in a config file and on a command line.
 */
export function validateName(field: string, value: string): string {
  if (value === '') throw invalidArgument(field, 'is required');
  if (!NAME.test(value)) {
    throw invalidArgument(
      field,
      `${JSON.stringify(truncate(value))} is not a valid name: use 1-63 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit`,
    );
  }
  return value;
}

/** The largest size vcstor accepts anywhere: 64 TiB. */
export const MAX_SIZE_BYTES = 64 * 2 ** 40;

/**
 * A size in bytes: a whole number from `min` (default 1) to `max` (default 64 TiB).
 * Optionally a multiple of `multipleOf` (e.g. 512 for block devices).
 */
export function validateSize(
  field: string,
  value: number,
  limits: { min?: number; max?: number; multipleOf?: number } = {},
): number {
  const min = limits.min ?? 1;
  const max = limits.max ?? MAX_SIZE_BYTES;
  if (!Number.isInteger(value)) throw invalidArgument(field, `${value} is not a whole number of bytes`);
  if (value < min) throw invalidArgument(field, `${value} bytes is too small (at least ${min})`);
  if (value > max) throw invalidArgument(field, `${value} bytes is too large (at most ${max})`);
  if (limits.multipleOf && value % limits.multipleOf !== 0) {
    throw invalidArgument(field, `${value} is not a multiple of ${limits.multipleOf} bytes`);
  }
  return value;
}

/**
 * An absolute path inside one of `roots`, written in normal form: no '..' or '.'
 * segments, no repeated or trailing slashes, no control characters. Symbolic links are
 * not followed here: use {@link resolveConfinedPath} before touching the path.
 */
export function validatePathUnder(field: string, value: string, roots: readonly string[]): string {
  if (value === '') throw invalidArgument(field, 'is required');
  if (CONTROL.test(value)) throw invalidArgument(field, 'contains control characters');
  if (value.length > 4096) throw invalidArgument(field, 'is longer than 4096 characters');
  if (!path.isAbsolute(value)) throw invalidArgument(field, `${JSON.stringify(truncate(value))} is not an absolute path`);
  const segments = value.split('/').slice(1);
  if (segments.some((s) => s === '..' || s === '.')) {
    throw invalidArgument(field, `${JSON.stringify(truncate(value))} contains '.' or '..' segments`);
  }
  if (value !== '/' && (segments.includes('') || value.endsWith('/'))) {
    throw invalidArgument(field, `${JSON.stringify(truncate(value))} has empty segments or a trailing slash`);
  }
  // NAME_MAX: a longer component fails every system call (ENAMETOOLONG), so say so here.
  if (segments.some((s) => Buffer.byteLength(s) > 255)) throw invalidArgument(field, `${JSON.stringify(truncate(value))} has a component longer than 255 bytes`);
  if (!roots.some((root) => isWithin(root, value))) {
    throw invalidArgument(
      field,
      roots.length === 0
        ? 'no directory is configured for this on the agent'
        : `${JSON.stringify(truncate(value))} is outside the agent's configured directories (${roots.join(', ')})`,
    );
  }
  return value;
}

/**
 * A path on a remote NFS server (an export): absolute and normal like
 * {@link validatePathUnder}, and only of letters, digits and `_ . + - /`, because it is
 * written into qemu's option syntax (where ',' starts another option) and into libnfs
 * URLs (where '?' starts parameters such as uid=0) as well as mount's `server:/path`.
 */
export function validateRemotePath(field: string, value: string): string {
  validatePathUnder(field, value, ['/']);
  if (!/^[A-Za-z0-9_.+/-]+$/.test(value)) {
    throw invalidArgument(field, `${JSON.stringify(truncate(value))} may hold only letters, digits and _ . + - / (it reaches qemu options and NFS URLs)`);
  }
  return value;
}

/** True when `candidate` is `root` or below it (both absolute, normalised). */
export function isWithin(root: string, candidate: string): boolean {
  const relative = path.relative(path.resolve(root), path.resolve(candidate));
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

/**
 * Like {@link validatePathUnder}, then resolves symbolic links of the part of the path
 * that exists and checks again, so a link inside a root cannot lead outside it.
 * @returns the path with links resolved (its missing tail kept as given).
 */
export async function resolveConfinedPath(field: string, value: string, roots: readonly string[]): Promise<string> {
  validatePathUnder(field, value, roots);
  let existing = value;
  const tail: string[] = [];
  for (;;) {
    try {
      const real = path.join(await realpath(existing), ...tail);
      const realRoots = await Promise.all(roots.map((r) => realpath(r).catch(() => path.resolve(r))));
      if (!realRoots.some((root) => isWithin(root, real))) {
        throw invalidArgument(field, `${JSON.stringify(truncate(value))} leads outside the agent's configured directories through a symbolic link`);
      }
      return real;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // A loop of links, or a path too long once links are expanded, leads nowhere usable.
      if (code === 'ELOOP' || code === 'ENAMETOOLONG') throw invalidArgument(field, `${JSON.stringify(truncate(value))} cannot be resolved (${code})`);
      // ENOTDIR: a part of the path is a file; resolve what exists above it.
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
      tail.unshift(path.basename(existing));
      existing = path.dirname(existing);
    }
  }
}

const IQN_LABEL = '[a-z0-9](?:[a-z0-9-]*[a-z0-9])?';
const IQN = new RegExp(`^iqn\\.(\\d{4})-(\\d{2})\\.${IQN_LABEL}(?:\\.${IQN_LABEL})*(?::[a-z0-9.:_-]*[a-z0-9])?$`);
const EUI = /^eui\.[0-9a-fA-F]{16}$/;
const NAA = /^naa\.(?:[0-9a-fA-F]{16}|[0-9a-fA-F]{32})$/;

/**
 * An iSCSI name in RFC 3720 form: `iqn.YYYY-MM.reversed.domain[:unique]` (lower case;
 * RFC 3722 normalises to it), `eui.` + 16 hex digits, or `naa.` + 16 or 32 hex digits.
 * At most 223 bytes.
 */
export function validateIqn(field: string, value: string): string {
  if (value === '') throw invalidArgument(field, 'is required');
  const shown = JSON.stringify(truncate(value));
  if (Buffer.byteLength(value) > 223) throw invalidArgument(field, `${shown} is longer than 223 bytes (RFC 3720)`);
  if (EUI.test(value) || NAA.test(value)) return value;
  const match = IQN.exec(value);
  if (!match) {
    const hint = value !== value.toLowerCase() && IQN.test(value.toLowerCase()) ? ' (iSCSI names are lower case)' : '';
    throw invalidArgument(
      field,
      `${shown} is not an iSCSI name: expected iqn.YYYY-MM.reversed.domain[:id], eui.<16 hex> or naa.<16|32 hex>${hint}`,
    );
  }
  const month = Number(match[2]);
  if (month < 1 || month > 12) throw invalidArgument(field, `${shown} has month ${match[2]}; expected 01-12`);
  return value;
}

const HOSTNAME = /^(?=.{1,253}$)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

/** A host: an IPv4 or IPv6 address, or a DNS name. */
export function validateHost(field: string, value: string): string {
  if (value === '') throw invalidArgument(field, 'is required');
  if (isIP(value) !== 0 || HOSTNAME.test(value)) return value;
  throw invalidArgument(field, `${JSON.stringify(truncate(value))} is not an IP address or host name`);
}

/** A TCP port number. */
export function validatePort(field: string, value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > 65535) throw invalidArgument(field, `${value} is not a port (1-65535)`);
  return value;
}

/**
 * An address as `host:port`, `[v6]:port`, or a bare host with `defaultPort`.
 * @returns the host and port.
 */
export function validateHostPort(field: string, value: string, defaultPort?: number): { host: string; port: number } {
  if (value === '') throw invalidArgument(field, 'is required');
  let host = value;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(value);
  if (v6) {
    host = v6[1] ?? '';
    portText = v6[2];
    if (isIP(host) !== 6) throw invalidArgument(field, `${JSON.stringify(truncate(value))}: ${host} is not an IPv6 address`);
  } else if ((value.match(/:/g) ?? []).length === 1) {
    [host, portText] = value.split(':') as [string, string];
  }
  validateHost(field, host);
  if (portText === undefined) {
    if (defaultPort === undefined) throw invalidArgument(field, `${JSON.stringify(truncate(value))} has no port (expected host:port)`);
    return { host, port: defaultPort };
  }
  if (!/^\d{1,5}$/.test(portText)) throw invalidArgument(field, `${JSON.stringify(truncate(value))} has a bad port`);
  return { host, port: validatePort(field, Number(portText)) };
}

/** An IP address or a CIDR range (e.g. 192.0.2.0/24). */
export function validateAddressOrCidr(field: string, value: string): string {
  const [address = '', prefix, extra] = value.split('/');
  const family = isIP(address);
  const maxPrefix = family === 4 ? 32 : 128;
  if (family === 0 || extra !== undefined || (prefix !== undefined && !(/^\d{1,3}$/.test(prefix) && Number(prefix) <= maxPrefix))) {
    throw invalidArgument(field, `${JSON.stringify(truncate(value))} is not an IP address or CIDR range`);
  }
  return value;
}

/**
 * Options passed through to a tool (mount -o, mkfs): each must be on the allow-list,
 * either exactly or as `key=value` with an allowed key and a plain value — letters,
 * digits, '.', '_', '-': no ',' (the options are joined with commas for `mount -o`, so
 * "rsize=4096,exec" would smuggle a flag in), no '=', ':', whitespace or quotes.
 */
export function validateOptions(field: string, values: readonly string[], allowed: readonly string[]): string[] {
  return values.map((option, i) => {
    const [key = ''] = option.split('=', 1);
    const value = option.slice(key.length + 1);
    const known = allowed.includes(option) || (option.includes('=') && allowed.includes(`${key}=`) && /^[A-Za-z0-9._-]+$/.test(value));
    if (!known) {
      throw invalidArgument(`${field}[${i}]`, `${JSON.stringify(truncate(option))} is not an allowed option (allowed: ${allowed.join(' ')})`);
    }
    return option;
  });
}

/** A free-text value (labels, user names): printable, at most `maxLength` characters. */
export function validateText(field: string, value: string, maxLength = 256): string {
  if (CONTROL.test(value)) throw invalidArgument(field, 'contains control characters');
  if (value.length > maxLength) throw invalidArgument(field, `is longer than ${maxLength} characters`);
  return value;
}

/**
 * A CHAP secret: 12-16 characters of letters, digits and _ + / . ~ @ : ( ) < > -
 * (what both tgtadm and targetcli's argument parser pass through intact; RFC 3720
 * recommends at least 12). Its value never appears in messages.
 */
export function validateChapSecret(field: string, value: string): string {
  if (!/^[A-Za-z0-9_+/.~@:()<>-]{12,16}$/.test(value)) {
    throw invalidArgument(field, 'must be 12-16 characters of letters, digits and _ + / . ~ @ : ( ) < > -');
  }
  return value;
}

function truncate(value: string): string {
  return value.length > 80 ? `${value.slice(0, 77)}...` : value;
}
