import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import { VcstorError } from '../../common/errors.js';
import { formatIscsiValue, iscsiSessionParamsFromPairs, ISCSI_SESSION_KEYS, parseKeyValueLines, type IscsiSessionParamValues } from '../../common/iscsi-params.js';
import { SerialQueue } from '../../common/locks.js';
import { CommandError, type CommandRunner } from '../../common/runner.js';
import type { ChapCredentials, IscsiExportSpec, IscsiTargetDriver, IscsiTargetState } from './types.js';

/** One target as `tgtadm --mode target --op show` prints it. */
export interface TgtShowTarget {
  tid: number;
  iqn: string;
  luns: Array<{ lun: number; type: string; backingPath: string }>;
  accounts: Array<{ user: string; outgoing: boolean }>;
  /** ACL entries: "ALL", addresses and initiator names, as tgt lists them. */
  acl: string[];
  sessions: Array<{ initiatorIqn: string; address: string }>;
}

/** Parse `tgtadm --lld iscsi --mode target --op show`. */
export function parseTgtShow(text: string): TgtShowTarget[] {
  const targets: TgtShowTarget[] = [];
  let target: TgtShowTarget | undefined;
  let section = '';
  let lun: TgtShowTarget['luns'][number] | undefined;
  let session: TgtShowTarget['sessions'][number] | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const head = /^Target (\d+): (\S+)$/.exec(raw);
    if (head) {
      target = { tid: Number(head[1]), iqn: head[2]!, luns: [], accounts: [], acl: [], sessions: [] };
      targets.push(target);
      section = '';
      continue;
    }
    if (!target || line === '') continue;
    if (/^(System|I_T nexus|LUN|Account|ACL) information:$/.test(line)) {
      section = line.split(' ')[0]!;
      continue;
    }
    if (section === 'I_T') {
      const initiator = /^Initiator: (\S+)/.exec(line);
      if (initiator) {
        session = { initiatorIqn: initiator[1]!, address: '' };
        target.sessions.push(session);
      }
      const ip = /^IP Address: (\S+)$/.exec(line);
      if (ip && session) session.address = ip[1]!;
    } else if (section === 'LUN') {
      const number = /^LUN: (\d+)$/.exec(line);
      if (number) {
        lun = { lun: Number(number[1]), type: '', backingPath: '' };
        target.luns.push(lun);
      }
      const type = /^Type: (\S+)$/.exec(line);
      if (type && lun) lun.type = type[1]!;
      const backing = /^Backing store path: (.*)$/.exec(line);
      if (backing && lun) lun.backingPath = backing[1] === 'None' ? '' : backing[1]!;
    } else if (section === 'Account') {
      const outgoing = / \(outgoing\)$/.test(line);
      target.accounts.push({ user: line.replace(/ \(outgoing\)$/, ''), outgoing });
    } else if (section === 'ACL') {
      target.acl.push(line);
    }
  }
  return targets;
}

/** Parse `tgtadm --lld iscsi --mode account --op show`. */
export function parseTgtAccounts(text: string): string[] {
  return text
    .split('\n')
    .slice(1)
    .map((l) => l.trim())
    .filter(Boolean);
}

const isAddressAcl = (entry: string) => isIP(entry.split('/')[0] ?? '') !== 0;

/**
 * tgt's aio backing store takes one kernel AIO context of 128 events per LUN
 * (AIO_MAX_IODEPTH in tgt's bs_aio.c), counted against the machine-wide fs.aio-max-nr.
 */
export const TGT_AIO_EVENTS_PER_LUN = 128;

/** The machine's AIO event budget: fs.aio-nr (in use, by every process) and fs.aio-max-nr. */
export interface AioBudget {
  inUse: number;
  max: number;
}

