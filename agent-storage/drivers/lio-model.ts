import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { VcstorError, invalidArgument } from '../../common/errors.js';
import type { IscsiSessionParamValues } from '../../common/iscsi-params.js';
import { validateIqn } from '../../common/validate.js';
import type { ChapCredentials, IscsiExportSpec, IscsiTargetState } from './types.js';

/**
 * LIO as the LIO driver models it: what it read from configfs (a snapshot), what an
 * export asks for (checked against what targetcli can carry), and the pure mappings
 * between them. Nothing here runs a command or reads a file.
 */

/** What a backing path is on this host. */
export type BackingKind = 'block' | 'file' | 'other' | 'missing';

/** One LIO session as configfs shows it. */
export interface LioSession {
  initiatorIqn: string;
  /** The initiator's IP address, or '' where LIO does not show it (dynamic sessions). */
  address: string;
}

/** vcstor uses one portal group per target, the one targetcli creates: tpg1. */
export const TPG_DIR = 'tpgt_1';
export const TPG_NODE = 'tpg1';
/** rtslib's LUN.MAX_LUN. */
const MAX_LUN = 255;
/** LIO keeps CHAP names and secrets in 256-byte buffers (MAX_USER_LEN / MAX_PASS_LEN). */
const MAX_CHAP_LENGTH = 255;
const MAX_BACKSTORE_NAME = 64;
export const WILDCARD_ADDRESSES = new Set(['0.0.0.0', '::', '::0']);

/**
 * targetcli joins its arguments with spaces and re-parses them with configshell's
 * grammar, whose unquoted values may only hold letters, digits and a few punctuation
 * marks (and '%' separates commands when targetclid is used). Anything we put on its
 * command line must stay inside this set, or it is split, misread or refused.
 */
const TARGETCLI_SAFE_VALUE = /^[A-Za-z0-9_+/.~@:()<>-]+$/;

/** targetcli's backstore directory for each configfs HBA plugin we know how to delete. */
export const BACKSTORE_DIR_BY_PLUGIN: Readonly<Record<string, string>> = {
  iblock: 'block',
  fileio: 'fileio',
  pscsi: 'pscsi',
  rd_mcp: 'ramdisk',
};

/** CHAP settings as LIO stores them (one set per ACL, one on the TPG for demo mode). */
export interface ChapSettings {
  userid: string;
  password: string;
  mutualUserid: string;
  mutualPassword: string;
}

export const NO_CHAP: ChapSettings = { userid: '', password: '', mutualUserid: '', mutualPassword: '' };

/** A storage object (backstore) under core/<hba>/<name>. */
export interface LioStorageObject {
  /** The HBA directory, e.g. "fileio_3". */
  hba: string;
  /** The HBA's plugin, e.g. "fileio" or "iblock". */
  plugin: string;
  name: string;
  /** udev_path: the file or device it serves ('' when unset). */
  backingPath: string;
}

export interface StorageObjectRef {
  hba: string;
  name: string;
}

/** A LUN of any fabric's TPG, pointing at a storage object. */
export interface LunLink extends StorageObjectRef {
  /** "<fabric>/<wwn>/<tpgt>/lun_<n>": who holds the link. */
  owner: string;
}

export interface LioAcl {
  initiatorIqn: string;
  chap: ChapSettings;
  mappedLuns: number[];
  session?: LioSession;
}

export interface LioTpg {
  enabled: boolean;
  luns: Array<{ lun: number; storageObject?: StorageObjectRef }>;
  acls: LioAcl[];
  /** np/ directory names: "ip:port" or "[ipv6]:port". */
  portals: string[];
  attributes: Partial<Record<TpgAttribute, string>>;
  /** The TPG's iSCSI parameters (param/<Key>) vcstor sets: "InitialR2T" -> "Yes". */
  params: Partial<Record<string, string>>;
  chap: ChapSettings;
  dynamicSessionInitiators: string[];
}

export const TPG_ATTRIBUTES = ['authentication', 'generate_node_acls', 'demo_mode_write_protect'] as const;
export type TpgAttribute = (typeof TPG_ATTRIBUTES)[number];

export interface LioTargetSnapshot {
  iqn: string;
  /** Undefined when the target has no tpgt_1. */
  tpg?: LioTpg;
}

