import { invalidArgument } from './errors.js';
import { validateIscsiSessionParams } from './iscsi-params.js';
import type { IscsiChap__Output } from './generated/vcstor/v1/IscsiChap.js';
import type { IscsiLogoutRequest__Output } from './generated/vcstor/v1/IscsiLogoutRequest.js';
import type { IscsiLoginRequest__Output } from './generated/vcstor/v1/IscsiLoginRequest.js';
import type { IscsiTargetRef__Output } from './generated/vcstor/v1/IscsiTargetRef.js';
import type { MakeFilesystemRequest__Output } from './generated/vcstor/v1/MakeFilesystemRequest.js';
import type { MountFilesystemRequest__Output } from './generated/vcstor/v1/MountFilesystemRequest.js';
import type { NfsMountRequest__Output } from './generated/vcstor/v1/NfsMountRequest.js';
import type { ParallelFsMountRequest__Output } from './generated/vcstor/v1/ParallelFsMountRequest.js';
import {
  validateChapSecret,
  validateHost,
  validateHostPort,
  validateIqn,
  validateName,
  validateOptions,
  validatePathUnder,
  validateRemotePath,
  validateText,
} from './validate.js';

/**
 * Validation of the request messages of common.proto, which the dom0 and guest agents
 * both serve. Each function checks a whole request before anything runs and throws
 * INVALID_ARGUMENT naming the first field at fault.
 */

export const FILESYSTEM_TYPES = ['ext4', 'ext3', 'xfs'] as const;
export const MOUNT_OPTIONS = ['ro', 'rw', 'noatime', 'relatime', 'nodiratime', 'sync', 'async', 'discard', 'nobarrier', 'data=', 'commit='];
export const MKFS_OPTIONS = ['-E', 'lazy_itable_init=0', 'lazy_journal_init=0', 'nodiscard', '-m', '0', '1', '5', '-b', '4096', '-O', '^has_journal'];
export const NFS_MOUNT_OPTIONS = ['rsize=', 'wsize=', 'timeo=', 'retrans=', 'hard', 'soft', 'nolock', 'noac', 'actimeo=', 'sync', 'async', 'noatime', 'proto=', 'port=', 'mountport=', 'mountproto='];

export function validateTargetRef(field: string, target: IscsiTargetRef__Output | null): IscsiTargetRef__Output {
  if (!target) throw invalidArgument(field, 'is required');
  validateHostPort(`${field}.portal`, target.portal, 3260);
  validateIqn(`${field}.iqn`, target.iqn);
  if (target.lun > 16383) throw invalidArgument(`${field}.lun`, `${target.lun} is not a LUN number (0-16383)`);
  return target;
}

export function validateChap(field: string, chap: IscsiChap__Output | null): void {
  if (!chap || (chap.username === '' && chap.password === '' && chap.mutualUsername === '' && chap.mutualPassword === '')) return;
  if (!/^[A-Za-z0-9._@:-]{1,64}$/.test(chap.username)) {
    throw invalidArgument(`${field}.username`, 'must be 1-64 characters of letters, digits and . _ @ : -');
  }
  validateChapSecret(`${field}.password`, chap.password);
  if (chap.mutualUsername !== '' || chap.mutualPassword !== '') {
    if (!/^[A-Za-z0-9._@:-]{1,64}$/.test(chap.mutualUsername)) {
      throw invalidArgument(`${field}.mutual_username`, 'must be 1-64 characters of letters, digits and . _ @ : -');
    }
    validateChapSecret(`${field}.mutual_password`, chap.mutualPassword);
    if (chap.mutualPassword === chap.password) throw invalidArgument(`${field}.mutual_password`, 'must differ from password');
  }
}

export function validateIscsiLoginRequest(request: IscsiLoginRequest__Output): void {
  validateTargetRef('target', request.target);
  if (request.initiatorIqn !== '') validateIqn('initiator_iqn', request.initiatorIqn);
  validateChap('chap', request.chap);
  if (request.timeoutMs > 10 * 60_000) throw invalidArgument('timeout_ms', 'is longer than 10 minutes');
  validateIscsiSessionParams('session_params', request.sessionParams);
}

export function validateNfsMountRequest(request: NfsMountRequest__Output, mountRoots: readonly string[]): void {
  validateHostPort('server', request.server, 2049);
  validateRemotePath('export_path', request.exportPath);
  validatePathUnder('mountpoint', request.mountpoint, mountRoots);
  if (![0, 3, 4].includes(request.nfsVersion)) throw invalidArgument('nfs_version', `${request.nfsVersion} is not 3 or 4`);
  validateOptions('options', request.options, NFS_MOUNT_OPTIONS);
}

/** A parallel file system's name: a name (validateName) without '.', which GlusterFS refuses in volume names. */
export function validateParallelFsName(field: string, value: string): string {
  validateName(field, value);
  if (value.includes('.')) throw invalidArgument(field, `${JSON.stringify(value)} has a '.': a parallel file system's name takes a-z, 0-9, '_' and '-' (GlusterFS refuses '.')`);
  return value;
}

export function validateParallelFsMountRequest(request: ParallelFsMountRequest__Output, mountRoots: readonly string[]): void {
  validateHost('server', request.server);
  validateParallelFsName('name', request.name);
  validatePathUnder('mountpoint', request.mountpoint, mountRoots);
}

export function validateFsType(field: string, fsType: string): string {
  if (fsType === '') return 'ext4';
  if (!(FILESYSTEM_TYPES as readonly string[]).includes(fsType)) {
    throw invalidArgument(field, `${JSON.stringify(fsType)} is not supported (one of ${FILESYSTEM_TYPES.join(', ')})`);
  }
  return fsType;
}

export function validateIscsiLogoutRequest(request: IscsiLogoutRequest__Output): void {
  validateTargetRef('target', request.target);
  if (request.initiatorIqn !== '') validateIqn('initiator_iqn', request.initiatorIqn);
}

/** @param deviceRoots where devices may be: /dev, and the sandbox's VBD directory. */
export function validateMakeFilesystemRequest(request: MakeFilesystemRequest__Output, deviceRoots: readonly string[] = ['/dev']): void {
  validatePathUnder('device', request.device, deviceRoots);
  validateFsType('fs_type', request.fsType);
  validateOptions('mkfs_options', request.mkfsOptions, MKFS_OPTIONS);
  validateText('label', request.label, 16);
}

export function validateMountFilesystemRequest(request: MountFilesystemRequest__Output, mountRoots: readonly string[], deviceRoots: readonly string[] = ['/dev']): void {
  validatePathUnder('device', request.device, deviceRoots);
  validatePathUnder('mountpoint', request.mountpoint, mountRoots);
  if (request.fsType !== '') validateFsType('fs_type', request.fsType);
  validateOptions('options', request.options, MOUNT_OPTIONS);
}