export async function readAioBudget(procSysFs = '/proc/sys/fs'): Promise<AioBudget> {
  const read = async (name: string) => Number((await readFile(path.join(procSysFs, name), 'utf8')).trim());
  const [inUse, max] = await Promise.all([read('aio-nr'), read('aio-max-nr')]);
  return { inUse, max };
}

/** What tgtadm prints, exiting 0, when tgtd dropped the request without an answer. */
const CLOSED_SOCKET = /tgtd closed the socket/;

/**
 * What a new tgt target offers (tgt's iscsi_target_create, unchanged from 1.0.x to
 * 1.0.85): the values "the driver's default" means for tgt, and what a fresh target
 * is compared with before any `--op update`.
 */
export const TGT_DEFAULT_SESSION_PARAMS: Readonly<Required<IscsiSessionParamValues>> = {
  initialR2T: true,
  immediateData: true,
  maxRecvDataSegmentLength: 8192,
  maxBurstLength: 262_144,
  firstBurstLength: 65_536,
  maxOutstandingR2T: 1,
};

/**
 * Why the tgt driver reports no negotiated values per session. Checked against tgtd
 * 1.0.85 with a session logged in: `tgtadm --mode session --op show --tid N --sid
 * <TSIH>` exits 22 "invalid request" (tgtd's session_mgmt() hands every op but stats
 * to the driver's update(), which refuses a show, so iscsi_target_show_session() is
 * unreachable), `--mode conn --op show` lists initiator and address only, and `--mode
 * session --op stat` only I/O counters. The login reply the initiator received is the
 * record of what was negotiated: IscsiSession.negotiated on the initiator's side.
 */
export const TGT_NEGOTIATED_DETAIL =
  "tgtd cannot show a session's negotiated parameters (tgtadm --mode session --op show is refused by tgtd 1.0.85); read them from the initiator (IscsiSession.negotiated); the target's offer is IscsiTarget.session_params";

/** Parse `tgtadm --lld iscsi --mode target --op show --tid N`: the target's Key=Value parameters. */
export function parseTgtTargetParams(text: string): Required<IscsiSessionParamValues> | undefined {
  const values = iscsiSessionParamsFromPairs(parseKeyValueLines(text));
  // A target with a redirect shows Redirect* keys instead of its parameters.
  return ISCSI_SESSION_KEYS.every((k) => values[k.name] !== undefined) ? (values as Required<IscsiSessionParamValues>) : undefined;
}

const emptyTarget = (tid: number, iqn: string): TgtShowTarget => ({ tid, iqn, luns: [], accounts: [], acl: [], sessions: [] });

/**
 * tgt, the user-space iSCSI target, driven with tgtadm on tgtd's control port (`-C`).
 * tgt allows an initiator whose IQN *or* address is on a target's ACL. CHAP accounts
 * are global in tgtd; a target binds them (incoming, and one outgoing for mutual CHAP).
 * tgtadm takes passwords only on its command line: they are masked in logs and errors.
 *
 * Concurrency: tgtd allocates no tids (the caller picks them), so choosing a tid and
 * creating the target happen one at a time; CHAP accounts are global, so account
 * changes happen one at a time too. A new target's LUN and ACL are its own and are made
 * outside both queues. The driver keeps tgtd's targets in memory between calls so that
 * an export does not list every target (1 KB of `show` output per target: O(N) per
 * export); the copy is re-read from tgtd whenever it may be stale (an existing target is
 * re-applied or removed, a tid clashes, a command fails, the targets are listed), and it
 * only ever picks a tid for `target new`, which tgtd refuses when the tid is taken.
 */
export class TgtIscsiTarget implements IscsiTargetDriver {
  readonly driver = 'tgt' as const;
  readonly defaultLun = 1;
  /** Target creation (tid choice + `target new`) and removal, one at a time. */
  private readonly queue = new SerialQueue();
  /** Changes to the global CHAP accounts, one at a time. */
  private readonly accountQueue = new SerialQueue();
  /** tgtd's targets by IQN as last read or changed by this driver; undefined = read them. */
  private known: Map<string, TgtShowTarget> | undefined;
  /** tgtd's CHAP accounts as last read or changed; undefined = read them. */
  private knownAccounts: Set<string> | undefined;

