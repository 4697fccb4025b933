import type { ExportIscsiRequest__Output } from '../common/generated/vcstor/v1/ExportIscsiRequest.js';
import type { IscsiTarget } from '../common/generated/vcstor/v1/IscsiTarget.js';
import type { NfsClientRule__Output } from '../common/generated/vcstor/v1/NfsClientRule.js';
import type { NfsExport } from '../common/generated/vcstor/v1/NfsExport.js';
import { VcstorError } from '../common/errors.js';
import { iscsiSessionParamsFromProto, iscsiSessionParamsToProto, sameIscsiSessionParams, setIscsiSessionParams, type IscsiSessionParamValues } from '../common/iscsi-params.js';
import type { IscsiExportSpec, IscsiTargetDriver, IscsiTargetState, NfsClientSpec, NfsServerDriver, VolumeDriver, VolumeInfo } from './drivers/types.js';
import type { IscsiExportRecord, NfsExportRecord } from './state.js';

/**
 * What the storage agent's record means: the export a request asks for, the driver spec
 * of a record, whether two exports or a target and a spec agree, and how records look
 * through the API. Pure, except {@link requireVolume}, which asks the volume driver.
 */

/** "InitialR2T=Yes MaxBurstLength=65536", or "driver defaults". */
export const describeParams = (values: IscsiSessionParamValues | undefined) => {
  const set = setIscsiSessionParams(values ?? {});
  return set.length === 0 ? 'driver defaults' : set.map(({ key, value }) => `${key.rfcKey}=${typeof value === 'boolean' ? (value ? 'Yes' : 'No') : value}`).join(' ');
};

const sorted = (values: readonly string[]) => [...values].sort();
const sameList = (a: readonly string[], b: readonly string[]) => JSON.stringify(sorted(a)) === JSON.stringify(sorted(b));

/** The volume called `name`. @throws VcstorError NOT_FOUND when the pool has none. */
export async function requireVolume(volumes: VolumeDriver, name: string, signal: AbortSignal): Promise<VolumeInfo> {
  const volume = await volumes.get(name, signal);
  if (!volume) throw new VcstorError('NOT_FOUND', `no volume ${name} in pool ${volumes.pool}`);
  return volume;
}

/**
 * The record an ExportIscsi request asks for: the target named <iqnPrefix>:<volume>
 * unless the request names one, the driver's default LUN unless it gives one, lists
 * sorted, CHAP only with a user name, session parameters only when some are set.
 */
export function iscsiRecordOf(request: ExportIscsiRequest__Output, volume: VolumeInfo, iqnPrefix: string, defaultLun: number): IscsiExportRecord {
  const chap = request.chap && request.chap.username !== '' ? request.chap : undefined;
  const sessionParams = iscsiSessionParamsFromProto(request.sessionParams);
  return {
    state: 'active',
    volume: volume.name,
    pool: volume.pool,
    iqn: request.targetIqn || `${iqnPrefix}:${volume.name}`,
    lun: request.lun || defaultLun,
    allowedInitiators: sorted(request.allowedInitiators),
    allowedAddresses: sorted(request.allowedAddresses),
    allowAnyInitiator: request.allowAnyInitiator,
    ...(chap
      ? { chap: { username: chap.username, password: chap.password, ...(chap.mutualUsername ? { mutualUsername: chap.mutualUsername, mutualPassword: chap.mutualPassword } : {}) } }
      : {}),
    ...(setIscsiSessionParams(sessionParams).length > 0 ? { sessionParams } : {}),
    createdUnixMs: Date.now(),
  };
}

/** The target spec of a record, less its backing path. */
export function targetSpecOf(e: IscsiExportRecord): Omit<IscsiExportSpec, 'backingPath'> {
  return {
    iqn: e.iqn,
    lun: e.lun,
    allowedInitiators: e.allowedInitiators,
    allowedAddresses: e.allowedAddresses,
    allowAnyInitiator: e.allowAnyInitiator,
    ...(e.chap ? { chap: e.chap } : {}),
    ...(e.sessionParams ? { sessionParams: e.sessionParams } : {}),
  };
}

/** The same export: target, LUN, access, CHAP and session parameters. */
export function sameIscsiExport(a: IscsiExportRecord, b: IscsiExportRecord): boolean {
  return (
    a.iqn === b.iqn &&
    a.lun === b.lun &&
    a.allowAnyInitiator === b.allowAnyInitiator &&
    sameList(a.allowedInitiators, b.allowedInitiators) &&
    sameList(a.allowedAddresses, b.allowedAddresses) &&
    JSON.stringify(a.chap ?? null) === JSON.stringify(b.chap ?? null) &&
    sameIscsiSessionParams(a.sessionParams, b.sessionParams)
  );
}

/**
 * CHAP accounts are shared by the target server: a user name another export uses must
 * come with the same password.
 * @throws VcstorError FAILED_PRECONDITION when one comes with another.
 */
export function checkChapAccounts(exports: readonly IscsiExportRecord[], wanted: IscsiExportRecord): void {
  for (const user of [wanted.chap?.username, wanted.chap?.mutualUsername].filter((u): u is string => !!u)) {
    const other = exports.find((e) => e.chap && (e.chap.username === user || e.chap.mutualUsername === user));
    const password = user === wanted.chap?.username ? wanted.chap?.password : wanted.chap?.mutualPassword;
    const otherPassword = other?.chap?.username === user ? other.chap.password : other?.chap?.mutualPassword;
    if (other && otherPassword !== password) {
      throw new VcstorError('FAILED_PRECONDITION', `CHAP user ${user} is used by target ${other.iqn} with another password; CHAP accounts are shared by the target server`);
    }
  }
}

