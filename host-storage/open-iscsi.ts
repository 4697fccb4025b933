import { createHash } from 'node:crypto';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VcstorError, invalidArgument, type ErrorCode } from '../common/errors.js';
import { CommandError, type CommandResult, type CommandRunner, type RunOptions } from '../common/runner.js';
import { formatIscsiValue, iscsiSessionParamsFromPairs, setIscsiSessionParams, type IscsiSessionParamName, type IscsiSessionParamValues } from '../common/iscsi-params.js';
import type { IscsiInitiatorDriver, IscsiLoginResult, IscsiLoginSpec, IscsiSessionHealth, IscsiSessionInfo } from './types.js';

/**
 * The kernel iSCSI initiator (open-iscsi: iscsid and iscsiadm). Every initiator IQN gets
 * an iscsiadm interface record of its own ("vcstor-<hash>"), so two IQNs on one host
 * hold two sessions to the same target, each with its own disks. Node records are made
 * with `-o new` and removed on logout, so the node database holds only what is in use.
 */

/**
 * iscsiadm's exit codes: open-iscsi include/iscsi_err.h (ISCSI_ERR_*). 32 is not in
 * that header's older copies; newer iscsiadm prints it as "32 - target likely not
 * connected" when a session to log out of is stuck reconnecting.
 */
export const ISCSI_EXIT = {
  SUCCESS: 0,
  GENERIC: 1,
  SESS_NOT_FOUND: 2,
  NOMEM: 3,
  TRANS: 4,
  LOGIN: 5,
  IDBM: 6,
  INVAL: 7,
  TRANS_TIMEOUT: 8,
  INTERNAL: 9,
  LOGOUT: 10,
  PDU_TIMEOUT: 11,
  TRANS_NOT_FOUND: 12,
  ACCESS: 13,
  TRANS_CAPS: 14,
  SESS_EXISTS: 15,
  INVALID_MGMT_REQ: 16,
  ISNS_UNAVAILABLE: 17,
  ISCSID_COMM_ERR: 18,
  FATAL_LOGIN: 19,
  ISCSID_NOTCONN: 20,
  NO_OBJS_FOUND: 21,
  SYSFS_LOOKUP: 22,
  HOST_NOT_FOUND: 23,
  LOGIN_AUTH_FAILED: 24,
  ISNS_QUERY: 25,
  ISNS_REG_FAILED: 26,
  OP_NOT_SUPP: 27,
  BUSY: 28,
  AGAIN: 29,
  UNKNOWN_DISCOVERY_TYPE: 30,
  CHILD_TERMINATED: 31,
  SESSION_NOT_CONNECTED: 32,
} as const;

/** What an iscsiadm failure means to a caller: our code and a sentence a user can act on. */
const EXIT_MEANING: ReadonlyMap<number, { code: ErrorCode; meaning: string }> = new Map([
  [ISCSI_EXIT.LOGIN_AUTH_FAILED, { code: 'PERMISSION_DENIED', meaning: 'the target refused the login: CHAP credentials wrong or this initiator is not in its ACL' }],
  [ISCSI_EXIT.TRANS_TIMEOUT, { code: 'UNAVAILABLE', meaning: 'connecting to the portal timed out' }],
  [ISCSI_EXIT.TRANS, { code: 'UNAVAILABLE', meaning: 'the portal could not be reached (transport error)' }],
  [ISCSI_EXIT.PDU_TIMEOUT, { code: 'UNAVAILABLE', meaning: 'the target stopped answering (iSCSI PDU timed out)' }],
  [ISCSI_EXIT.LOGIN, { code: 'UNAVAILABLE', meaning: 'the login failed (target error or no resources on the target)' }],
  [ISCSI_EXIT.AGAIN, { code: 'UNAVAILABLE', meaning: 'the operation failed but may succeed if tried again' }],
  [ISCSI_EXIT.SESSION_NOT_CONNECTED, { code: 'UNAVAILABLE', meaning: 'the session is not connected to its target' }],
  [ISCSI_EXIT.ISCSID_NOTCONN, { code: 'UNAVAILABLE', meaning: 'iscsid is not running (start iscsid.service)' }],
  [ISCSI_EXIT.ISCSID_COMM_ERR, { code: 'UNAVAILABLE', meaning: 'talking to iscsid failed' }],
  [ISCSI_EXIT.FATAL_LOGIN, { code: 'FAILED_PRECONDITION', meaning: 'the target rejected the login for good (target not found on that portal, or removed)' }],
  [ISCSI_EXIT.TRANS_NOT_FOUND, { code: 'FAILED_PRECONDITION', meaning: 'the iscsi_tcp transport is not loaded (modprobe iscsi_tcp)' }],
  [ISCSI_EXIT.ACCESS, { code: 'FAILED_PRECONDITION', meaning: 'iscsiadm lacks OS permission to reach iscsid (the agent must run as root)' }],
  [ISCSI_EXIT.BUSY, { code: 'FAILED_PRECONDITION', meaning: 'the device or record is in use' }],
  [ISCSI_EXIT.IDBM, { code: 'INTERNAL', meaning: 'reading or writing the iSCSI node database failed' }],
  [ISCSI_EXIT.INVAL, { code: 'INTERNAL', meaning: 'iscsiadm rejected an argument' }],
  [ISCSI_EXIT.INTERNAL, { code: 'INTERNAL', meaning: 'iscsid reported an internal error' }],
  [ISCSI_EXIT.LOGOUT, { code: 'INTERNAL', meaning: 'the logout failed' }],
]);