  constructor(
    private readonly options: {
      runner: CommandRunner;
      controlPort: number;
      portal?: string;
      backingStoreType?: 'aio' | 'rdwr';
      /** The machine's AIO budget; the default reads /proc/sys/fs (tests inject a small one). */
      aioBudget?: () => Promise<AioBudget>;
    },
  ) {}

  portals(): string[] {
    return this.options.portal ? [this.options.portal] : [];
  }

  private tgtadm(args: string[], signal: AbortSignal, sensitive: string[] = []) {
    return this.options.runner
      .run('tgtadm', ['-C', String(this.options.controlPort), '--lld', 'iscsi', ...args], { signal, sensitive, timeoutMs: 30_000 })
      .then((result) => {
        // tgtd 1.0.85 can drop a request and close the control connection without an
        // answer; tgtadm then exits 0. The change may or may not have been made, so it
        // is a failure, and what we know of tgtd's state is no longer trusted.
        if (CLOSED_SOCKET.test(result.stdout) || CLOSED_SOCKET.test(result.stderr)) {
          throw new VcstorError(
            'UNAVAILABLE',
            `tgtd on control port ${this.options.controlPort} closed the control connection without answering \`${args.filter((a) => !sensitive.includes(a)).join(' ')}\`; its control channel may be broken (see tgtd's log); restart tgtd and the agent re-applies its exports`,
          );
        }
        return result;
      })
      .catch((err: unknown) => {
        this.forget();
        // tgtadm exits 107 when tgtd is not running on that control port.
        if (err instanceof CommandError && /can't send the request|Transport endpoint|connect/i.test(err.stderr)) {
          throw new VcstorError('UNAVAILABLE', `tgtd is not running on control port ${this.options.controlPort}`, { cause: err });
        }
        throw err;
      });
  }

  /** Drop the in-memory copy of tgtd's state: the next change reads it again. */
  private forget(): void {
    this.known = undefined;
    this.knownAccounts = undefined;
  }

  /** Run target creations and removals one at a time (tid allocation reads, then writes). */
  private serial<T>(work: () => Promise<T>): Promise<T> {
    return this.queue.run(work);
  }

  private serialAccounts<T>(work: () => Promise<T>): Promise<T> {
    return this.accountQueue.run(work);
  }

  async show(signal: AbortSignal): Promise<TgtShowTarget[]> {
    const targets = parseTgtShow((await this.tgtadm(['--mode', 'target', '--op', 'show'], signal)).stdout);
    this.known = new Map(targets.map((t) => [t.iqn, t]));
    // Accounts are re-read with the targets: a restarted tgtd has lost both.
    this.knownAccounts = undefined;
    return targets;
  }

  /** Read tgtd's targets into the known copy, and return it. */
  private async refresh(signal: AbortSignal): Promise<Map<string, TgtShowTarget>> {
    const known = new Map((await this.show(signal)).map((t) => [t.iqn, t]));
    this.known = known;
    return known;
  }

  async listTargets(signal: AbortSignal): Promise<IscsiTargetState[]> {
    return (await this.show(signal)).map((t) => ({
      iqn: t.iqn,
      luns: t.luns.filter((l) => l.type !== 'controller').map((l) => ({ lun: l.lun, backingPath: l.backingPath })),
      allowedInitiators: t.acl.filter((e) => e !== 'ALL' && !isAddressAcl(e)),
      allowedAddresses: t.acl.filter(isAddressAcl),
      allowAnyInitiator: t.acl.includes('ALL'),
      chapUsers: t.accounts.filter((a) => !a.outgoing).map((a) => a.user),
      ...(t.accounts.find((a) => a.outgoing) ? { mutualChapUser: t.accounts.find((a) => a.outgoing)!.user } : {}),
      sessions: t.sessions.map((session) => ({ ...session, negotiatedDetail: TGT_NEGOTIATED_DETAIL })),
    }));
  }

