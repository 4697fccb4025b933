import path from 'node:path';
import { invalidArgument } from '../common/errors.js';
import type { CreateVolumeRequest__Output } from '../common/generated/vcstor/v1/CreateVolumeRequest.js';
import type { DeleteVolumeRequest__Output } from '../common/generated/vcstor/v1/DeleteVolumeRequest.js';
import type { ExportIscsiRequest__Output } from '../common/generated/vcstor/v1/ExportIscsiRequest.js';
import type { CreateParallelFsRequest__Output } from '../common/generated/vcstor/v1/CreateParallelFsRequest.js';
import type { ExportNfsRequest__Output } from '../common/generated/vcstor/v1/ExportNfsRequest.js';
import type { UnexportNfsRequest__Output } from '../common/generated/vcstor/v1/UnexportNfsRequest.js';
import type { UnexportIscsiRequest__Output } from '../common/generated/vcstor/v1/UnexportIscsiRequest.js';
import { validateIscsiSessionParams } from '../common/iscsi-params.js';
import { validateChap, validateFsType, validateParallelFsName } from '../common/requests.js';
import { validateAddressOrCidr, validateHost, validateIqn, validateName, validatePathUnder, validateSize } from '../common/validate.js';

/** Validation of StorageAgent requests: a whole request, before anything runs. */

function validatePool(pool: string): void {
  if (pool !== '') validateName('pool', pool);
}

export function validateCreateVolumeRequest(request: CreateVolumeRequest__Output): void {
  validateName('name', request.name);
  validatePool(request.pool);
  validateSize('size_bytes', request.sizeBytes, { min: 1024 * 1024 });
}

export function validateVolumeRef(name: string, pool: string): void {
  validateName('name', name);
  validatePool(pool);
}

export function validateUnexportNfsRequest(request: UnexportNfsRequest__Output, exportRoot: string): void {
  if (request.source === 'volume') validateName('volume', request.volume ?? '');
  else if (request.source === 'exportPath') validatePathUnder('export_path', request.exportPath ?? '', [exportRoot]);
  else throw invalidArgument('source', 'give a volume or an export_path');
  validatePool(request.pool);
}

export function validateDeleteVolumeRequest(request: DeleteVolumeRequest__Output): void {
  validateName('name', request.name);
  validatePool(request.pool);
}

/**
 * A target name this agent may create or remove: `<iqnPrefix>:<something>`. Other
 * targets on the same target server (another tenant's, the operator's) are never
 * touched, even when a request names them.
 */
export function validateOwnTargetIqn(field: string, iqn: string, iqnPrefix: string | undefined): void {
  validateIqn(field, iqn);
  if (iqnPrefix !== undefined && !iqn.startsWith(`${iqnPrefix}:`)) {
    throw invalidArgument(field, `${JSON.stringify(iqn.length > 80 ? `${iqn.slice(0, 77)}...` : iqn)} is not under this agent's IQN prefix ${iqnPrefix}: (storage.iscsiTarget.iqnPrefix)`);
  }
}

/** @param iqnPrefix the agent's storage.iscsiTarget.iqnPrefix: target names must be under it. */
export function validateExportIscsiRequest(request: ExportIscsiRequest__Output, requireChap: boolean, iqnPrefix?: string): void {
  validateName('volume', request.volume);
  validatePool(request.pool);
  if (request.targetIqn !== '') validateOwnTargetIqn('target_iqn', request.targetIqn, iqnPrefix);
  request.allowedInitiators.forEach((iqn, i) => validateIqn(`allowed_initiators[${i}]`, iqn));
  request.allowedAddresses.forEach((address, i) => validateAddressOrCidr(`allowed_addresses[${i}]`, address));
  if (!request.allowAnyInitiator && request.allowedInitiators.length === 0 && request.allowedAddresses.length === 0) {
    throw invalidArgument('allowed_initiators', 'name at least one initiator IQN or address, or set allow_any_initiator explicitly');
  }
  validateChap('chap', request.chap);
  if (requireChap && (!request.chap || request.chap.username === '')) {
    throw invalidArgument('chap', 'this agent requires CHAP on every export (storage.iscsiTarget.requireChap)');
  }
  if (request.lun > 255) throw invalidArgument('lun', `${request.lun} is not a LUN number (0-255)`);
  validateIscsiSessionParams('session_params', request.sessionParams);
}

export function validateUnexportIscsiRequest(request: UnexportIscsiRequest__Output, iqnPrefix?: string): void {
  if (request.targetIqn === '' && request.volume === '') throw invalidArgument('target_iqn', 'give target_iqn or volume');
  if (request.targetIqn !== '') validateOwnTargetIqn('target_iqn', request.targetIqn, iqnPrefix);
  if (request.volume !== '') validateName('volume', request.volume);
  validatePool(request.pool);
}

export function validateExportNfsRequest(request: ExportNfsRequest__Output, exportRoot: string): void {
  if (request.source === 'volume') validateName('volume', request.volume ?? '');
  else if (request.source === 'directory') validatePathUnder('directory', request.directory ?? '', [exportRoot]);
  else throw invalidArgument('source', 'give a volume or a directory to export');
  validatePool(request.pool);
  if (request.makeFilesystem !== '') validateFsType('make_filesystem', request.makeFilesystem);
  if (request.clients.length === 0) throw invalidArgument('clients', 'name at least one client rule');
  request.clients.forEach((rule, i) => {
    if (rule.match === '*') return;
    try {
      validateAddressOrCidr(`clients[${i}].match`, rule.match);
    } catch {
      validateHost(`clients[${i}].match`, rule.match);
    }
  });
  if (request.pseudoPath !== '') validatePathUnder('pseudo_path', request.pseudoPath, ['/']);
}

export function validateCreateParallelFsRequest(request: CreateParallelFsRequest__Output): void {
  validateParallelFsName('name', request.name);
  if (request.bricks.length === 0) throw invalidArgument('bricks', 'name at least one brick');
  if (request.bricks.length > 256) throw invalidArgument('bricks', 'more than 256 bricks');
  const seen = new Set<string>();
  request.bricks.forEach((b, i) => {
    validateHost(`bricks[${i}].host`, b.host);
    if (!path.isAbsolute(b.path) || path.normalize(b.path) !== b.path || b.path === '/') throw invalidArgument(`bricks[${i}].path`, `${JSON.stringify(b.path)} is not an absolute, normalised directory below /`);
    const key = `${b.host}:${b.path}`;
    if (seen.has(key)) throw invalidArgument(`bricks[${i}]`, `${key} is named twice`);
    seen.add(key);
  });
}