/**
 * The node record setting of each session key (open-iscsi's idbm.c names, as `iscsiadm
 * -m node -o show` prints them). MaxRecvDataSegmentLength is per connection: vcstor
 * makes one connection per session, conn[0].
 */
export const OPEN_ISCSI_NODE_SETTINGS: Readonly<Record<IscsiSessionParamName, string>> = {
  initialR2T: 'node.session.iscsi.InitialR2T',
  immediateData: 'node.session.iscsi.ImmediateData',
  maxRecvDataSegmentLength: 'node.conn[0].iscsi.MaxRecvDataSegmentLength',
  maxBurstLength: 'node.session.iscsi.MaxBurstLength',
  firstBurstLength: 'node.session.iscsi.FirstBurstLength',
  maxOutstandingR2T: 'node.session.iscsi.MaxOutstandingR2T',
};

/** Node record settings are local file edits: quick unless iscsid hangs. */
const DATABASE_TIMEOUT_MS = 30_000;
/** How often the device of a new session is looked for. */
const DEVICE_POLL_MS = 200;
/** Cleanup after a failed login runs even when the caller cancelled, each step this long at most. */
const CLEANUP_TIMEOUT_MS = 30_000;
/** RFC 3720: an iSCSI name is at most 223 bytes. */
const MAX_ISCSI_NAME_BYTES = 223;
// eslint-disable-next-line no-control-regex
const WHITESPACE_OR_CONTROL = /[\s\u0000-\u001f\u007f]/;

/**
 * The iscsiadm interface record vcstor uses for `initiatorIqn`: a hash, because iface
 * names are short (64 bytes) and IQNs are not, and IQNs compare case-insensitively.
 * Pure: the same IQN always gives the same name.
 */
export function ifaceNameFor(initiatorIqn: string): string {
  return `vcstor-${createHash('sha256').update(initiatorIqn.toLowerCase()).digest('hex').slice(0, 16)}`;
}