/** The state of a target ensureExport has just made from `spec`: exactly the spec, no session yet. */
export function newTargetState(spec: IscsiExportSpec): IscsiTargetState {
  return {
    iqn: spec.iqn,
    luns: [{ lun: spec.lun, backingPath: spec.backingPath }],
    allowedInitiators: spec.allowedInitiators,
    allowedAddresses: spec.allowedAddresses,
    allowAnyInitiator: spec.allowAnyInitiator,
    chapUsers: spec.chap ? [spec.chap.username] : [],
    ...(spec.chap?.mutualUsername ? { mutualChapUser: spec.chap.mutualUsername } : {}),
    sessions: [],
  };
}

/** Whether the target server's state of a target serves `spec` (session parameters aside). */
export function targetMatches(state: IscsiTargetState | undefined, spec: IscsiExportSpec): boolean {
  if (!state) return false;
  const lun = state.luns.find((l) => l.lun === spec.lun);
  return (
    lun?.backingPath === spec.backingPath &&
    state.allowAnyInitiator === spec.allowAnyInitiator &&
    sameList(state.allowedInitiators, spec.allowAnyInitiator ? [] : spec.allowedInitiators) &&
    sameList(state.allowedAddresses, spec.allowAnyInitiator ? [] : spec.allowedAddresses) &&
    sameList(state.chapUsers, spec.chap ? [spec.chap.username] : []) &&
    (state.mutualChapUser ?? '') === (spec.chap?.mutualUsername ?? '')
  );
}

/**
 * A target as the API shows it: the target server's state where it has the target, the
 * record's where not.
 * @param target the driver, for its portals and name.
 * @param offered the target's session parameters as read from the target server;
 *   without them, the export's requested ones are shown (absent keys unset).
 */
export function toIscsiTarget(
  target: Pick<IscsiTargetDriver, 'portals' | 'driver'>,
  state: IscsiTargetState | undefined,
  e: IscsiExportRecord | undefined,
  iqn: string,
  volumes: Map<string, VolumeInfo>,
  offered?: IscsiSessionParamValues,
): IscsiTarget {
  const sessionParams = offered ?? e?.sessionParams;
  return {
    iqn,
    luns: (state?.luns ?? []).map((l) => ({
      lun: l.lun,
      volume: e?.volume ?? '',
      backingPath: l.backingPath,
      sizeBytes: e ? (volumes.get(e.volume)?.sizeBytes ?? 0) : 0,
    })),
    allowedInitiators: state?.allowedInitiators ?? e?.allowedInitiators ?? [],
    allowedAddresses: state?.allowedAddresses ?? e?.allowedAddresses ?? [],
    allowAnyInitiator: state?.allowAnyInitiator ?? e?.allowAnyInitiator ?? false,
    chap: (state?.chapUsers.length ?? 0) > 0 || !!e?.chap,
    mutualChap: !!state?.mutualChapUser || !!e?.chap?.mutualUsername,
    chapUsername: e?.chap?.username ?? state?.chapUsers[0] ?? '',
    portals: target.portals(),
    sessions: (state?.sessions ?? []).map((s) => ({
      initiatorIqn: s.initiatorIqn,
      address: s.address,
      ...(s.negotiated ? { negotiated: iscsiSessionParamsToProto(s.negotiated) } : {}),
      negotiatedDetail: s.negotiatedDetail ?? '',
    })),
    driver: target.driver,
    ...(sessionParams ? { sessionParams: iscsiSessionParamsToProto(sessionParams) } : {}),
  };
}

/** An NFS client rule of the API as the NFS driver takes it. */
export function nfsClientSpec(rule: NfsClientRule__Output): NfsClientSpec {
  return {
    match: rule.match,
    access: rule.access === 'NFS_ACCESS_READ_ONLY' ? 'ro' : 'rw',
    sync: rule.sync !== 'NFS_SYNC_ASYNC',
    squash: rule.squash === 'NFS_SQUASH_NONE' ? 'none' : rule.squash === 'NFS_SQUASH_ALL' ? 'all' : 'root',
  };
}

/** An NFS export record as the API shows it. */
export function toNfsExport(e: NfsExportRecord, driver: NfsServerDriver['driver']): NfsExport {
  return {
    exportPath: e.path,
    pseudoPath: e.pseudoPath,
    volume: e.volume ?? '',
    pool: e.pool ?? '',
    clients: e.clients.map((c) => ({
      match: c.match,
      access: c.access === 'ro' ? 'NFS_ACCESS_READ_ONLY' : 'NFS_ACCESS_READ_WRITE',
      sync: c.sync ? 'NFS_SYNC_SYNC' : 'NFS_SYNC_ASYNC',
      squash: c.squash === 'none' ? 'NFS_SQUASH_NONE' : c.squash === 'all' ? 'NFS_SQUASH_ALL' : 'NFS_SQUASH_ROOT',
    })),
    driver,
    exportId: e.exportId,
  };
}