/** Everything the driver needs to know about LIO, read from configfs in one pass. */
export interface LioSnapshot {
  targets: Map<string, LioTargetSnapshot>;
  storageObjects: LioStorageObject[];
  lunLinks: LunLink[];
}

/** A targetcli command line and why it is needed (the reason never holds a secret). */
export interface TargetcliCommand {
  args: string[];
  sensitive?: string[];
  why: string;
}

/** An export spec checked and in LIO's normal form (iSCSI names lower case). */
export interface LioExportSpec {
  iqn: string;
  lun: number;
  backingPath: string;
  allowedInitiators: string[];
  allowAnyInitiator: boolean;
  chap?: ChapCredentials;
  sessionParams: IscsiSessionParamValues;
}

export interface Portal {
  address: string;
  port: number;
}

/**
 * The backstore name vcstor gives the LUN `lun` of target `iqn`: the IQN's unique part
 * reduced to what LIO accepts in names (letters, digits, '_' and '-'), at most 40
 * characters of it, then the LUN and 10 hex digits of the IQN's SHA-256, so names that
 * reduce alike (or were cut short) stay distinct. Never longer than 64 characters.
 * Pure and deterministic: the same export always gets the same name.
 */
export function lioBackstoreName(iqn: string, lun: number): string {
  const unique = iqn.includes(':') ? iqn.slice(iqn.indexOf(':') + 1) : iqn;
  const slug =
    unique
      .replace(/[^A-Za-z0-9_-]+/g, '_')
      .replace(/^[_-]+|[_-]+$/g, '')
      .slice(0, 40) || 'target';
  const digest = createHash('sha256').update(iqn).digest('hex').slice(0, 10);
  const name = `${slug}-l${lun}-${digest}`;
  // Cannot happen with a 40-character slug and LUN <= 255; kept as a guard for edits.
  if (name.length > MAX_BACKSTORE_NAME) throw new VcstorError('INTERNAL', `backstore name ${name} is too long for LIO`);
  return name;
}

/**
 * A portal as "ip:port" (IPv6 as "[addr]:port"), the form of LIO's np/ directory names.
 * @throws VcstorError INVALID_ARGUMENT for anything else (host names included).
 */
export function parsePortal(value: string): Portal {
  const match = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(value) ?? /^([0-9.]+):(\d{1,5})$/.exec(value);
  const address = match?.[1]?.toLowerCase() ?? '';
  const port = Number(match?.[2]);
  if (!match || isIP(address) === 0 || !(port >= 1 && port <= 65535)) {
    throw invalidArgument('portal', `${JSON.stringify(value)} is not "ip:port" (IPv6 as "[addr]:port"); LIO listens on addresses, not host names`);
  }
  return { address, port };
}

/** The np/ directory name rtslib gives a portal. */
export function portalDirName(portal: Portal): string {
  return isIP(portal.address) === 6 ? `[${portal.address}]:${portal.port}` : `${portal.address}:${portal.port}`;
}

/** An np/ directory name as a portal, or undefined when it is not one. */
export function portalFromDirName(name: string): Portal | undefined {
  try {
    return parsePortal(name);
  } catch {
    return undefined;
  }
}

/** The LIO driver reads no per-session keys (only each ACL's `info`, which has none). */
const LIO_NEGOTIATED_DETAIL = "the LIO driver reads no session's negotiated parameters; read them from the initiator (IscsiSession.negotiated); the TPG's offer is IscsiTarget.session_params";

/** The target's sessions: one per ACL with a session, plus demo-mode ones (no address). */
export function sessionsOf(target: LioTargetSnapshot): LioSession[] {
  const tpg = target.tpg;
  if (!tpg) return [];
  const sessions: LioSession[] = tpg.acls.flatMap((acl) => (acl.session ? [acl.session] : []));
  for (const initiatorIqn of tpg.dynamicSessionInitiators) {
    if (!sessions.some((s) => s.initiatorIqn === initiatorIqn)) sessions.push({ initiatorIqn, address: '' });
  }
  return sessions;
}