/** `host:port` as iscsiadm's -p takes it: an IPv6 address goes in brackets. */
export function formatPortal(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The LUN of a session a request means: that number, or for 0 the target's first data
 * LUN, the lowest-numbered one with a disk (1 on tgt, whose LUN 0 is its controller and
 * gets no disk; 0 on LIO).
 */
export function lunOf(session: Pick<ParsedIscsiSession, 'luns'>, wanted: number): ParsedIscsiLun | undefined {
  const disks = session.luns.filter((l) => l.disk !== '');
  if (wanted !== 0) return disks.find((l) => l.lun === wanted);
  return [...disks].sort((a, b) => a.lun - b.lun)[0];
}

/**
 * The udev name of a LUN's disk (path_id's "ip-ADDR:PORT-iscsi-TARGET-lun-N", with the
 * session's persistent address as given to -p, IPv6 without brackets).
 */
export function byPathName(host: string, port: number, targetIqn: string, lun: number): string {
  return `ip-${host}:${port}-iscsi-${targetIqn}-lun-${lun}`;
}

/** One LUN line of a session in `iscsiadm -m session -P 3`. */
export interface ParsedIscsiLun {
  lun: number;
  /** "sdb", or '' when no disk is attached (a target's controller LUN, a LUN being scanned). */
  disk: string;
  /** The disk's SCSI state: running, blocked, offline, transport-offline, Unknown. */
  diskState: string;
}

/** One session of `iscsiadm -m session -P 3`. */
export interface ParsedIscsiSession {
  targetIqn: string;
  /** The persistent portal (the address the node record names), without brackets. */
  host: string;
  port: number;
  /** The portal the session is connected to now (differs after a redirect). */
  currentHost: string;
  currentPort: number;
  ifaceName: string;
  /** '' when iscsiadm prints <empty>. */
  initiatorIqn: string;
  sid: number;
  /** LOGGED IN, TRANSPORT WAIT, ... ('' when not printed). */
  connectionState: string;
  /** The kernel's session state: LOGGED_IN, FAILED, FREE, or Unknown. */
  sessionState: string;
  /** iscsid's recovery stage: NO CHANGE, REOPEN, CLEANUP, REDIRECT. */
  internalState: string;
  luns: ParsedIscsiLun[];
  /**
   * The "Negotiated iSCSI params" block (-P 2 and up), empty when not printed. Its
   * maxRecvDataSegmentLength is the target's: iscsiadm's MaxXmitDataSegmentLength.
   */
  negotiated: IscsiSessionParamValues;
}

function parsePortal(value: string): { host: string; port: number } | undefined {
  // "192.168.1.125:3260,1", "[fd00::5]:3260,1", "nas.example:3260,1"
  const match = /^(.*):(\d+),-?\d+$/.exec(value.trim());
  if (!match) return undefined;
  const host = (match[1] ?? '').replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(match[2]) };
}

function orEmpty(value: string): string {
  return value === '<empty>' ? '' : value;
}

/**
 * Parse `iscsiadm -m session -P 3`. The tree prints a Target line once per target and
 * the portal lines once per portal: a further session to the same target and portal
 * (another iface, so another initiator) prints an empty line instead, so a session
 * starts at its "Interface:" header and inherits the target and portal above it
 * (open-iscsi usr/session_info.c, session_info_print_tree). Tabs or spaces alike.
 */
export function parseIscsiSessionTree(text: string): ParsedIscsiSession[] {
  const sessions: ParsedIscsiSession[] = [];
  let targetIqn = '';
  let persistent = { host: '', port: 0 };
  let current = { host: '', port: 0 };
  let session: ParsedIscsiSession | undefined;
  const startSession = (): ParsedIscsiSession => {
    const started: ParsedIscsiSession = {
      targetIqn,
      host: persistent.host || current.host,
      port: persistent.port || current.port,
      currentHost: current.host,
      currentPort: current.port,
      ifaceName: '',
      initiatorIqn: '',
      sid: -1,
      connectionState: '',
      sessionState: '',
      internalState: '',
      luns: [],
      negotiated: {},
    };
    sessions.push(started);
    return started;
  };
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line === '') continue;
    const colon = line.indexOf(': ');
    const key = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? '' : line.slice(colon + 2).trim();
    if (key === 'Target') {
      targetIqn = value.split(/\s+/)[0] ?? '';
      session = undefined;
      continue;
    }
    if (key === 'Current Portal' || key === 'Persistent Portal') {
      const portal = parsePortal(value) ?? { host: '', port: 0 };
      if (key === 'Current Portal') {
        current = portal;
        persistent = { host: '', port: 0 };
      } else {
        persistent = portal;
      }
      session = undefined;
      continue;
    }
    if (line === 'Interface:') {
      session = startSession();
      continue;
    }
    // Output without the Interface block (other print levels, other versions): a SID
    // line starts a session too.
    if (key === 'SID' && (!session || session.sid !== -1)) session = startSession();
    if (!session) continue;
    const lunMatch = /^scsi\d+ Channel \d+ Id \d+ Lun: (\d+)$/.exec(line);
    const diskMatch = /^Attached scsi disk (\S+)\s+State: (.+)$/.exec(line);
    if (lunMatch) {
      session.luns.push({ lun: Number(lunMatch[1]), disk: '', diskState: '' });
    } else if (diskMatch) {
      const lastLun = session.luns[session.luns.length - 1];
      if (lastLun) {
        lastLun.disk = diskMatch[1] ?? '';
        lastLun.diskState = (diskMatch[2] ?? '').trim();
      }
    } else if (key === 'Iface Name') {
      session.ifaceName = orEmpty(value);
    } else if (key === 'Iface Initiatorname') {
      session.initiatorIqn = orEmpty(value);
    } else if (key === 'SID') {
      session.sid = Number(value);
    } else if (key === 'iSCSI Connection State') {
      session.connectionState = value;
    } else if (key === 'iSCSI Session State') {
      session.sessionState = value;
    } else if (key === 'Internal iscsid Session State') {
      session.internalState = value;
    } else if (['InitialR2T', 'ImmediateData', 'FirstBurstLength', 'MaxBurstLength', 'MaxOutstandingR2T'].includes(key)) {
      Object.assign(session.negotiated, iscsiSessionParamsFromPairs([[key, value]]));
    } else if (key === 'MaxXmitDataSegmentLength') {
      // What the target declared it receives: the session's limit on what is sent to it.
      Object.assign(session.negotiated, iscsiSessionParamsFromPairs([['MaxRecvDataSegmentLength', value]]));
    }
  }
  return sessions;
}

