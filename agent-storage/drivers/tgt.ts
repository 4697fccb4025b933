import { isIP } from 'node:net';
import { VcstorError } from '../../common/errors.js';
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
 * tgt, the user-space iSCSI target, driven with tgtadm on tgtd's control port (`-C`).
 * tgt allows an initiator whose IQN *or* address is on a target's ACL. CHAP accounts
 * are global in tgtd; a target binds them (incoming, and one outgoing for mutual CHAP).
 * tgtadm takes passwords only on its command line: they are masked in logs and errors.
 */
export class TgtIscsiTarget implements IscsiTargetDriver {
  readonly driver = 'tgt' as const;
  readonly defaultLun = 1;
  /** tgtd allocates nothing itself (tids are ours), so changes are made one at a time. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly options: { runner: CommandRunner; controlPort: number; portal?: string; backingStoreType?: 'aio' | 'rdwr' },
  ) {}

  portals(): string[] {
    return this.options.portal ? [this.options.portal] : [];
  }

  private tgtadm(args: string[], signal: AbortSignal, sensitive: string[] = []) {
    return this.options.runner
      .run('tgtadm', ['-C', String(this.options.controlPort), '--lld', 'iscsi', ...args], { signal, sensitive, timeoutMs: 30_000 })
      .catch((err: unknown) => {
        // tgtadm exits 107 when tgtd is not running on that control port.
        if (err instanceof CommandError && /can't send the request|Transport endpoint|connect/i.test(err.stderr)) {
          throw new VcstorError('UNAVAILABLE', `tgtd is not running on control port ${this.options.controlPort}`, { cause: err });
        }
        throw err;
      });
  }

  /** Run changes one at a time (tid allocation reads, then writes). */
  private serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }

  async show(signal: AbortSignal): Promise<TgtShowTarget[]> {
    return parseTgtShow((await this.tgtadm(['--mode', 'target', '--op', 'show'], signal)).stdout);
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
      sessions: t.sessions,
    }));
  }

  ensureExport(spec: IscsiExportSpec, signal: AbortSignal): Promise<void> {
    return this.serial(async () => {
      const targets = await this.show(signal);
      let target = targets.find((t) => t.iqn === spec.iqn);
      const created = !target;
      if (!target) {
        const tid = Math.max(0, ...targets.map((t) => t.tid)) + 1;
        await this.tgtadm(['--mode', 'target', '--op', 'new', '--tid', String(tid), '--targetname', spec.iqn], signal);
        target = { tid, iqn: spec.iqn, luns: [], accounts: [], acl: [], sessions: [] };
      }
      const tid = String(target.tid);

      const lun = target.luns.find((l) => l.lun === spec.lun);
      if (lun && lun.backingPath !== spec.backingPath) {
        await this.tgtadm(['--mode', 'logicalunit', '--op', 'delete', '--tid', tid, '--lun', String(spec.lun)], signal);
      }
      if (!lun || lun.backingPath !== spec.backingPath) {
        const bstype = this.options.backingStoreType ?? 'aio';
        await this.tgtadm(['--mode', 'logicalunit', '--op', 'new', '--tid', tid, '--lun', String(spec.lun), '--backing-store', spec.backingPath, '--bstype', bstype], signal);
      }

      const wanted = spec.allowAnyInitiator ? ['ALL'] : [...spec.allowedAddresses, ...spec.allowedInitiators];
      const aclArgs = (entry: string) => (entry === 'ALL' || isAddressAcl(entry) ? ['--initiator-address', entry] : ['--initiator-name', entry]);
      for (const entry of wanted.filter((e) => !target!.acl.includes(e))) {
        await this.tgtadm(['--mode', 'target', '--op', 'bind', '--tid', tid, ...aclArgs(entry)], signal);
      }
      for (const entry of target.acl.filter((e) => !wanted.includes(e))) {
        await this.tgtadm(['--mode', 'target', '--op', 'unbind', '--tid', tid, ...aclArgs(entry)], signal);
      }

      await this.ensureChap(target, spec.chap, created, targets, signal);
    });
  }

  private async ensureChap(target: TgtShowTarget, chap: ChapCredentials | undefined, fresh: boolean, all: TgtShowTarget[], signal: AbortSignal): Promise<void> {
    const tid = String(target.tid);
    const accounts = parseTgtAccounts((await this.tgtadm(['--mode', 'account', '--op', 'show'], signal)).stdout);
    const boundElsewhere = (user: string) => all.some((t) => t.tid !== target.tid && t.accounts.some((a) => a.user === user));
    const ensureAccount = async (user: string, password: string) => {
      // tgtd cannot show a password; an account no other target uses is re-made so a
      // new export never inherits a stale password.
      if (accounts.includes(user) && fresh && !boundElsewhere(user)) {
        await this.tgtadm(['--mode', 'account', '--op', 'delete', '--user', user], signal);
        accounts.splice(accounts.indexOf(user), 1);
      }
      if (!accounts.includes(user)) {
        await this.tgtadm(['--mode', 'account', '--op', 'new', '--user', user, '--password', password], signal, [password]);
      }
    };
    const incoming = chap ? [chap.username] : [];
    const outgoing = chap?.mutualUsername ? [chap.mutualUsername] : [];
    if (chap) await ensureAccount(chap.username, chap.password);
    if (chap?.mutualUsername && chap.mutualPassword) await ensureAccount(chap.mutualUsername, chap.mutualPassword);
    for (const user of incoming.filter((u) => !target.accounts.some((a) => a.user === u && !a.outgoing))) {
      await this.tgtadm(['--mode', 'account', '--op', 'bind', '--tid', tid, '--user', user], signal);
    }
    for (const user of outgoing.filter((u) => !target.accounts.some((a) => a.user === u && a.outgoing))) {
      await this.tgtadm(['--mode', 'account', '--op', 'bind', '--tid', tid, '--user', user, '--outgoing'], signal);
    }
    for (const account of target.accounts.filter((a) => !(a.outgoing ? outgoing : incoming).includes(a.user))) {
      await this.tgtadm(['--mode', 'account', '--op', 'unbind', '--tid', tid, '--user', account.user, ...(account.outgoing ? ['--outgoing'] : [])], signal);
    }
  }

  removeTarget(iqn: string, force: boolean, signal: AbortSignal): Promise<boolean> {
    return this.serial(async () => {
      const targets = await this.show(signal);
      const target = targets.find((t) => t.iqn === iqn);
      if (!target) return false;
      if (target.sessions.length > 0 && !force) {
        const who = target.sessions.map((s) => `${s.initiatorIqn} (${s.address})`).join(', ');
        throw new VcstorError('FAILED_PRECONDITION', `target ${iqn} has initiators logged in: ${who}; log them out or set force`);
      }
      await this.tgtadm(['--mode', 'target', '--op', 'delete', ...(force ? ['--force'] : []), '--tid', String(target.tid)], signal);
      for (const account of target.accounts) {
        const usedElsewhere = targets.some((t) => t.tid !== target.tid && t.accounts.some((a) => a.user === account.user));
        if (!usedElsewhere) {
          await this.tgtadm(['--mode', 'account', '--op', 'delete', '--user', account.user], signal).catch(() => undefined);
        }
      }
      return true;
    });
  }
}
