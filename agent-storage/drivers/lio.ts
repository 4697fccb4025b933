import { createHash } from 'node:crypto';
import { readdir, readFile, readlink, realpath, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import { VcstorError, invalidArgument } from '../../common/errors.js';
import { formatIscsiValue, iscsiSessionParamsFromPairs, ISCSI_SESSION_KEYS, setIscsiSessionParams, type IscsiSessionParamValues } from '../../common/iscsi-params.js';
import { CommandError, maskSensitive, type CommandRunner } from '../../common/runner.js';
import { validateIqn } from '../../common/validate.js';
import type { ChapCredentials, IscsiExportSpec, IscsiTargetDriver, IscsiTargetState } from './types.js';

/**
 * LIO, the Linux kernel iSCSI target. Changes go through `targetcli` one-shot commands
 * (argument arrays, never a shell); the current state is read from LIO's configfs tree,
 * as rtslib and targetcli themselves read it. Every change is followed by a read-back
 * of configfs and `targetcli saveconfig` (Cinder's habit), because targetcli exits 0
 * after many failures it only logs, and because LIO forgets everything at reboot.
 */

/** What a backing path is on this host. */
export type BackingKind = 'block' | 'file' | 'other' | 'missing';

/** How a LioTarget is built. */
export interface LioTargetOptions {
  runner: CommandRunner;
  /** "ip:port" (IPv6 as "[addr]:port") every target listens on. Default 0.0.0.0:3260. */
  portal?: string;
  /** Where LIO's configfs tree is mounted. Default /sys/kernel/config/target. */
  configfsRoot?: string;
  /**
   * Tells block devices from files: block devices get an iblock backstore, files a
   * fileio one. Default: stat(2). Tests substitute it to describe paths they cannot create.
   */
  backingKind?: (backingPath: string) => Promise<BackingKind>;
}

/** One LIO session as configfs shows it. */
export interface LioSession {
  initiatorIqn: string;
  /** The initiator's IP address, or '' where LIO does not show it (dynamic sessions). */
  address: string;
}

const TARGETCLI = 'targetcli';
/** saveconfig rewrites the whole configuration; give it more than the quick commands need. */
const TARGETCLI_TIMEOUT_MS = 60_000;
const DEFAULT_PORTAL = '0.0.0.0:3260';
const DEFAULT_CONFIGFS_ROOT = '/sys/kernel/config/target';
/** vcstor uses one portal group per target, the one targetcli creates: tpg1. */
const TPG_DIR = 'tpgt_1';
const TPG_NODE = 'tpg1';
/** rtslib's LUN.MAX_LUN. */
const MAX_LUN = 255;
/** LIO keeps CHAP names and secrets in 256-byte buffers (MAX_USER_LEN / MAX_PASS_LEN). */
const MAX_CHAP_LENGTH = 255;
const MAX_BACKSTORE_NAME = 64;
const WILDCARD_ADDRESSES = new Set(['0.0.0.0', '::', '::0']);

/**
 * targetcli joins its arguments with spaces and re-parses them with configshell's
 * grammar, whose unquoted values may only hold letters, digits and a few punctuation
 * marks (and '%' separates commands when targetclid is used). Anything we put on its
 * command line must stay inside this set, or it is split, misread or refused.
 */
const TARGETCLI_SAFE_VALUE = /^[A-Za-z0-9_+/.~@:()<>-]+$/;

/** targetcli's backstore directory for each configfs HBA plugin we know how to delete. */
const BACKSTORE_DIR_BY_PLUGIN: Readonly<Record<string, string>> = {
  iblock: 'block',
  fileio: 'fileio',
  pscsi: 'pscsi',
  rd_mcp: 'ramdisk',
};

/** CHAP settings as LIO stores them (one set per ACL, one on the TPG for demo mode). */
interface ChapSettings {
  userid: string;
  password: string;
  mutualUserid: string;
  mutualPassword: string;
}

const NO_CHAP: ChapSettings = { userid: '', password: '', mutualUserid: '', mutualPassword: '' };

/** A storage object (backstore) under core/<hba>/<name>. */
interface LioStorageObject {
  /** The HBA directory, e.g. "fileio_3". */
  hba: string;
  /** The HBA's plugin, e.g. "fileio" or "iblock". */
  plugin: string;
  name: string;
  /** udev_path: the file or device it serves ('' when unset). */
  backingPath: string;
}

interface StorageObjectRef {
  hba: string;
  name: string;
}

/** A LUN of any fabric's TPG, pointing at a storage object. */
interface LunLink extends StorageObjectRef {
  /** "<fabric>/<wwn>/<tpgt>/lun_<n>": who holds the link. */
  owner: string;
}

interface LioAcl {
  initiatorIqn: string;
  chap: ChapSettings;
  mappedLuns: number[];
  session?: LioSession;
}

interface LioTpg {
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

const TPG_ATTRIBUTES = ['authentication', 'generate_node_acls', 'demo_mode_write_protect'] as const;
type TpgAttribute = (typeof TPG_ATTRIBUTES)[number];

interface LioTargetSnapshot {
  iqn: string;
  /** Undefined when the target has no tpgt_1. */
  tpg?: LioTpg;
}

/** Everything the driver needs to know about LIO, read from configfs in one pass. */
interface LioSnapshot {
  targets: Map<string, LioTargetSnapshot>;
  storageObjects: LioStorageObject[];
  lunLinks: LunLink[];
}

/** A targetcli command line and why it is needed (the reason never holds a secret). */
interface TargetcliCommand {
  args: string[];
  sensitive?: string[];
  why: string;
}

/** An export spec checked and in LIO's normal form (iSCSI names lower case). */
interface LioExportSpec {
  iqn: string;
  lun: number;
  backingPath: string;
  allowedInitiators: string[];
  allowAnyInitiator: boolean;
  chap?: ChapCredentials;
  sessionParams: IscsiSessionParamValues;
}

interface Portal {
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
 * Parse an ACL's `info` file (lio_target_nacl_info_show): undefined when it says "No
 * active iSCSI Session", else the initiator and the address of its first connection.
 */
export function parseLioSessionInfo(text: string, aclInitiatorIqn = ''): LioSession | undefined {
  if (text.trim() === '' || /^No active iSCSI Session/m.test(text)) return undefined;
  const name = /^InitiatorName:\s*(\S+)/m.exec(text)?.[1] ?? aclInitiatorIqn;
  // "   Address 192.0.2.7 TCP  StatSN: 0x..." (older kernels print the same words).
  const address = /^\s*Address\s+(\S+)/m.exec(text)?.[1] ?? '';
  return { initiatorIqn: name, address: address.replace(/^\[(.*)\]$/, '$1') };
}

/**
 * Parse a TPG's `dynamic_sessions` file: one initiator name per line, each followed by
 * a NUL byte (target_show_dynamic_sessions counts the terminator into the output).
 */
export function parseLioDynamicSessions(text: string): string[] {
  return text
    .split(/[\n\0]/)
    .map((line) => line.trim())
    .filter((line) => line !== '');
}

function parsePortal(value: string): Portal {
  const match = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(value) ?? /^([0-9.]+):(\d{1,5})$/.exec(value);
  const address = match?.[1]?.toLowerCase() ?? '';
  const port = Number(match?.[2]);
  if (!match || isIP(address) === 0 || !(port >= 1 && port <= 65535)) {
    throw invalidArgument('portal', `${JSON.stringify(value)} is not "ip:port" (IPv6 as "[addr]:port"); LIO listens on addresses, not host names`);
  }
  return { address, port };
}

/** The np/ directory name rtslib gives a portal. */
function portalDirName(portal: Portal): string {
  return isIP(portal.address) === 6 ? `[${portal.address}]:${portal.port}` : `${portal.address}:${portal.port}`;
}

function portalFromDirName(name: string): Portal | undefined {
  try {
    return parsePortal(name);
  } catch {
    return undefined;
  }
}

async function statBackingKind(backingPath: string): Promise<BackingKind> {
  try {
    const info = await stat(backingPath);
    if (info.isBlockDevice()) return 'block';
    return info.isFile() ? 'file' : 'other';
  } catch (err) {
    if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') return 'missing';
    throw err;
  }
}

function errorCode(err: unknown): string | undefined {
  return err instanceof Error ? (err as NodeJS.ErrnoException).code : undefined;
}

async function realpathOrSelf(file: string): Promise<string> {
  try {
    return await realpath(file);
  } catch {
    return file;
  }
}

/** Same file: the same name, or names that resolve alike (/dev/vg/lv and /dev/dm-3). */
async function samePath(a: string, b: string): Promise<boolean> {
  if (a === '' || b === '') return false;
  return a === b || (await realpathOrSelf(a)) === (await realpathOrSelf(b));
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw new VcstorError('CANCELLED', 'the LIO operation was cancelled');
}

function wantedChap(chap: ChapCredentials | undefined): ChapSettings {
  if (!chap) return NO_CHAP;
  return {
    userid: chap.username,
    password: chap.password,
    mutualUserid: chap.mutualUsername ?? '',
    mutualPassword: chap.mutualPassword ?? '',
  };
}

/**
 * The `set auth` command that makes `current` into `wanted` at `node`, or undefined when
 * they match. The one-way pair and the mutual pair are each set whole (LIO checks a
 * name with its secret), and only the pairs that differ are sent.
 */
function chapCommand(node: string, current: ChapSettings, wanted: ChapSettings, what: string): TargetcliCommand | undefined {
  const settings: string[] = [];
  if (current.userid !== wanted.userid || current.password !== wanted.password) {
    settings.push(`userid=${wanted.userid}`, `password=${wanted.password}`);
  }
  if (current.mutualUserid !== wanted.mutualUserid || current.mutualPassword !== wanted.mutualPassword) {
    settings.push(`mutual_userid=${wanted.mutualUserid}`, `mutual_password=${wanted.mutualPassword}`);
  }
  if (settings.length === 0) return undefined;
  const sensitive = [wanted.password, wanted.mutualPassword].filter((secret) => secret !== '');
  return { args: [node, 'set', 'auth', ...settings], sensitive, why: `the CHAP settings of ${what} differ` };
}

/**
 * The LIO iSCSI target driver (kernel target, configured with targetcli-fb).
 *
 * Each export is one target with one portal group (tpg1) holding one LUN backed by an
 * iblock (block device) or fileio (file) backstore named by {@link lioBackstoreName}.
 * Access is by initiator IQN only: LIO has no address ACLs. Changes are serialised
 * within the driver (targetcli rewrites the whole saved configuration), read back from
 * configfs, and saved with `targetcli saveconfig` so they survive a reboot.
 */
export class LioTarget implements IscsiTargetDriver {
  readonly driver = 'lio' as const;
  /** LIO numbers LUNs from 0 and has no controller LUN in the way (tgt uses 0 for it). */
  readonly defaultLun = 0;

  private readonly runner: CommandRunner;
  private readonly portal: Portal;
  private readonly configfsRoot: string;
  private readonly backingKind: (backingPath: string) => Promise<BackingKind>;
  /** The tail of the queue of changes: one targetcli conversation at a time. */
  private queue: Promise<unknown> = Promise.resolve();

  /** @throws VcstorError INVALID_ARGUMENT when `portal` is not "ip:port". */
  constructor(options: LioTargetOptions) {
    this.runner = options.runner;
    this.portal = parsePortal(options.portal ?? DEFAULT_PORTAL);
    this.configfsRoot = options.configfsRoot ?? DEFAULT_CONFIGFS_ROOT;
    this.backingKind = options.backingKind ?? statBackingKind;
  }

  /** The configured portal as "ip:port" ("[addr]:port" for IPv6). */
  portals(): string[] {
    return [portalDirName(this.portal)];
  }

  /**
   * Make target `spec.iqn` match `spec`: backstore, target, LUN, portal, ACLs per
   * initiator IQN, CHAP (per ACL; on the TPG too with allowAnyInitiator, which turns on
   * LIO's demo mode: generate_node_acls=1, writable). Reads configfs first and runs
   * targetcli only for what differs, so a matching target costs no command at all; after
   * changes it reads configfs back and runs `targetcli saveconfig`. Idempotent.
   * CHAP secrets travel on targetcli's command line (masked in logs and errors).
   * Each targetcli call has a 60 s timeout and honours `signal`.
   * @throws VcstorError FAILED_PRECONDITION for address ACLs (LIO has none), a backing
   *   path that is missing or neither a file nor a block device, and names, paths or CHAP
   *   values targetcli cannot take on its command line; INVALID_ARGUMENT for a bad IQN
   *   or LUN; UNAVAILABLE when targetcli is not installed; INTERNAL when targetcli fails
   *   or configfs does not show the change afterwards; CANCELLED.
   */
  async ensureExport(spec: IscsiExportSpec, signal: AbortSignal): Promise<void> {
    const wanted = checkExportSpec(spec);
    throwIfAborted(signal);
    const kind = await this.backingKind(wanted.backingPath);
    if (kind === 'missing') {
      throw new VcstorError('FAILED_PRECONDITION', `backing path ${wanted.backingPath} does not exist; create the volume before exporting it`);
    }
    if (kind === 'other') {
      throw new VcstorError('FAILED_PRECONDITION', `backing path ${wanted.backingPath} is neither a file nor a block device; LIO can only export those`);
    }
    await this.serialize(() => this.converge(wanted, kind, signal));
  }

  /**
   * Delete target `iqn`, then the backstores its LUNs used that no other LUN uses (the
   * backing files and devices themselves are not touched), then save the configuration.
   * CHAP lives in the target's ACLs in LIO, so nothing else is left behind.
   * @returns false when the target did not exist (nothing is run).
   * @throws VcstorError FAILED_PRECONDITION when the target has sessions and `force` is
   *   false (with force, LIO drops the sessions); INVALID_ARGUMENT for a bad IQN;
   *   UNAVAILABLE, INTERNAL (targetcli failed, or the target is still there), CANCELLED.
   */
  async removeTarget(iqn: string, force: boolean, signal: AbortSignal): Promise<boolean> {
    const targetIqn = validateIqn('iqn', iqn).toLowerCase();
    throwIfAborted(signal);
    return this.serialize(async () => {
      throwIfAborted(signal);
      const snapshot = await this.readSnapshot();
      const target = snapshot.targets.get(targetIqn);
      if (!target) return false;
      const sessions = sessionsOf(target);
      if (sessions.length > 0 && !force) {
        const who = sessions.map((s) => (s.address ? `${s.initiatorIqn} at ${s.address}` : s.initiatorIqn)).join(', ');
        throw new VcstorError(
          'FAILED_PRECONDITION',
          `target ${targetIqn} has ${sessions.length} session(s) (${who}); log the initiators out first, or remove it with force`,
        );
      }
      const owner = `iscsi/${targetIqn}/`;
      const stillLinked = (so: StorageObjectRef) =>
        snapshot.lunLinks.some((link) => !link.owner.startsWith(owner) && link.hba === so.hba && link.name === so.name);
      const backstoreDeletes: TargetcliCommand[] = [];
      const seen = new Set<string>();
      for (const link of snapshot.lunLinks.filter((l) => l.owner.startsWith(owner))) {
        const so = snapshot.storageObjects.find((s) => s.hba === link.hba && s.name === link.name);
        const dir = so && BACKSTORE_DIR_BY_PLUGIN[so.plugin];
        if (!so || !dir || seen.has(`${so.hba}/${so.name}`) || stillLinked(so)) continue;
        seen.add(`${so.hba}/${so.name}`);
        backstoreDeletes.push({ args: [`/backstores/${dir}`, 'delete', so.name], why: `backstore ${so.name} served only this target` });
      }
      await this.applyAndSave(signal, async () => {
        await this.runAll([{ args: ['/iscsi', 'delete', targetIqn], why: 'the target is being removed' }, ...backstoreDeletes], signal);
        if ((await this.readSnapshot()).targets.has(targetIqn)) {
          throw new VcstorError('INTERNAL', `targetcli reported success, but target ${targetIqn} is still in LIO's configfs; see \`targetcli ls\``);
        }
      });
      return true;
    });
  }

  /**
   * Every iSCSI target LIO has now, read from configfs (no command is run): LUNs with
   * their backing paths, initiator ACLs, demo mode, CHAP user names (when
   * authentication is on), sessions (with the initiator's address for ACL sessions;
   * dynamic demo-mode sessions show no address). Only tpg1 of each target is read.
   * @throws VcstorError FAILED_PRECONDITION when configfs cannot be read (not root).
   */
  async listTargets(signal: AbortSignal): Promise<IscsiTargetState[]> {
    throwIfAborted(signal);
    const snapshot = await this.readSnapshot();
    return [...snapshot.targets.values()]
      .sort((a, b) => a.iqn.localeCompare(b.iqn))
      .map((target) => toTargetState(target, snapshot));
  }

  /** The TPG's parameters from configfs (tpgt_1/param/<Key>); undefined without the target or any of the six files. */
  async readSessionParams(iqn: string, signal: AbortSignal): Promise<Required<IscsiSessionParamValues> | undefined> {
    throwIfAborted(signal);
    const tpg = (await this.readSnapshot()).targets.get(iqn.toLowerCase())?.tpg;
    if (!tpg) return undefined;
    const values = iscsiSessionParamsFromPairs(Object.entries(tpg.params).flatMap(([key, value]) => (value === undefined ? [] : [[key, value] as [string, string]])));
    return ISCSI_SESSION_KEYS.every((k) => values[k.name] !== undefined) ? (values as Required<IscsiSessionParamValues>) : undefined;
  }

  // --- converging ---

  private async converge(spec: LioExportSpec, kind: 'block' | 'file', signal: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    let snapshot = await this.readSnapshot();
    const structure = await this.planStructure(spec, kind, snapshot);
    const access = structure.length === 0 ? this.planAccess(spec, snapshot) : undefined;
    if (structure.length === 0 && access?.length === 0) return;
    await this.applyAndSave(signal, async () => {
      if (structure.length > 0) {
        await this.runAll(structure, signal);
        // What targetcli made of a new target (its default portal, its attribute
        // defaults, the mapped LUNs) depends on its version and preferences: read it.
        snapshot = await this.readSnapshot();
      }
      await this.runAll(access ?? this.planAccess(spec, snapshot), signal);
      snapshot = await this.readSnapshot();
      const remaining = [...(await this.planStructure(spec, kind, snapshot))];
      if (remaining.length === 0) remaining.push(...this.planAccess(spec, snapshot));
      if (remaining.length > 0) {
        throw new VcstorError(
          'INTERNAL',
          `targetcli reported success, but LIO's configfs still differs from export ${spec.iqn}: ${remaining.map((c) => c.why).join('; ')} ` +
            '(targetcli may have logged an error it did not exit with; see `targetcli ls`)',
        );
      }
    });
  }

  /**
   * Backstore, target and LUN: what must exist before access can be set. A LUN that
   * serves the wrong path (or is not the export's) is deleted with the backstores no
   * other LUN uses; a backstore already carrying the export's name and path is reused.
   */
  private async planStructure(spec: LioExportSpec, kind: 'block' | 'file', snapshot: LioSnapshot): Promise<TargetcliCommand[]> {
    const commands: TargetcliCommand[] = [];
    const target = snapshot.targets.get(spec.iqn);
    const tpgNode = `/iscsi/${spec.iqn}/${TPG_NODE}`;
    const wantedPlugin = kind === 'block' ? 'iblock' : 'fileio';
    const findObject = (ref: StorageObjectRef | undefined) =>
      ref && snapshot.storageObjects.find((so) => so.hba === ref.hba && so.name === ref.name);

    const removedOwners = new Set<string>();
    const unused: LioStorageObject[] = [];
    let served = false;
    for (const lun of target?.tpg?.luns ?? []) {
      const so = findObject(lun.storageObject);
      if (lun.lun === spec.lun && so?.plugin === wantedPlugin && (await samePath(so.backingPath, spec.backingPath))) {
        served = true;
        continue;
      }
      commands.push({
        args: [`${tpgNode}/luns`, 'delete', `lun=${lun.lun}`],
        why: lun.lun === spec.lun ? `LUN ${lun.lun} does not serve ${spec.backingPath}` : `LUN ${lun.lun} is not part of the export`,
      });
      removedOwners.add(`iscsi/${spec.iqn}/${TPG_DIR}/lun_${lun.lun}`);
      if (so) unused.push(so);
    }

    const name = lioBackstoreName(spec.iqn, spec.lun);
    let reused: LioStorageObject | undefined;
    if (!served) {
      for (const so of snapshot.storageObjects.filter((s) => s.name === name)) {
        if (!reused && so.plugin === wantedPlugin && (await samePath(so.backingPath, spec.backingPath))) reused = so;
        else unused.push(so);
      }
    }
    const linkedElsewhere = (so: LioStorageObject) =>
      snapshot.lunLinks.find((link) => !removedOwners.has(link.owner) && link.hba === so.hba && link.name === so.name);
    const deleted = new Set<string>();
    for (const so of unused) {
      const key = `${so.hba}/${so.name}`;
      const dir = BACKSTORE_DIR_BY_PLUGIN[so.plugin];
      if (so === reused || deleted.has(key) || !dir) continue;
      const user = linkedElsewhere(so);
      if (user && so.name === name) {
        throw new VcstorError(
          'FAILED_PRECONDITION',
          `backstore ${dir}/${name}, named for export ${spec.iqn}, serves another path and is used by ${user.owner}; remove that LUN first`,
        );
      }
      if (user) continue; // another export still needs it
      deleted.add(key);
      commands.push({ args: [`/backstores/${dir}`, 'delete', so.name], why: `backstore ${so.name} is stale` });
    }

    if (!served && !reused) {
      commands.push(
        kind === 'block'
          ? { args: ['/backstores/block', 'create', `name=${name}`, `dev=${spec.backingPath}`], why: `no backstore serves ${spec.backingPath}` }
          : { args: ['/backstores/fileio', 'create', `name=${name}`, `file_or_dev=${spec.backingPath}`], why: `no backstore serves ${spec.backingPath}` },
      );
    }
    if (!target) {
      commands.push({ args: ['/iscsi', 'create', spec.iqn], why: 'the target does not exist' });
    } else if (!target.tpg) {
      commands.push({ args: [`/iscsi/${spec.iqn}`, 'create', 'tag=1'], why: 'the target has no tpg1' });
    }
    if (!served) {
      const backstore = `/backstores/${kind === 'block' ? 'block' : 'fileio'}/${reused?.name ?? name}`;
      // add_mapped_luns given explicitly: the global preference may be either way.
      commands.push({ args: [`${tpgNode}/luns`, 'create', backstore, `lun=${spec.lun}`, 'add_mapped_luns=true'], why: `LUN ${spec.lun} is missing` });
    }
    return commands;
  }

  /**
   * Portal, ACLs and their mapped LUN, CHAP and the TPG attributes, for a target whose
   * structure exists. When CHAP is being turned on, credentials are set before
   * authentication=1; when it is turned off, authentication=0 comes first.
   */
  private planAccess(spec: LioExportSpec, snapshot: LioSnapshot): TargetcliCommand[] {
    const tpg = snapshot.targets.get(spec.iqn)?.tpg;
    if (!tpg) {
      throw new VcstorError('INTERNAL', `targetcli reported success, but target ${spec.iqn} (tpg1) is not in LIO's configfs; see \`targetcli ls\``);
    }
    const tpgNode = `/iscsi/${spec.iqn}/${TPG_NODE}`;
    const commands: TargetcliCommand[] = [];
    if (!tpg.enabled) commands.push({ args: [tpgNode, 'enable'], why: 'tpg1 is disabled' });

    // The portal. A wildcard on the configured port is satisfied by either wildcard:
    // newer targetcli creates [::0]:3260, which takes IPv4 too. A specific address
    // cannot be bound while a wildcard on its port listens, so deletions come first.
    const wantedWildcard = WILDCARD_ADDRESSES.has(this.portal.address);
    const satisfies = (dirName: string) => {
      const portal = portalFromDirName(dirName);
      if (!portal || portal.port !== this.portal.port) return false;
      return wantedWildcard ? WILDCARD_ADDRESSES.has(portal.address) : portal.address === this.portal.address;
    };
    for (const dirName of tpg.portals.filter((p) => !satisfies(p))) {
      const portal = portalFromDirName(dirName);
      if (!portal) continue; // not a portal name we can read; leave it alone
      commands.push({ args: [`${tpgNode}/portals`, 'delete', portal.address, String(portal.port)], why: `portal ${dirName} is not the configured one` });
    }
    if (!tpg.portals.some(satisfies)) {
      commands.push({
        args: [`${tpgNode}/portals`, 'create', this.portal.address, String(this.portal.port)],
        why: `portal ${portalDirName(this.portal)} is missing`,
      });
    }

    // ACLs: one per allowed initiator, each with the export's LUN mapped.
    const wantedInitiators = new Set(spec.allowedInitiators);
    for (const acl of tpg.acls.filter((a) => !wantedInitiators.has(a.initiatorIqn))) {
      commands.push({ args: [`${tpgNode}/acls`, 'delete', acl.initiatorIqn], why: `initiator ${acl.initiatorIqn} is no longer allowed` });
    }
    const chapCommands: TargetcliCommand[] = [];
    const chap = wantedChap(spec.chap);
    for (const initiator of spec.allowedInitiators) {
      const acl = tpg.acls.find((a) => a.initiatorIqn === initiator);
      const aclNode = `${tpgNode}/acls/${initiator}`;
      if (!acl) {
        commands.push({ args: [`${tpgNode}/acls`, 'create', initiator, 'add_mapped_luns=true'], why: `initiator ${initiator} has no ACL` });
      } else if (!acl.mappedLuns.includes(spec.lun)) {
        // Positional: the keyword names of this command differ between targetcli versions.
        commands.push({ args: [aclNode, 'create', String(spec.lun), String(spec.lun)], why: `LUN ${spec.lun} is not mapped for ${initiator}` });
      }
      const command = chapCommand(aclNode, acl?.chap ?? NO_CHAP, chap, `the ACL of ${initiator}`);
      if (command) chapCommands.push(command);
    }
    // Demo mode authenticates every initiator with the TPG's credentials.
    const tpgChap = spec.allowAnyInitiator ? chap : NO_CHAP;
    const tpgChapCommand = chapCommand(tpgNode, tpg.chap, tpgChap, 'tpg1');
    if (tpgChapCommand) chapCommands.push(tpgChapCommand);

    const wantedAttributes: Partial<Record<TpgAttribute, string>> = {
      authentication: spec.chap ? '1' : '0',
      generate_node_acls: spec.allowAnyInitiator ? '1' : '0',
      ...(spec.allowAnyInitiator ? { demo_mode_write_protect: '0' } : {}),
    };
    const attributeEntries = Object.entries(wantedAttributes) as Array<[TpgAttribute, string]>;
    const attributeCommands: TargetcliCommand[] = attributeEntries.some(([key, value]) => tpg.attributes[key] !== value)
      ? [{ args: [tpgNode, 'set', 'attribute', ...attributeEntries.map(([key, value]) => `${key}=${value}`)], why: 'the TPG attributes differ' }]
      : [];
    commands.push(...(spec.chap ? [...chapCommands, ...attributeCommands] : [...attributeCommands, ...chapCommands]));

    // Only the keys the export asks for: the others keep what the kernel gave the TPG
    // (its defaults differ between kernel versions; vcstor does not assert them). The
    // TPG's parameters are what LIO offers at each new login; sessions already logged
    // in keep what they negotiated.
    const parameterEntries = setIscsiSessionParams(spec.sessionParams).map(({ key, value }) => [key.rfcKey, formatIscsiValue(value)] as const);
    if (parameterEntries.some(([key, value]) => tpg.params[key] !== value)) {
      commands.push({ args: [tpgNode, 'set', 'parameter', ...parameterEntries.map(([key, value]) => `${key}=${value}`)], why: 'the TPG parameters differ' });
    }
    return commands;
  }

  /**
   * Run `work` (which changes LIO), then save the configuration whether or not it
   * succeeded: the saved file should match what LIO serves now, and the next
   * ensureExport converges the rest. The first failure is the one thrown.
   */
  private async applyAndSave(signal: AbortSignal, work: () => Promise<void>): Promise<void> {
    let failure: unknown;
    try {
      await work();
    } catch (err) {
      failure = err;
    }
    try {
      await this.targetcli({ args: ['saveconfig'], why: 'LIO forgets its configuration at reboot' }, signal);
    } catch (err) {
      failure ??= err;
    }
    if (failure !== undefined) throw failure;
  }

  private async runAll(commands: readonly TargetcliCommand[], signal: AbortSignal): Promise<void> {
    for (const command of commands) {
      throwIfAborted(signal);
      await this.targetcli(command, signal);
    }
  }

  /**
   * One targetcli command. Failures are rethrown with secrets masked everywhere, and
   * without the original as cause: the runner's error keeps the raw stdout (targetcli
   * echoes "Parameter password is now '...'") and an execa cause keeps the raw argv.
   */
  private async targetcli(command: TargetcliCommand, signal: AbortSignal): Promise<void> {
    const sensitive = command.sensitive ?? [];
    try {
      await this.runner.run(TARGETCLI, command.args, { signal, timeoutMs: TARGETCLI_TIMEOUT_MS, sensitive });
    } catch (err) {
      if (err instanceof CommandError) {
        const hint = err.code === 'UNAVAILABLE' ? '; the LIO driver needs targetcli (package targetcli-fb or targetcli)' : '';
        throw new CommandError(err.code, maskSensitive(err.message, sensitive) + hint, {
          commandLine: maskSensitive(err.commandLine, sensitive),
          exitCode: err.exitCode,
          stdout: maskSensitive(err.stdout, sensitive),
          stderr: maskSensitive(err.stderr, sensitive),
          timedOut: err.timedOut,
          canceled: err.canceled,
        });
      }
      if (sensitive.length > 0 && err instanceof Error) {
        throw new VcstorError(err instanceof VcstorError ? err.code : 'INTERNAL', maskSensitive(err.message, sensitive));
      }
      throw err;
    }
  }

  private serialize<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  // --- reading configfs ---

  private async readSnapshot(): Promise<LioSnapshot> {
    const root = this.configfsRoot;
    const storageObjects: LioStorageObject[] = [];
    for (const hba of await this.directories(path.join(root, 'core'))) {
      // HBA directories are "<plugin>_<index>"; core/ also holds alua/ and others.
      const plugin = /^(.+)_\d+$/.exec(hba)?.[1];
      if (!plugin) continue;
      for (const name of await this.directories(path.join(root, 'core', hba))) {
        const backingPath = (await this.readValue(path.join(root, 'core', hba, name, 'udev_path'))) ?? '';
        storageObjects.push({ hba, plugin, name, backingPath });
      }
    }

    // LUNs of every fabric (iscsi, loopback, vhost...) count as users of a backstore.
    const lunLinks: LunLink[] = [];
    for (const fabric of (await this.directories(root)).filter((d) => d !== 'core')) {
      for (const wwn of await this.directories(path.join(root, fabric))) {
        for (const tpgt of (await this.directories(path.join(root, fabric, wwn))).filter((d) => /^tpgt_\d+$/.test(d))) {
          const lunRoot = path.join(root, fabric, wwn, tpgt, 'lun');
          for (const lunDir of (await this.directories(lunRoot)).filter((d) => /^lun_\d+$/.test(d))) {
            const ref = await this.readLunLink(path.join(lunRoot, lunDir));
            if (ref) lunLinks.push({ owner: `${fabric}/${wwn}/${tpgt}/${lunDir}`, ...ref });
          }
        }
      }
    }

    const targets = new Map<string, LioTargetSnapshot>();
    // iscsi/ also holds discovery_auth/ and lio_version: targets are named like IQNs.
    for (const iqn of (await this.directories(path.join(root, 'iscsi'))).filter((d) => /^(iqn|eui|naa)\./.test(d))) {
      targets.set(iqn, { iqn, tpg: await this.readTpg(path.join(root, 'iscsi', iqn, TPG_DIR)) });
    }
    return { targets, storageObjects, lunLinks };
  }

  private async readTpg(tpgDir: string): Promise<LioTpg | undefined> {
    if ((await this.directories(path.dirname(tpgDir))).every((d) => d !== TPG_DIR)) return undefined;
    const luns: LioTpg['luns'] = [];
    for (const lunDir of await this.directories(path.join(tpgDir, 'lun'))) {
      const number = /^lun_(\d+)$/.exec(lunDir)?.[1];
      if (number === undefined) continue;
      luns.push({ lun: Number(number), storageObject: await this.readLunLink(path.join(tpgDir, 'lun', lunDir)) });
    }
    const acls: LioAcl[] = [];
    for (const initiatorIqn of await this.directories(path.join(tpgDir, 'acls'))) {
      const aclDir = path.join(tpgDir, 'acls', initiatorIqn);
      const mappedLuns = (await this.directories(aclDir))
        .map((d) => /^lun_(\d+)$/.exec(d)?.[1])
        .filter((n): n is string => n !== undefined)
        .map(Number);
      const session = parseLioSessionInfo((await this.readRaw(path.join(aclDir, 'info'))) ?? '', initiatorIqn);
      acls.push({ initiatorIqn, chap: await this.readChap(path.join(aclDir, 'auth')), mappedLuns, ...(session ? { session } : {}) });
    }
    const attributes: LioTpg['attributes'] = {};
    for (const key of TPG_ATTRIBUTES) {
      const value = await this.readValue(path.join(tpgDir, 'attrib', key));
      if (value !== undefined) attributes[key] = value;
    }
    const params: LioTpg['params'] = {};
    for (const { rfcKey } of ISCSI_SESSION_KEYS) {
      const value = await this.readValue(path.join(tpgDir, 'param', rfcKey));
      if (value !== undefined) params[rfcKey] = value;
    }
    return {
      enabled: (await this.readValue(path.join(tpgDir, 'enable'))) !== '0',
      params,
      luns: luns.sort((a, b) => a.lun - b.lun),
      acls,
      portals: await this.directories(path.join(tpgDir, 'np')),
      attributes,
      chap: await this.readChap(path.join(tpgDir, 'auth')),
      dynamicSessionInitiators: parseLioDynamicSessions((await this.readRaw(path.join(tpgDir, 'dynamic_sessions'))) ?? ''),
    };
  }

  /** LIO shows a cleared CHAP value as "NULL" (rtslib writes that word to clear it). */
  private async readChap(authDir: string): Promise<ChapSettings> {
    const read = async (file: string) => {
      const value = (await this.readValue(path.join(authDir, file))) ?? '';
      return value === 'NULL' ? '' : value;
    };
    return {
      userid: await read('userid'),
      password: await read('password'),
      mutualUserid: await read('userid_mutual'),
      mutualPassword: await read('password_mutual'),
    };
  }

  /** A LUN directory holds one symlink to core/<hba>/<name>: the backstore it serves. */
  private async readLunLink(lunDir: string): Promise<StorageObjectRef | undefined> {
    let entries;
    try {
      entries = await readdir(lunDir, { withFileTypes: true });
    } catch (err) {
      return this.ignoreMissing(err, lunDir, undefined);
    }
    const link = entries.find((entry) => entry.isSymbolicLink());
    if (!link) return undefined; // a broken LUN: no storage object attached
    const target = path.resolve(lunDir, await readlink(path.join(lunDir, link.name)));
    return { hba: path.basename(path.dirname(target)), name: path.basename(target) };
  }

  private async directories(dir: string): Promise<string[]> {
    try {
      const entries = await readdir(dir, { withFileTypes: true });
      return entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
    } catch (err) {
      return this.ignoreMissing(err, dir, []);
    }
  }

  private async readRaw(file: string): Promise<string | undefined> {
    try {
      return await readFile(file, 'utf8');
    } catch (err) {
      return this.ignoreMissing(err, file, undefined);
    }
  }

  private async readValue(file: string): Promise<string | undefined> {
    return (await this.readRaw(file))?.replace(/\0/g, '').trim();
  }

  /** A missing file or directory is "not there"; anything else says why configfs is unreadable. */
  private ignoreMissing<T>(err: unknown, file: string, fallback: T): T {
    const code = errorCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return fallback;
    if (code === 'EACCES' || code === 'EPERM') {
      throw new VcstorError('FAILED_PRECONDITION', `cannot read LIO's configfs (${file}: ${code}); the storage agent must run as root to use LIO`, { cause: err });
    }
    throw new VcstorError('INTERNAL', `cannot read LIO's configfs at ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** The LIO driver reads no per-session keys (only each ACL's `info`, which has none). */
const LIO_NEGOTIATED_DETAIL = "the LIO driver reads no session's negotiated parameters; read them from the initiator (IscsiSession.negotiated); the TPG's offer is IscsiTarget.session_params";

function sessionsOf(target: LioTargetSnapshot): LioSession[] {
  const tpg = target.tpg;
  if (!tpg) return [];
  const sessions: LioSession[] = tpg.acls.flatMap((acl) => (acl.session ? [acl.session] : []));
  for (const initiatorIqn of tpg.dynamicSessionInitiators) {
    if (!sessions.some((s) => s.initiatorIqn === initiatorIqn)) sessions.push({ initiatorIqn, address: '' });
  }
  return sessions;
}

function toTargetState(target: LioTargetSnapshot, snapshot: LioSnapshot): IscsiTargetState {
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
function checkExportSpec(spec: IscsiExportSpec): LioExportSpec {
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