  async readSessionParams(iqn: string, signal: AbortSignal): Promise<Required<IscsiSessionParamValues> | undefined> {
    const target = this.known?.get(iqn) ?? (await this.refresh(signal)).get(iqn);
    if (!target) return undefined;
    return this.targetParams(target.tid, signal);
  }

  private async targetParams(tid: number, signal: AbortSignal): Promise<Required<IscsiSessionParamValues>> {
    const text = (await this.tgtadm(['--mode', 'target', '--op', 'show', '--tid', String(tid)], signal)).stdout;
    const params = parseTgtTargetParams(text);
    if (!params) throw new VcstorError('INTERNAL', `tgtadm --op show --tid ${tid} printed no session parameters (a redirected target?): ${text.slice(0, 200)}`);
    return params;
  }

  /**
   * An aio LUN needs an AIO context; when io_setup fails, tgtd 1.0.85's error path
   * closes fd 0 and deletes a control-socket event that is not its own, after which
   * it drops control requests (tgtadm: "tgtd closed the socket", exit 0) while some of
   * them take effect. So the budget is checked here, before tgtd is asked.
   */
  private async checkAioBudget(): Promise<void> {
    const budget = await (this.options.aioBudget ?? (() => readAioBudget()))();
    if (budget.inUse + TGT_AIO_EVENTS_PER_LUN <= budget.max) return;
    const needed = Math.max(1_048_576, budget.max * 2);
    throw new VcstorError(
      'RESOURCE_EXHAUSTED',
      `no kernel AIO context left for another tgt aio LUN: fs.aio-nr is ${budget.inUse} of fs.aio-max-nr ${budget.max} (machine-wide; each aio LUN takes ${TGT_AIO_EVENTS_PER_LUN}); raise it (sysctl -w fs.aio-max-nr=${needed}), remove unused exports, or set iscsiTarget.backingStoreType: rdwr`,
    );
  }

  ensureExport(spec: IscsiExportSpec, signal: AbortSignal): Promise<void> {
    const bstype = this.options.backingStoreType ?? 'aio';
    return this.serial(async () => {
      for (let attempt = 0; ; attempt++) {
        // An existing target is re-read from tgtd (a restarted tgtd or another tool may
        // have changed it); a new one gets the next tid after the known ones.
        const all = this.known && !this.known.has(spec.iqn) ? this.known : await this.refresh(signal);
        const existing = all.get(spec.iqn);
        if (existing) return { target: existing, created: false, all: [...all.values()] };
        if (bstype === 'aio') await this.checkAioBudget();
        const tid = Math.max(0, ...[...all.values()].map((t) => t.tid)) + 1;
        try {
          await this.tgtadm(['--mode', 'target', '--op', 'new', '--tid', String(tid), '--targetname', spec.iqn], signal);
        } catch (err) {
          // Our queue never picks a tid twice, so a clash means tgtd has a target we did
          // not know of (another tool made it, or tgtd restarted): tgtadm() dropped the
          // copy; read tgtd and decide again, once.
          if (attempt === 0 && err instanceof CommandError && /already exists/.test(err.stderr)) continue;
          throw err;
        }
        const target = emptyTarget(tid, spec.iqn);
        all.set(spec.iqn, target);
        return { target, created: true, all: [...all.values()] };
      }
    }).then(async ({ target, created, all }) => {
      try {
        await this.converge(target, created, all, spec, bstype, signal);
      } catch (err) {
        this.forget();
        throw err;
      }
    });
  }

