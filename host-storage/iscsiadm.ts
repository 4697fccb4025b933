import { createHash } from 'node:crypto';
import { VcstorError, invalidArgument, type ErrorCode } from '../common/errors.js';
import type { IscsiSessionParamName } from '../common/iscsi-params.js';
import { CommandError } from '../common/runner.js';
import type { IscsiLoginSpec } from './types.js';

/**
 * iscsiadm as the open-iscsi driver speaks it: its exit codes and what they mean to a
 * caller, the node record settings, the iface record names vcstor uses, and the checks
 * that keep a request's names and portal safe on its command line. Pure.
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

/** What names one session: target and portal, the LUN asked for, and the initiator. */
export type LoginTarget = Pick<IscsiLoginSpec, 'host' | 'port' | 'targetIqn' | 'lun' | 'initiatorIqn'>;

/**
 * Check a login or logout target before it reaches iscsiadm's command line.
 * @throws VcstorError INVALID_ARGUMENT naming the first bad field.
 */
export function validateTarget(target: LoginTarget): void {
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

/** A failure as a VcstorError: iscsiadm's exit code read through its table. */
export function explainIscsiadmFailure(err: unknown, what: string): VcstorError {
  if (err instanceof CommandError && err.code === 'INTERNAL' && err.exitCode !== undefined) {
    const known = EXIT_MEANING.get(err.exitCode);
    const said = err.stderr.trim().split('\n').filter((l) => l.trim() !== '').slice(-2).join(' | ');
    const meaning = known?.meaning ?? 'iscsiadm failed';
    return new VcstorError(known?.code ?? 'INTERNAL', `${what} failed: ${meaning} (iscsiadm exit ${err.exitCode}${said ? `: ${said}` : ''})`, { cause: err });
  }
  if (err instanceof VcstorError) return err;
  return new VcstorError('INTERNAL', `${what} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