/** How healthy one LUN of a parsed session is, and why. */
function lunHealth(session: ParsedIscsiSession, lun: ParsedIscsiLun | undefined): { state: IscsiSessionHealth; detail: string } {
  const sessionState = session.sessionState || 'Unknown';
  const states = `session ${sessionState}, connection ${session.connectionState || 'Unknown'}, iscsid ${session.internalState || 'Unknown'}`;
  if (sessionState === 'Unknown') return { state: 'uncertain', detail: `iscsiadm could not read the session state (${states})` };
  if (sessionState !== 'LOGGED_IN') return { state: 'broken', detail: `${states}${lun?.disk ? `; disk ${lun.disk} is ${lun.diskState}` : ''}` };
  if (!lun || lun.disk === '') return { state: 'broken', detail: `logged in but no disk is attached (${states})` };
  if (lun.diskState === 'running') return { state: 'logged-in', detail: '' };
  if (lun.diskState === 'Unknown' || lun.diskState === '') return { state: 'uncertain', detail: `disk ${lun.disk} state unknown` };
  return { state: 'broken', detail: `disk ${lun.disk} is ${lun.diskState}` };
}

function sameHost(a: string, b: string): boolean {
  return a.replace(/^\[(.*)\]$/, '$1').toLowerCase() === b.replace(/^\[(.*)\]$/, '$1').toLowerCase();
}

