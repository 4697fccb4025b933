import type { HostStorageHandlers } from '../common/generated/vcstor/v1/HostStorage.js';
import type { Operations } from '../common/handlers.js';
import {
  validateIscsiLoginRequest,
  validateIscsiLogoutRequest,
  validateMakeFilesystemRequest,
  validateMountFilesystemRequest,
  validateNfsMountRequest,
  validateParallelFsMountRequest,
} from '../common/requests.js';
import { resolveConfinedPath, validatePathUnder } from '../common/validate.js';
import type { HostStorage } from './host-storage.js';

/** The HostStorage service's operations, all of them (dom0 and guest agents serve it alike). */
export type HostStorageOperations = Required<Operations<HostStorageHandlers>>;

/**
 * The host-storage operations, validated at the edge: mounts only under `mountRoots`,
 * devices only under `deviceRoots`.
 */
export function hostStorageOperations(host: HostStorage, mountRoots: readonly string[], deviceRoots: readonly string[] = ['/dev']): HostStorageOperations {
  return {
    IscsiLogin: async (request, { signal }) => {
      validateIscsiLoginRequest(request);
      return host.iscsiLogin(request, signal);
    },
    IscsiLogout: async (request, { signal }) => {
      validateIscsiLogoutRequest(request);
      return { wasLoggedIn: await host.iscsiLogout(request, signal) };
    },
    ListIscsiSessions: async (_request, { signal }) => ({ sessions: await host.listSessions(signal) }),
    MountNfs: async (request, { signal }) => {
      validateNfsMountRequest(request, mountRoots);
      return host.mountNfs({ ...request, mountpoint: await resolveConfinedPath('mountpoint', request.mountpoint, mountRoots) }, signal);
    },
    UnmountNfs: async (request, { signal }) => {
      validatePathUnder('mountpoint', request.mountpoint, mountRoots);
      return { wasMounted: await host.unmountNfs(await resolveConfinedPath('mountpoint', request.mountpoint, mountRoots), signal) };
    },
    ListNfsMounts: async () => ({ mounts: await host.listNfsMounts() }),
    MountParallelFs: async (request, { signal }) => {
      validateParallelFsMountRequest(request, mountRoots);
      return host.mountParallelFs({ ...request, mountpoint: await resolveConfinedPath('mountpoint', request.mountpoint, mountRoots) }, signal);
    },
    UnmountParallelFs: async (request, { signal }) => {
      validatePathUnder('mountpoint', request.mountpoint, mountRoots);
      return { unmounted: await host.unmountParallelFs(await resolveConfinedPath('mountpoint', request.mountpoint, mountRoots), signal) };
    },
    ListParallelFsMounts: async () => ({ mounts: await host.listParallelFsMounts() }),
    MakeFilesystem: async (request, { signal }) => {
      validateMakeFilesystemRequest(request, deviceRoots);
      // A link among the devices (a sandbox VBD) must lead to a device, not to a file elsewhere.
      await resolveConfinedPath('device', request.device, deviceRoots);
      return host.makeFilesystem(request, signal);
    },
    MountFilesystem: async (request, { signal }) => {
      validateMountFilesystemRequest(request, mountRoots, deviceRoots);
      await resolveConfinedPath('device', request.device, deviceRoots);
      // mount(8) follows links: a link under the mount root must not mount over /etc.
      return host.mountFilesystem({ ...request, mountpoint: await resolveConfinedPath('mountpoint', request.mountpoint, mountRoots) }, signal);
    },
    UnmountFilesystem: async (request, { signal }) => {
      validatePathUnder('mountpoint', request.mountpoint, mountRoots);
      return { wasMounted: await host.unmountFilesystem(await resolveConfinedPath('mountpoint', request.mountpoint, mountRoots), signal) };
    },
    ListFilesystems: async () => ({ mounts: await host.listFilesystems() }),
  };
}
