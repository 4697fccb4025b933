import { readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import type { AgentDefinition } from '../common/agent.js';
import { stateDirOf, type GuestAgentConfig } from '../common/config.js';
import { Filesystems } from '../common/filesystems.js';
import type { BlockDevice } from '../common/generated/vcstor/v1/BlockDevice.js';
import type { GuestAgentHandlers } from '../common/generated/vcstor/v1/GuestAgent.js';
import { makeHandlers, type Operations } from '../common/handlers.js';
import { iscsiInitiatorDriver, kernelNfsClient } from '../common/host/drivers.js';
import { HostStorage } from '../common/host/host-storage.js';
import { loadVcstorProto, SERVICE_NAMES } from '../common/proto.js';
import {
  validateIscsiLoginRequest,
  validateIscsiLogoutRequest,
  validateMakeFilesystemRequest,
  validateMountFilesystemRequest,
  validateNfsMountRequest,
} from '../common/requests.js';
import { validatePathUnder } from '../common/validate.js';
import { GUEST_DRIVERS } from './drivers.js';
import { validateRunBenchmarkRequest } from './requests.js';
import { notImplemented } from '../common/errors.js';

/**
 * The guest's agent: reaches storage itself (iscsi method), or uses the disks dom0
 * gave it (VBDs), makes and mounts filesystems. Benchmarks arrive with issue 5.
 */
export const guestAgent: AgentDefinition<GuestAgentConfig> = {
  role: 'guest',
  drivers: GUEST_DRIVERS,
  selectedDrivers: (config) => ({
    'iscsi-initiator': config.guest.iscsiInitiator.driver,
    'nfs-client': config.guest.nfsClient.driver,
    filesystem: 'ext4',
  }),
  async createService(runtime, getInfo) {
    const { guest } = runtime.config;
    const mountRoots = [guest.mountRoot];
    const deviceRoots = ['/dev', ...(guest.vbdDirectory ? [guest.vbdDirectory] : [])];
    const host = new HostStorage({
      runner: runtime.runner,
      log: runtime.log,
      initiator: await iscsiInitiatorDriver(guest.iscsiInitiator.driver, runtime.runner, stateDirOf(runtime.config)),
      nfsClient: await kernelNfsClient(runtime.runner),
      ...(guest.iscsiInitiator.initiatorIqn ? { defaultInitiatorIqn: guest.iscsiInitiator.initiatorIqn } : {}),
      mountRoots,
    });
    const filesystems = new Filesystems(runtime.runner);

    /** VBDs dom0 published for this guest, and the guest's own iSCSI sessions. */
    const blockDevices = async (signal: AbortSignal): Promise<BlockDevice[]> => {
      const devices: BlockDevice[] = [];
      const mounts = await filesystems.mounts();
      const describe = async (devicePath: string, real: string, origin: string, sizeBytes: number) => ({
        path: devicePath,
        sizeBytes,
        origin,
        fsType: await filesystems.probe(real, signal).catch(() => ''),
        mountpoint: mounts.find((m) => m.device === real)?.mountpoint ?? '',
      });
      if (guest.vbdDirectory) {
        for (const vdev of (await readdir(guest.vbdDirectory).catch(() => [])).sort()) {
          const link = path.join(guest.vbdDirectory, vdev);
          const real = await readlink(link).catch(() => '');
          if (real) devices.push(await describe(link, real, `vbd:${vdev}`, 0));
        }
      }
      for (const session of await host.listSessions(signal)) {
        if (session.devicePath) devices.push(await describe(session.devicePath ?? '', session.devicePath ?? '', `iscsi:${session.target?.iqn}/${session.target?.lun}`, Number(session.sizeBytes ?? 0)));
      }
      return devices;
    };

    const operations: Operations<GuestAgentHandlers> = {
      GetInfo: getInfo,
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
        return host.mountNfs(request, signal);
      },
      UnmountNfs: async (request, { signal }) => {
        validatePathUnder('mountpoint', request.mountpoint, mountRoots);
        return { wasMounted: await host.unmountNfs(request.mountpoint, signal) };
      },
      ListNfsMounts: async () => ({ mounts: await host.listNfsMounts() }),
      ListBlockDevices: async (_request, { signal }) => ({ devices: await blockDevices(signal) }),
      MakeFilesystem: async (request, { signal }) => {
        validateMakeFilesystemRequest(request, deviceRoots);
        return host.makeFilesystem(request, signal);
      },
      MountFilesystem: async (request, { signal }) => {
        validateMountFilesystemRequest(request, mountRoots, deviceRoots);
        return host.mountFilesystem(request, signal);
      },
      UnmountFilesystem: async (request, { signal }) => {
        validatePathUnder('mountpoint', request.mountpoint, mountRoots);
        return { wasMounted: await host.unmountFilesystem(request.mountpoint, signal) };
      },
      ListFilesystems: async () => ({ mounts: await host.listFilesystems() }),
      GetFilesystemUsage: async (request) => {
        validatePathUnder('mountpoint', request.mountpoint, mountRoots);
        return { usage: await host.usage(request.mountpoint) };
      },
      RunBenchmark: async (request) => {
        validateRunBenchmarkRequest(request, guest.mountRoot);
        throw notImplemented('RunBenchmark');
      },
    };
    const definition = loadVcstorProto().grpcObject.vcstor.v1.GuestAgent.service;
    return { name: SERVICE_NAMES.guest, definition, implementation: makeHandlers(definition, operations, runtime) };
  },
};
