import { iscsiSessionParamsFromPairs, type IscsiSessionParamValues } from '../common/iscsi-params.js';
import type { IscsiSessionHealth } from './types.js';

/**
 * The session tree `iscsiadm -m session -P 3` prints, parsed, and what it says about a
 * session's health and its disks. Pure functions, unit-tested on captured outputs.
 */

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
export function lunHealth(session: ParsedIscsiSession, lun: ParsedIscsiLun | undefined): { state: IscsiSessionHealth; detail: string } {
  const sessionState = session.sessionState || 'Unknown';
  const states = `session ${sessionState}, connection ${session.connectionState || 'Unknown'}, iscsid ${session.internalState || 'Unknown'}`;
  if (sessionState === 'Unknown') return { state: 'uncertain', detail: `iscsiadm could not read the session state (${states})` };
  if (sessionState !== 'LOGGED_IN') return { state: 'broken', detail: `${states}${lun?.disk ? `; disk ${lun.disk} is ${lun.diskState}` : ''}` };
  if (!lun || lun.disk === '') return { state: 'broken', detail: `logged in but no disk is attached (${states})` };
  if (lun.diskState === 'running') return { state: 'logged-in', detail: '' };
  if (lun.diskState === 'Unknown' || lun.diskState === '') return { state: 'uncertain', detail: `disk ${lun.disk} state unknown` };
  return { state: 'broken', detail: `disk ${lun.disk} is ${lun.diskState}` };
}

/** The same host: case aside, brackets around an IPv6 address aside. */
export function sameHost(a: string, b: string): boolean {
  return a.replace(/^\[(.*)\]$/, '$1').toLowerCase() === b.replace(/^\[(.*)\]$/, '$1').toLowerCase();
}

/** The same iSCSI name: they compare case-insensitively. */
export function sameIqn(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}