/** The driver-neutral state of a target read from configfs. */
export function toTargetState(target: LioTargetSnapshot, snapshot: LioSnapshot): IscsiTargetState {
  const tpg = target.tpg;
  const allowAnyInitiator = tpg?.attributes.generate_node_acls === '1';
  const authenticating = tpg?.attributes.authentication === '1';
  // In demo mode the TPG's credentials apply; CHAP settings are not in force without authentication=1.
  const chapSettings = authenticating && tpg ? [...tpg.acls.map((acl) => acl.chap), ...(allowAnyInitiator ? [tpg.chap] : [])] : [];
  const chapUsers = [...new Set(chapSettings.map((c) => c.userid).filter((u) => u !== ''))];
  const mutualChapUser = chapSettings.map((c) => c.mutualUserid).find((u) => u !== '');
  return {
    iqn: target.iqn,
    luns: (tpg?.luns ?? []).map(({ lun, storageObject: ref }) => ({
      lun,
      backingPath: (ref && snapshot.storageObjects.find((so) => so.hba === ref.hba && so.name === ref.name)?.backingPath) ?? '',
    })),
    allowedInitiators: (tpg?.acls ?? []).map((acl) => acl.initiatorIqn).sort(),
    allowedAddresses: [],
    allowAnyInitiator,
    chapUsers,
    ...(mutualChapUser ? { mutualChapUser } : {}),
    sessions: sessionsOf(target).map((session) => ({ ...session, negotiatedDetail: LIO_NEGOTIATED_DETAIL })),
  };
}

/**
 * Check what LIO can do before anything runs, and put names in LIO's normal form.
 * Secrets are checked, never shown.
 */
export function checkExportSpec(spec: IscsiExportSpec): LioExportSpec {
  if (spec.allowedAddresses.length > 0) {
    throw new VcstorError(
      'FAILED_PRECONDITION',
      `LIO has no address-based ACLs (asked for ${spec.allowedAddresses.join(', ')}); allow the initiators by IQN with LIO (allowedInitiators), or use the tgt driver`,
    );
  }
  const iqn = validateIqn('iqn', spec.iqn).toLowerCase();
  if (!Number.isInteger(spec.lun) || spec.lun < 0 || spec.lun > MAX_LUN) {
    throw invalidArgument('lun', `${spec.lun} is not a LUN number LIO accepts (0-${MAX_LUN})`);
  }
  if (!spec.backingPath.startsWith('/') || !TARGETCLI_SAFE_VALUE.test(spec.backingPath)) {
    throw new VcstorError(
      'FAILED_PRECONDITION',
      `backing path ${JSON.stringify(spec.backingPath)} must be absolute and use only letters, digits and _ + / . ~ @ : ( ) < > - to pass through targetcli`,
    );
  }
  const allowedInitiators = [...new Set(spec.allowedInitiators.map((initiator, i) => validateIqn(`allowedInitiators[${i}]`, initiator).toLowerCase()))];
  if (spec.chap) {
    const { username, password, mutualUsername, mutualPassword } = spec.chap;
    if ((mutualUsername === undefined || mutualUsername === '') !== (mutualPassword === undefined || mutualPassword === '')) {
      throw invalidArgument('chap', 'mutual CHAP needs both a mutual user name and a mutual password');
    }
    const values: Array<[string, string | undefined, boolean]> = [
      ['chap.username', username, false],
      ['chap.password', password, true],
      ['chap.mutualUsername', mutualUsername, false],
      ['chap.mutualPassword', mutualPassword, true],
    ];
    for (const [field, value, secret] of values) {
      if (value === undefined || (value === '' && field.startsWith('chap.mutual'))) continue;
      if (value.length > MAX_CHAP_LENGTH || !TARGETCLI_SAFE_VALUE.test(value)) {
        const shown = secret ? '' : ` (${JSON.stringify(value.slice(0, 80))})`;
        throw new VcstorError(
          'FAILED_PRECONDITION',
          `${field}${shown} cannot be given to LIO: targetcli takes only 1-${MAX_CHAP_LENGTH} letters, digits and _ + / . ~ @ : ( ) < > - on its command line`,
        );
      }
    }
  }
  return {
    iqn,
    lun: spec.lun,
    backingPath: spec.backingPath,
    allowedInitiators,
    allowAnyInitiator: spec.allowAnyInitiator,
    ...(spec.chap ? { chap: spec.chap } : {}),
    sessionParams: spec.sessionParams ?? {},
  };
}
