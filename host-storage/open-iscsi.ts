import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VcstorError, invalidArgument } from '../common/errors.js';
import { formatIscsiValue, setIscsiSessionParams } from '../common/iscsi-params.js';
import type { CommandResult, CommandRunner, RunOptions } from '../common/runner.js';
import { explainIscsiadmFailure, formatPortal, ifaceNameFor, ISCSI_EXIT, OPEN_ISCSI_NODE_SETTINGS, validateTarget, type LoginTarget } from './iscsiadm.js';
import { byPathName, lunHealth, lunOf, parseIscsiSessionTree, sameHost, sameIqn, type ParsedIscsiLun, type ParsedIscsiSession } from './iscsi-session-tree.js';
import type { IscsiInitiatorDriver, IscsiLoginResult, IscsiLoginSpec, IscsiSessionInfo } from './types.js';

export { formatPortal, ifaceNameFor, ISCSI_EXIT, OPEN_ISCSI_NODE_SETTINGS } from './iscsiadm.js';
export { byPathName, lunOf, parseIscsiSessionTree, type ParsedIscsiLun, type ParsedIscsiSession } from './iscsi-session-tree.js';

/**
 * The kernel iSCSI initiator (open-iscsi: iscsid and iscsiadm). Every initiator IQN gets
 * an iscsiadm interface record of its own ("vcstor-<hash>"), so two IQNs on one host
 * hold two sessions to the same target, each with its own disks. Node records are made
 * with `-o new` and removed on logout, so the node database holds only what is in use.
 */

/** Node record settings are local file edits: quick unless iscsid hangs. */
const DATABASE_TIMEOUT_MS = 30_000;
/** How often the device of a new session is looked for. */
const DEVICE_POLL_MS = 200;
/** Cleanup after a failed login runs even when the caller cancelled, each step this long at most. */
const CLEANUP_TIMEOUT_MS = 30_000;

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
      const failure = explainIscsiadmFailure(err, what);
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
      throw explainIscsiadmFailure(err, what);
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
      throw explainIscsiadmFailure(err, 'listing iSCSI sessions');
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
      throw explainIscsiadmFailure(err, `rescan of session ${session.sid} for LUN ${spec.lun} of ${spec.targetIqn}`);
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
}