  /** Make one target's LUN, ACL and CHAP match `spec` (the target exists). */
  private async converge(target: TgtShowTarget, created: boolean, all: TgtShowTarget[], spec: IscsiExportSpec, bstype: 'aio' | 'rdwr', signal: AbortSignal): Promise<void> {
    const tid = String(target.tid);
    const lun = target.luns.find((l) => l.lun === spec.lun);
    if (lun && lun.backingPath !== spec.backingPath) {
      await this.tgtadm(['--mode', 'logicalunit', '--op', 'delete', '--tid', tid, '--lun', String(spec.lun)], signal);
    }
    if (!lun || lun.backingPath !== spec.backingPath) {
      if (!created && bstype === 'aio') await this.checkAioBudget();
      await this.tgtadm(['--mode', 'logicalunit', '--op', 'new', '--tid', tid, '--lun', String(spec.lun), '--backing-store', spec.backingPath, '--bstype', bstype], signal);
      target.luns = [...target.luns.filter((l) => l.lun !== spec.lun), { lun: spec.lun, type: 'disk', backingPath: spec.backingPath }];
    }

    const wanted = spec.allowAnyInitiator ? ['ALL'] : [...spec.allowedAddresses, ...spec.allowedInitiators];
    const aclArgs = (entry: string) => (entry === 'ALL' || isAddressAcl(entry) ? ['--initiator-address', entry] : ['--initiator-name', entry]);
    for (const entry of wanted.filter((e) => !target.acl.includes(e))) {
      await this.tgtadm(['--mode', 'target', '--op', 'bind', '--tid', tid, ...aclArgs(entry)], signal);
    }
    for (const entry of target.acl.filter((e) => !wanted.includes(e))) {
      await this.tgtadm(['--mode', 'target', '--op', 'unbind', '--tid', tid, ...aclArgs(entry)], signal);
    }
    target.acl = [...wanted];

    await this.applySessionParams(target, created, spec.sessionParams ?? {}, signal);

    await this.serialAccounts(() => this.ensureChap(target, spec.chap, created, all, signal));
  }

  /**
   * Make the target offer `requested` over tgt's defaults: keys the request leaves out go
   * back to tgt's defaults, so a target re-applied from the agent's record never keeps a
   * value set by hand or by an earlier export. A new target is known to hold the
   * defaults; an existing one is read. tgtd copies a target's parameters into a session
   * at login, so an update reaches new sessions only (StorageServer refuses to change
   * the parameters of an existing export for that reason).
   */
  private async applySessionParams(target: TgtShowTarget, created: boolean, requested: IscsiSessionParamValues, signal: AbortSignal): Promise<void> {
    const wanted: Required<IscsiSessionParamValues> = { ...TGT_DEFAULT_SESSION_PARAMS, ...requested };
    const current = created ? TGT_DEFAULT_SESSION_PARAMS : await this.targetParams(target.tid, signal);
    for (const key of ISCSI_SESSION_KEYS.filter((k) => wanted[k.name] !== current[k.name])) {
      await this.tgtadm(['--mode', 'target', '--op', 'update', '--tid', String(target.tid), '--name', key.rfcKey, '--value', formatIscsiValue(wanted[key.name])], signal);
    }
  }

