import { VcstorError } from '../../common/errors.js';
import { iscsiSessionParamsFromPairs, ISCSI_SESSION_KEYS, type IscsiSessionParamValues } from '../../common/iscsi-params.js';
import { SerialQueue } from '../../common/locks.js';
import { CommandError, maskSensitive, type CommandRunner } from '../../common/runner.js';
import { validateIqn } from '../../common/validate.js';
import { LioConfigfs, statBackingKind } from './lio-configfs.js';
import { checkExportSpec, parsePortal, portalDirName, sessionsOf, toTargetState, type BackingKind, type LioExportSpec, type Portal, type TargetcliCommand } from './lio-model.js';
import { planAccess, planRemoval, planStructure } from './lio-plan.js';
import type { IscsiExportSpec, IscsiTargetDriver, IscsiTargetState } from './types.js';

export { parseLioDynamicSessions, parseLioSessionInfo } from './lio-configfs.js';
export { lioBackstoreName, type BackingKind, type LioSession } from './lio-model.js';

/**
 * LIO, the Linux kernel iSCSI target. Changes go through `targetcli` one-shot commands
 * (argument arrays, never a shell); the current state is read from LIO's configfs tree,
 * as rtslib and targetcli themselves read it. Every change is followed by a read-back
 * of configfs and `targetcli saveconfig` (Cinder's habit), because targetcli exits 0
 * after many failures it only logs, and because LIO forgets everything at reboot.
 */

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

const TARGETCLI = 'targetcli';
/** saveconfig rewrites the whole configuration; give it more than the quick commands need. */
const TARGETCLI_TIMEOUT_MS = 60_000;
const DEFAULT_PORTAL = '0.0.0.0:3260';
const DEFAULT_CONFIGFS_ROOT = '/sys/kernel/config/target';

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw new VcstorError('CANCELLED', 'the LIO operation was cancelled');
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
  private readonly configfs: LioConfigfs;
  private readonly backingKind: (backingPath: string) => Promise<BackingKind>;
  /** One targetcli conversation at a time. */
  private readonly changes = new SerialQueue();

  /** @throws VcstorError INVALID_ARGUMENT when `portal` is not "ip:port". */
  constructor(options: LioTargetOptions) {
    this.runner = options.runner;
    this.portal = parsePortal(options.portal ?? DEFAULT_PORTAL);
    this.configfs = new LioConfigfs(options.configfsRoot ?? DEFAULT_CONFIGFS_ROOT);
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
    await this.changes.run(() => this.converge(wanted, kind, signal));
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
    return this.changes.run(async () => {
      throwIfAborted(signal);
      const snapshot = await this.configfs.snapshot();
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
      await this.applyAndSave(signal, async () => {
        await this.runAll(planRemoval(targetIqn, snapshot), signal);
        if ((await this.configfs.snapshot()).targets.has(targetIqn)) {
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
    const snapshot = await this.configfs.snapshot();
    return [...snapshot.targets.values()]
      .sort((a, b) => a.iqn.localeCompare(b.iqn))
      .map((target) => toTargetState(target, snapshot));
  }

  /** The TPG's parameters from configfs (tpgt_1/param/<Key>); undefined without the target or any of the six files. */
  async readSessionParams(iqn: string, signal: AbortSignal): Promise<Required<IscsiSessionParamValues> | undefined> {
    throwIfAborted(signal);
    const tpg = (await this.configfs.snapshot()).targets.get(iqn.toLowerCase())?.tpg;
    if (!tpg) return undefined;
    const values = iscsiSessionParamsFromPairs(Object.entries(tpg.params).flatMap(([key, value]) => (value === undefined ? [] : [[key, value] as [string, string]])));
    return ISCSI_SESSION_KEYS.every((k) => values[k.name] !== undefined) ? (values as Required<IscsiSessionParamValues>) : undefined;
  }

  // --- converging ---

  private async converge(spec: LioExportSpec, kind: 'block' | 'file', signal: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    let snapshot = await this.configfs.snapshot();
    const structure = await planStructure(spec, kind, snapshot);
    const access = structure.length === 0 ? planAccess(spec, snapshot, this.portal) : undefined;
    if (structure.length === 0 && access?.length === 0) return;
    await this.applyAndSave(signal, async () => {
      if (structure.length > 0) {
        await this.runAll(structure, signal);
        // What targetcli made of a new target (its default portal, its attribute
        // defaults, the mapped LUNs) depends on its version and preferences: read it.
        snapshot = await this.configfs.snapshot();
      }
      await this.runAll(access ?? planAccess(spec, snapshot, this.portal), signal);
      snapshot = await this.configfs.snapshot();
      const remaining = [...(await planStructure(spec, kind, snapshot))];
      if (remaining.length === 0) remaining.push(...planAccess(spec, snapshot, this.portal));
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

}
