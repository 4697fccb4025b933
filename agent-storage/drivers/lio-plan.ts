import { realpath } from 'node:fs/promises';
import { formatIscsiValue, setIscsiSessionParams } from '../../common/iscsi-params.js';
import { VcstorError } from '../../common/errors.js';
import type { ChapCredentials } from './types.js';
import {
  BACKSTORE_DIR_BY_PLUGIN,
  lioBackstoreName,
  NO_CHAP,
  portalDirName,
  portalFromDirName,
  TPG_DIR,
  TPG_NODE,
  WILDCARD_ADDRESSES,
  type ChapSettings,
  type LioExportSpec,
  type LioSnapshot,
  type LioStorageObject,
  type Portal,
  type StorageObjectRef,
  type TargetcliCommand,
  type TpgAttribute,
} from './lio-model.js';

/**
 * The targetcli commands that make LIO match an export, planned from a configfs
 * snapshot: only what differs, each with the reason it is needed. Planning runs
 * nothing; it reads the file system only to tell whether two paths name one file.
 */

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
 * Backstore, target and LUN: what must exist before access can be set. A LUN that
 * serves the wrong path (or is not the export's) is deleted with the backstores no
 * other LUN uses; a backstore already carrying the export's name and path is reused.
 */
export async function planStructure(spec: LioExportSpec, kind: 'block' | 'file', snapshot: LioSnapshot): Promise<TargetcliCommand[]> {
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
export function planAccess(spec: LioExportSpec, snapshot: LioSnapshot, wanted: Portal): TargetcliCommand[] {
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
  const wantedWildcard = WILDCARD_ADDRESSES.has(wanted.address);
  const satisfies = (dirName: string) => {
    const portal = portalFromDirName(dirName);
    if (!portal || portal.port !== wanted.port) return false;
    return wantedWildcard ? WILDCARD_ADDRESSES.has(portal.address) : portal.address === wanted.address;
  };
  for (const dirName of tpg.portals.filter((p) => !satisfies(p))) {
    const portal = portalFromDirName(dirName);
    if (!portal) continue; // not a portal name we can read; leave it alone
    commands.push({ args: [`${tpgNode}/portals`, 'delete', portal.address, String(portal.port)], why: `portal ${dirName} is not the configured one` });
  }
  if (!tpg.portals.some(satisfies)) {
    commands.push({
      args: [`${tpgNode}/portals`, 'create', wanted.address, String(wanted.port)],
      why: `portal ${portalDirName(wanted)} is missing`,
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
 * Delete target `targetIqn`, then the backstores its LUNs used that no LUN of another
 * target (of any fabric) uses. The backing files and devices are not touched.
 */
export function planRemoval(targetIqn: string, snapshot: LioSnapshot): TargetcliCommand[] {
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
  return [{ args: ['/iscsi', 'delete', targetIqn], why: 'the target is being removed' }, ...backstoreDeletes];
}