  /**
   * Runs in the account queue (every account change and bind does), and records what
   * it binds in `target`. The known copy only hints whether another target uses an
   * account: before an account is deleted, tgtd is read again, in this queue, so no
   * bind can be missed.
   */
  private async ensureChap(target: TgtShowTarget, chap: ChapCredentials | undefined, fresh: boolean, all: TgtShowTarget[], signal: AbortSignal): Promise<void> {
    const tid = String(target.tid);
    const accounts = this.knownAccounts ?? new Set(parseTgtAccounts((await this.tgtadm(['--mode', 'account', '--op', 'show'], signal)).stdout));
    this.knownAccounts = accounts;
    const ensureAccount = async (user: string, password: string) => {
      // tgtd cannot show a password; an account no other target uses is re-made so a
      // new export never inherits a stale password.
      if (accounts.has(user) && fresh && !(await this.boundElsewhere(user, target, all, signal))) {
        await this.tgtadm(['--mode', 'account', '--op', 'delete', '--user', user], signal);
        accounts.delete(user);
      }
      if (!accounts.has(user)) {
        await this.tgtadm(['--mode', 'account', '--op', 'new', '--user', user, '--password', password], signal, [password]);
        accounts.add(user);
      }
    };
    const incoming = chap ? [chap.username] : [];
    const outgoing = chap?.mutualUsername ? [chap.mutualUsername] : [];
    if (chap) await ensureAccount(chap.username, chap.password);
    if (chap?.mutualUsername && chap.mutualPassword) await ensureAccount(chap.mutualUsername, chap.mutualPassword);
    for (const user of incoming.filter((u) => !target.accounts.some((a) => a.user === u && !a.outgoing))) {
      await this.tgtadm(['--mode', 'account', '--op', 'bind', '--tid', tid, '--user', user], signal);
      target.accounts.push({ user, outgoing: false });
    }
    for (const user of outgoing.filter((u) => !target.accounts.some((a) => a.user === u && a.outgoing))) {
      await this.tgtadm(['--mode', 'account', '--op', 'bind', '--tid', tid, '--user', user, '--outgoing'], signal);
      target.accounts.push({ user, outgoing: true });
    }
    for (const account of target.accounts.filter((a) => !(a.outgoing ? outgoing : incoming).includes(a.user))) {
      await this.tgtadm(['--mode', 'account', '--op', 'unbind', '--tid', tid, '--user', account.user, ...(account.outgoing ? ['--outgoing'] : [])], signal);
      target.accounts = target.accounts.filter((a) => a !== account);
    }
  }

  /** Does a target other than `target` bind `user`? Yes from the known copy is final; no is checked with tgtd. */
  private async boundElsewhere(user: string, target: TgtShowTarget, all: TgtShowTarget[], signal: AbortSignal): Promise<boolean> {
    const uses = (targets: Iterable<TgtShowTarget>) => [...targets].some((t) => t.iqn !== target.iqn && t.accounts.some((a) => a.user === user));
    if (uses(this.known?.values() ?? all)) return true;
    const current = parseTgtShow((await this.tgtadm(['--mode', 'target', '--op', 'show'], signal)).stdout);
    return uses(current);
  }

  removeTarget(iqn: string, force: boolean, signal: AbortSignal): Promise<boolean> {
    return this.serial(async () => {
      // Always read tgtd: a delete names a tid, and after a tgtd restart the known copy
      // could give a tid that now belongs to another target.
      const targets = await this.show(signal);
      const target = targets.find((t) => t.iqn === iqn);
      if (!target) return false;
      if (target.sessions.length > 0 && !force) {
        const who = target.sessions.map((s) => `${s.initiatorIqn} (${s.address})`).join(', ');
        throw new VcstorError('FAILED_PRECONDITION', `target ${iqn} has initiators logged in: ${who}; log them out or set force`);
      }
      await this.deleteTarget(target, force, targets, signal);
      return true;
    });
  }

  /** Delete a target, then the CHAP accounts no other target uses (in the account queue). */
  private async deleteTarget(target: TgtShowTarget, force: boolean, all: TgtShowTarget[], signal: AbortSignal): Promise<void> {
    await this.tgtadm(['--mode', 'target', '--op', 'delete', ...(force ? ['--force'] : []), '--tid', String(target.tid)], signal);
    this.known?.delete(target.iqn);
    await this.serialAccounts(async () => {
      for (const account of target.accounts) {
        if (!(await this.boundElsewhere(account.user, target, all, signal))) {
          await this.tgtadm(['--mode', 'account', '--op', 'delete', '--user', account.user], signal).then(
            () => this.knownAccounts?.delete(account.user),
            () => undefined,
          );
        }
      }
    });
  }
}