function sameIqn(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

type LoginTarget = Pick<IscsiLoginSpec, 'host' | 'port' | 'targetIqn' | 'lun' | 'initiatorIqn'>;

function validateTarget(target: LoginTarget): void {
  const name = (field: string, value: string) => {
    if (value === '' || Buffer.byteLength(value) > MAX_ISCSI_NAME_BYTES || WHITESPACE_OR_CONTROL.test(value) || value.startsWith('-')) {
      throw invalidArgument(field, `must be an iSCSI name of 1 to ${MAX_ISCSI_NAME_BYTES} bytes without spaces`);
    }
  };
  name('targetIqn', target.targetIqn);
  name('initiatorIqn', target.initiatorIqn);
  if (!/^[A-Za-z0-9._:%-]{1,253}$/.test(target.host) || target.host.startsWith('-')) {
    throw invalidArgument('host', 'must be an IP address or a host name (IPv6 without brackets)');
  }
  if (!Number.isInteger(target.port) || target.port < 1 || target.port > 65_535) throw invalidArgument('port', 'must be 1 to 65535');
  if (!Number.isInteger(target.lun) || target.lun < 0 || target.lun > 16_383) throw invalidArgument('lun', 'must be 0 to 16383');
}

function cancelled(what: string): VcstorError {
  return new VcstorError('CANCELLED', `${what} was cancelled`);
}

/** Options of the driver; devDir and sysDir move /dev and /sys for tests. */
export interface OpenIscsiInitiatorOptions {
  runner: CommandRunner;
  /** Default /dev. */
  devDir?: string;
  /** Default /sys. */
  sysDir?: string;
}

/**
 * open-iscsi driven through iscsiadm. Every command goes through the injected runner
 * with an argument array; CHAP passwords are passed as `sensitive` (iscsiadm takes them
 * only as -v values: it has no file or stdin form), so logs and errors mask them.
 */
export class OpenIscsiInitiator implements IscsiInitiatorDriver {
  readonly driver = 'open-iscsi' as const;
  private readonly runner: CommandRunner;
  private readonly devDir: string;
  private readonly sysDir: string;

  constructor(options: OpenIscsiInitiatorOptions) {
    this.runner = options.runner;
    this.devDir = options.devDir ?? '/dev';
    this.sysDir = options.sysDir ?? '/sys';
  }

  /**
   * Log `spec.initiatorIqn` in to one LUN and return its disk.
   *
   * Idempotent: the sessions are read first; a logged-in session of this initiator to
   * that target and portal whose disk for the LUN is there is returned as it is
   * (alreadyLoggedIn=true); one without that disk is rescanned. Otherwise the
   * initiator's iface record, a node record (CHAP, header digest) and a login are made,
   * then the disk is awaited, polling, until `spec.timeoutMs` from the call. iscsiadm's
   * "session exists" (15) is success.
   *
   * On any failure of a login it started (refused, unreachable, no disk in time,
   * cancelled) it logs out and deletes the node record before throwing, even when the
   * signal has fired; the error says so when that cleanup failed too.
   * @throws VcstorError PERMISSION_DENIED (CHAP or ACL refused, iscsiadm 24),
   *   UNAVAILABLE (portal unreachable or timing out: 4, 5, 8, 11; iscsid down: 20; an
   *   existing session of this initiator is not logged in and is being recovered, or
   *   its disk for the LUN is offline),
   *   FAILED_PRECONDITION (19: target rejected the login for good; 12: no iscsi_tcp),
   *   DEADLINE_EXCEEDED (no disk within timeoutMs), CANCELLED, INVALID_ARGUMENT.
   */
  async login(spec: IscsiLoginSpec, signal: AbortSignal): Promise<IscsiLoginResult> {
    validateTarget(spec);
    if (!Number.isFinite(spec.timeoutMs) || spec.timeoutMs <= 0) throw invalidArgument('timeoutMs', 'must be positive');
    const deadline = Date.now() + spec.timeoutMs;
    const ifaceName = ifaceNameFor(spec.initiatorIqn);
    const requested = spec.sessionParams ?? {};
    const existing = this.findOwnSession(await this.listParsed(signal), spec, ifaceName);
    if (existing) {
      return {
        session: await this.useExistingSession(existing, spec, deadline, signal),
        alreadyLoggedIn: true,
        sessionParamsApplied: {},
        // A session's keys are negotiated once, at its login; the node record is not rewritten under it.
        sessionParamsDetail:
          setIscsiSessionParams(requested).length > 0 ? `session ${existing.sid} already existed: it keeps what it negotiated at its login (log out and in again to change it)` : '',
      };
    }

    const what = `login of ${spec.initiatorIqn} to ${spec.targetIqn} at ${formatPortal(spec.host, spec.port)}`;
    let loginOfOthers = false;
    try {
      await this.writeNodeRecord(spec, ifaceName, signal);
      const remainingMs = Math.max(1_000, deadline - Date.now());
      const login = await this.iscsiadm([...this.nodeArgs(spec, ifaceName), '--login'], {
        okExitCodes: [0, ISCSI_EXIT.SESS_EXISTS],
        timeoutMs: remainingMs,
        signal,
      });
      // 15: a session appeared between our look and our login (a concurrent caller):
      // it is not ours to log out if the rest fails.
      loginOfOthers = login.exitCode === ISCSI_EXIT.SESS_EXISTS;
      const found = await this.waitForDisk(spec, ifaceName, deadline, signal);
      return {
        session: await this.toSessionInfo(found.session, found.lun),
        alreadyLoggedIn: loginOfOthers,
        sessionParamsApplied: loginOfOthers ? {} : requested,
        sessionParamsDetail: loginOfOthers && setIscsiSessionParams(requested).length > 0 ? 'another login made the session first: it has what that login proposed' : '',
      };
    } catch (err) {
      const failure = this.explain(err, what);
      if (loginOfOthers) throw failure;
      const leftovers = await this.removeNode(spec, ifaceName);
      if (leftovers.length === 0) throw failure;
      throw new VcstorError(failure.code, `${failure.message}; cleanup incomplete, left behind: ${leftovers.join('; ')}`, {
        cause: failure,
        retryable: failure.retryable,
      });
    }
  }

  /**
   * Log `initiatorIqn` out of the target at that portal and delete the node record.
   * The whole session goes: every LUN of that target seen through this initiator loses
   * its disk, not only `lun`. Idempotent: no session (iscsiadm 21) returns false, and a
   * missing node record is fine.
   * @throws VcstorError UNAVAILABLE (iscsid down, target not connected), INTERNAL
   *   (iscsiadm failed otherwise), CANCELLED, INVALID_ARGUMENT.
   */
  async logout(target: { host: string; port: number; targetIqn: string; lun: number; initiatorIqn: string }, signal: AbortSignal): Promise<boolean> {
    validateTarget(target);
    const ifaceName = ifaceNameFor(target.initiatorIqn);
    const what = `logout of ${target.initiatorIqn} from ${target.targetIqn} at ${formatPortal(target.host, target.port)}`;
    try {
      const result = await this.iscsiadm([...this.nodeArgs(target, ifaceName), '--logout'], {
        okExitCodes: [0, ISCSI_EXIT.NO_OBJS_FOUND],
        signal,
      });
      await this.iscsiadm([...this.nodeArgs(target, ifaceName), '-o', 'delete'], { okExitCodes: [0, ISCSI_EXIT.NO_OBJS_FOUND], signal });
      return result.exitCode === 0;
    } catch (err) {
      throw this.explain(err, what);
    }
  }

  /**
   * Every session of the host, one entry per LUN with a disk (a session with no disk at
   * all gives one entry with lun -1). A session whose state is not LOGGED_IN, or that
   * has no disk, or whose disk is not running is 'broken' (devicePath ''); one whose
   * state iscsiadm could not read is 'uncertain'. Read-only.
   * @throws VcstorError UNAVAILABLE (iscsid down), INTERNAL, CANCELLED.
   */
  async list(signal: AbortSignal): Promise<IscsiSessionInfo[]> {
    const infos: IscsiSessionInfo[] = [];
    for (const session of await this.listParsed(signal)) {
      const disks = session.luns.filter((lun) => lun.disk !== '');
      if (disks.length === 0) {
        infos.push(await this.toSessionInfo(session, undefined));
        continue;
      }
      for (const lun of disks) infos.push(await this.toSessionInfo(session, lun));
    }
    return infos;
  }

  /** The sessions as iscsiadm prints them; none is exit 21 ("No active sessions."). */
  private async listParsed(signal: AbortSignal): Promise<ParsedIscsiSession[]> {
    try {
      const result = await this.iscsiadm(['-m', 'session', '-P', '3'], { okExitCodes: [0, ISCSI_EXIT.NO_OBJS_FOUND], signal });
      return result.exitCode === ISCSI_EXIT.NO_OBJS_FOUND ? [] : parseIscsiSessionTree(result.stdout);
    } catch (err) {
      throw this.explain(err, 'listing iSCSI sessions');
    }
  }

  /**
   * This initiator's session to that target and portal: through its own iface record,
   * and where iscsiadm prints an initiator name, that name.
   */
  private findOwnSession(sessions: readonly ParsedIscsiSession[], target: LoginTarget, ifaceName: string): ParsedIscsiSession | undefined {
    return sessions.find(
      (s) =>
        sameIqn(s.targetIqn, target.targetIqn) &&
        sameHost(s.host, target.host) &&
        s.port === target.port &&
        s.ifaceName === ifaceName &&
        (s.initiatorIqn === '' || sameIqn(s.initiatorIqn, target.initiatorIqn)),
    );
  }

  /**
   * A session of this initiator exists: return its disk for the LUN, or rescan it when
   * the LUN has no disk yet (a LUN added after the login). A session that is not logged
   * in is iscsid's to recover: a second login would only get "session exists".
   */
  private async useExistingSession(session: ParsedIscsiSession, spec: IscsiLoginSpec, deadline: number, signal: AbortSignal): Promise<IscsiSessionInfo> {
    if (session.sessionState !== 'LOGGED_IN') {
      throw new VcstorError(
        'UNAVAILABLE',
        `session ${session.sid} of ${spec.initiatorIqn} to ${spec.targetIqn} at ${formatPortal(spec.host, spec.port)} is ${session.sessionState || 'Unknown'} ` +
          `(connection ${session.connectionState || 'Unknown'}, iscsid ${session.internalState || 'Unknown'}): iscsid is recovering it; wait, or log out and log in again`,
      );
    }
    const lun = lunOf(session, spec.lun);
    if (lun && (await this.exists(path.join(this.devDir, lun.disk)))) {
      const info = await this.toSessionInfo(session, lun);
      // The disk is there but the SCSI layer took it offline: handing it out would only
      // move the I/O errors to the caller.
      if (info.state === 'broken') {
        throw new VcstorError('UNAVAILABLE', `LUN ${spec.lun} of ${spec.targetIqn} for ${spec.initiatorIqn} is not usable: ${info.detail}; log out and log in again`);
      }
      return info;
    }
    try {
      await this.iscsiadm(['-m', 'session', '-r', String(session.sid), '--rescan'], { signal });
      const found = await this.waitForDisk(spec, session.ifaceName, deadline, signal);
      return await this.toSessionInfo(found.session, found.lun);
    } catch (err) {
      // The session was there before this call and may carry other LUNs: left as it is.
      throw this.explain(err, `rescan of session ${session.sid} for LUN ${spec.lun} of ${spec.targetIqn}`);
    }
  }

  /**
   * The iface record of the initiator and the node record of target, portal and iface,
   * written whole every time so a record left by an earlier run cannot keep stale CHAP.
   */
  private async writeNodeRecord(spec: IscsiLoginSpec, ifaceName: string, signal: AbortSignal): Promise<void> {
    // An iface a live session uses refuses new and update with 15; its initiator name is
    // then the one set when that session was made (the name is derived from it).
    const ifaceArgs = ['-m', 'iface', '-I', ifaceName];
    await this.iscsiadm([...ifaceArgs, '-o', 'new'], { okExitCodes: [0, ISCSI_EXIT.SESS_EXISTS], signal });
    await this.iscsiadm([...ifaceArgs, '-o', 'update', '-n', 'iface.initiatorname', '-v', spec.initiatorIqn], {
      okExitCodes: [0, ISCSI_EXIT.SESS_EXISTS],
      signal,
    });
    const nodeArgs = this.nodeArgs(spec, ifaceName);
    await this.iscsiadm([...nodeArgs, '-o', 'new'], { signal });
    const update = (name: string, value: string, sensitive: readonly string[] = []) =>
      this.iscsiadm([...nodeArgs, '-o', 'update', '-n', name, '-v', value], { signal, sensitive });
    const chap = spec.chap;
    // Set both ways: the record starts from iscsid.conf, which may name other defaults.
    await update('node.session.auth.authmethod', chap ? 'CHAP' : 'None');
    if (chap) {
      await update('node.session.auth.username', chap.username);
      await update('node.session.auth.password', chap.password, [chap.password]);
      if (chap.mutualUsername !== undefined && chap.mutualPassword !== undefined) {
        await update('node.session.auth.username_in', chap.mutualUsername);
        await update('node.session.auth.password_in', chap.mutualPassword, [chap.mutualPassword]);
      }
    }
    await update('node.conn[0].iscsi.HeaderDigest', spec.headerDigest ? 'CRC32C' : 'None');
    // Only the keys asked for: the others stay as iscsid.conf made the record.
    for (const { key, value } of setIscsiSessionParams(spec.sessionParams ?? {})) {
      await update(OPEN_ISCSI_NODE_SETTINGS[key.name], formatIscsiValue(value));
    }
  }

  /**
   * Wait for the LUN's disk: udev's by-path link is the sign that the disk is ready,
   * and the session listing says which disk is this initiator's. Two initiators on one
   * host logged in to the same LUN share one by-path name, so the link alone could name
   * the other initiator's disk.
   */
  private async waitForDisk(
    spec: LoginTarget,
    ifaceName: string,
    deadline: number,
    signal: AbortSignal,
  ): Promise<{ session: ParsedIscsiSession; lun: ParsedIscsiLun }> {
    // A named LUN has a known udev link to wait for; "the first data LUN" (0) is found in
    // the session's own listing.
    const link = spec.lun === 0 ? undefined : path.join(this.devDir, 'disk', 'by-path', byPathName(spec.host, spec.port, spec.targetIqn, spec.lun));
    const what = link ?? `the first data LUN of ${spec.targetIqn}`;
    for (;;) {
      if (signal.aborted) throw cancelled(`waiting for ${what}`);
      if (!link || (await this.exists(link))) {
        const session = this.findOwnSession(await this.listParsed(signal), spec, ifaceName);
        const lun = session ? lunOf(session, spec.lun) : undefined;
        if (session && lun && (await this.exists(path.join(this.devDir, lun.disk)))) return { session, lun };
      }
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) {
        throw new VcstorError('DEADLINE_EXCEEDED', `the disk of ${link ? `LUN ${spec.lun} (${link})` : what} did not appear within the login timeout`);
      }
      try {
        await sleep(Math.min(DEVICE_POLL_MS, remainingMs), undefined, { signal });
      } catch {
        throw cancelled(`waiting for ${what}`);
      }
    }
  }

  /**
   * Best-effort removal of what a failed login made: the session (if it came up) and the
   * node record. Runs without the caller's signal: a cancelled login must not leave a
   * half-made session. The iface record stays; other targets of the initiator use it.
   * @returns what could not be removed, empty when all went.
   */
  private async removeNode(target: LoginTarget, ifaceName: string): Promise<string[]> {
    const leftovers: string[] = [];
    const nodeArgs = this.nodeArgs(target, ifaceName);
    for (const [step, args] of [
      ['session', [...nodeArgs, '--logout']],
      ['node record', [...nodeArgs, '-o', 'delete']],
    ] as const) {
      try {
        await this.iscsiadm(args, { okExitCodes: [0, ISCSI_EXIT.NO_OBJS_FOUND], timeoutMs: CLEANUP_TIMEOUT_MS });
      } catch (err) {
        leftovers.push(`${step} (${err instanceof Error ? err.message : String(err)})`);
      }
    }
    return leftovers;
  }

  private nodeArgs(target: LoginTarget, ifaceName: string): string[] {
    return ['-m', 'node', '-T', target.targetIqn, '-p', formatPortal(target.host, target.port), '-I', ifaceName];
  }

  private async toSessionInfo(session: ParsedIscsiSession, lun: ParsedIscsiLun | undefined): Promise<IscsiSessionInfo> {
    const health = lunHealth(session, lun);
    const usable = health.state !== 'broken' && lun !== undefined && lun.disk !== '';
    return {
      host: session.host,
      port: session.port,
      targetIqn: session.targetIqn,
      lun: lun?.lun ?? -1,
      initiatorIqn: session.initiatorIqn,
      devicePath: usable ? path.join(this.devDir, lun.disk) : '',
      sizeBytes: usable ? await this.sizeBytes(lun.disk) : 0,
      state: health.state,
      detail: health.detail,
      ...(Object.keys(session.negotiated).length > 0
        ? { negotiated: session.negotiated }
        : { negotiatedDetail: 'iscsiadm printed no "Negotiated iSCSI params" for this session' }),
    };
  }

  /** The disk's size from sysfs (512-byte sectors whatever the logical block size); 0 if unreadable. */
  private async sizeBytes(disk: string): Promise<number> {
    try {
      const sectors = Number((await readFile(path.join(this.sysDir, 'class', 'block', disk, 'size'), 'utf8')).trim());
      return Number.isFinite(sectors) ? sectors * 512 : 0;
    } catch {
      return 0;
    }
  }

  private async exists(file: string): Promise<boolean> {
    try {
      await access(file);
      return true;
    } catch {
      return false;
    }
  }

  private iscsiadm(args: readonly string[], options: RunOptions): Promise<CommandResult> {
    return this.runner.run('iscsiadm', args, { timeoutMs: DATABASE_TIMEOUT_MS, ...options });
  }

  /** A failure as a VcstorError: iscsiadm's exit code read through its table. */
  private explain(err: unknown, what: string): VcstorError {
    if (err instanceof CommandError && err.code === 'INTERNAL' && err.exitCode !== undefined) {
      const known = EXIT_MEANING.get(err.exitCode);
      const said = err.stderr.trim().split('\n').filter((l) => l.trim() !== '').slice(-2).join(' | ');
      const meaning = known?.meaning ?? 'iscsiadm failed';
      return new VcstorError(known?.code ?? 'INTERNAL', `${what} failed: ${meaning} (iscsiadm exit ${err.exitCode}${said ? `: ${said}` : ''})`, { cause: err });
    }
    if (err instanceof VcstorError) return err;
    return new VcstorError('INTERNAL', `${what} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}
