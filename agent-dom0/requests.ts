import { invalidArgument } from '../common/errors.js';
import type { AttachVbdRequest__Output } from '../common/generated/vcstor/v1/AttachVbdRequest.js';
import type { CreateImageRequest__Output } from '../common/generated/vcstor/v1/CreateImageRequest.js';
import type { DomainConfig__Output } from '../common/generated/vcstor/v1/DomainConfig.js';
import type { ImageLocation__Output } from '../common/generated/vcstor/v1/ImageLocation.js';
import type { VbdSpec__Output } from '../common/generated/vcstor/v1/VbdSpec.js';
import { resolveConfinedPath, validateHost, validateRemotePath, validateName, validatePathUnder, validateSize, validateText } from '../common/validate.js';

/** Validation of Dom0Agent requests: a whole request, before anything runs. */

const VDEV = /^(xvd|hd|sd)[a-z]{1,2}$/;

/** A virtual device name (xvdb, hda, sdc): it reaches xl's command line and configs. */
export function validateVdev(field: string, vdev: string): string {
  if (!VDEV.test(vdev)) throw invalidArgument(field, `${JSON.stringify(vdev.length > 80 ? `${vdev.slice(0, 77)}...` : vdev)} is not a virtual device name like xvdb`);
  return vdev;
}

/**
 * The image paths of a request (VBD sources, domain config disks), each checked again
 * with symbolic links resolved: a link under an image root must not attach a file
 * elsewhere (another tenant's image, a host file) to a guest.
 */
export async function checkImagePathsConfined(field: string, specs: ReadonlyArray<VbdSpec__Output | null>, imageRoots: readonly string[]): Promise<void> {
  for (const [i, spec] of specs.entries()) {
    const image = spec?.source?.source === 'image' ? spec.source.image : undefined;
    if (image?.location === 'path') await resolveConfinedPath(`${field.replace('#', String(i))}.source.image.path`, image.path ?? '', imageRoots);
  }
}

export function validateImageLocation(field: string, location: ImageLocation__Output | null, imageRoots: readonly string[]): void {
  if (!location || location.location === undefined) throw invalidArgument(field, 'give a path or an nfs_file');
  if (location.location === 'path') {
    validatePathUnder(`${field}.path`, location.path ?? '', imageRoots);
    return;
  }
  const nfs = location.nfsFile;
  if (!nfs) throw invalidArgument(`${field}.nfs_file`, 'is required');
  validateHost(`${field}.nfs_file.server`, nfs.server);
  validateRemotePath(`${field}.nfs_file.export_path`, nfs.exportPath);
  validateName(`${field}.nfs_file.file_name`, nfs.fileName);
  if (![0, 3, 4].includes(nfs.nfsVersion)) throw invalidArgument(`${field}.nfs_file.nfs_version`, `${nfs.nfsVersion} is not 3 or 4`);
}

export function validateCreateImageRequest(request: CreateImageRequest__Output, imageRoots: readonly string[]): void {
  validateImageLocation('location', request.location, imageRoots);
  validateSize('size_bytes', request.sizeBytes, { min: 1024 * 1024, multipleOf: 512 });
}

export function validateVbdSpec(field: string, spec: VbdSpec__Output | null, imageRoots: readonly string[]): void {
  if (!spec) throw invalidArgument(field, 'is required');
  validateVdev(`${field}.vdev`, spec.vdev);
  const source = spec.source;
  if (!source || source.source === undefined) throw invalidArgument(`${field}.source`, 'give a block_device or an image');
  if (source.source === 'blockDevice') validatePathUnder(`${field}.source.block_device`, source.blockDevice ?? '', ['/dev']);
  else validateImageLocation(`${field}.source.image`, source.image ?? null, imageRoots);
  if (source.source === 'blockDevice' && (spec.kind === 'VBD_KIND_FILE' || spec.kind === 'VBD_KIND_TAP_AIO')) {
    throw invalidArgument(`${field}.kind`, 'a block device is attached as phy');
  }
}

export function validateAttachVbdRequest(request: AttachVbdRequest__Output, imageRoots: readonly string[]): void {
  validateName('domain', request.domain);
  validateVbdSpec('spec', request.spec, imageRoots);
}

export function validateDomainConfig(config: DomainConfig__Output | null, imageRoots: readonly string[]): void {
  if (!config) throw invalidArgument('config', 'is required');
  validateName('config.name', config.name);
  if (config.memoryMib < 32 || config.memoryMib > 1024 * 1024) throw invalidArgument('config.memory_mib', `${config.memoryMib} MiB is not 32 MiB-1 TiB`);
  if (config.vcpus < 1 || config.vcpus > 512) throw invalidArgument('config.vcpus', `${config.vcpus} is not 1-512`);
  if (!['', 'pv', 'pvh', 'hvm'].includes(config.type)) throw invalidArgument('config.type', `${JSON.stringify(config.type)} is not pv, pvh or hvm`);
  if (config.boot === 'kernel' && config.kernel) {
    validatePathUnder('config.kernel.kernel', config.kernel.kernel, ['/']);
    if (config.kernel.ramdisk !== '') validatePathUnder('config.kernel.ramdisk', config.kernel.ramdisk, ['/']);
    validateText('config.kernel.cmdline', config.kernel.cmdline, 1024);
    if (/["\\]/.test(config.kernel.cmdline)) throw invalidArgument('config.kernel.cmdline', 'must not contain quotes or backslashes');
  } else if (config.boot === 'bootloader') {
    validateName('config.bootloader', config.bootloader ?? '');
  }
  config.vifs.forEach((vif, i) => {
    validateName(`config.vifs[${i}].bridge`, vif.bridge);
    if (vif.mac !== '' && !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(vif.mac)) throw invalidArgument(`config.vifs[${i}].mac`, `${JSON.stringify(vif.mac)} is not a MAC address`);
    if (vif.ip !== '') validateHost(`config.vifs[${i}].ip`, vif.ip);
  });
  const vdevs = new Set<string>();
  config.disks.forEach((disk, i) => {
    validateVbdSpec(`config.disks[${i}]`, disk, imageRoots);
    if (vdevs.has(disk.vdev)) throw invalidArgument(`config.disks[${i}].vdev`, `${disk.vdev} is used twice`);
    vdevs.add(disk.vdev);
  });
}
