import { readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import type { AgentDefinition } from '../common/agent.js';
import { stateDirOf, type GuestAgentConfig } from '../common/config.js';
import { HostBenchmarks } from '../host-storage/benchmarks/run.js';
import { benchmarkOperations } from '../host-storage/benchmarks/operations.js';
import { Filesystems } from '../common/filesystems.js';
import type { BlockDevice } from '../common/generated/vcstor/v1/BlockDevice.js';
import { iscsiInitiatorDriver, nfsClientDriver } from '../host-storage/factories.js';
import { HostAccounting, hostAccountingOperations } from '../common/host-accounting.js';
import { GlusterfsFuseClient } from '../host-storage/glusterfs-client.js';
import { HostStorage } from '../host-storage/host-storage.js';
import { servedService } from '../common/server.js';
import { hostStorageOperations } from '../host-storage/operations.js';
import { loadSessionOperations } from '../host-storage/load-operations.js';
import { LoadSessions } from '../host-storage/load-sessions.js';
import { validatePathUnder } from '../common/validate.js';
import { GUEST_DRIVERS } from './requirements.js';

/**
 * The guest's agent: reaches storage itself (iscsi method), or uses the disks dom0
 * gave it (VBDs), makes and mounts filesystems, and runs the paper's benchmarks there.
 */
export const guestAgent: AgentDefinition<GuestAgentConfig> = {
  role: 'guest',
  drivers: GUEST_DRIVERS,
  selectedDrivers: (config) => ({
    'iscsi-initiator': config.guest.iscsiInitiator.driver,
    'nfs-client': config.guest.nfsClient.driver,
    ...(config.guest.parallelFsClient.driver !== 'none' ? { 'parallel-fs-client': config.guest.parallelFsClient.driver } : {}),
    filesystem: 'ext4',
    'cluster-filesystem': 'ocfs2',
  }),
  async createServices(runtime, getInfo) {
    const { guest } = runtime.config;
    const mountRoots = [guest.mountRoot];
    const deviceRoots = ['/dev', ...(guest.vbdDirectory ? [guest.vbdDirectory] : [])];
    const host = new HostStorage({
      runner: runtime.runner,
      log: runtime.log,
      initiator: iscsiInitiatorDriver(guest.iscsiInitiator.driver, runtime.runner, stateDirOf(runtime.config), runtime.config.fuseServerCgroup),
      nfsClient: nfsClientDriver(guest.nfsClient.driver, runtime.runner, stateDirOf(runtime.config), runtime.config.fuseServerCgroup),
      ...(guest.parallelFsClient.driver === 'glusterfs' ? { parallelFsClient: new GlusterfsFuseClient({ runner: runtime.runner, stateDir: stateDirOf(runtime.config) }) } : {}),
      ...(guest.iscsiInitiator.initiatorIqn ? { defaultInitiatorIqn: guest.iscsiInitiator.initiatorIqn } : {}),
      mountRoots,
    });
    const filesystems = new Filesystems(runtime.runner);
    const benchmarks = new HostBenchmarks({ runner: runtime.runner, log: runtime.log, mountRoot: guest.mountRoot });
    // Before serving: a benchmark left by a killed agent would keep its filesystem busy.
    await benchmarks.reapOrphans();

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

    const accounting = new HostAccounting({
      host: runtime.config.name,
      runner: runtime.runner,
      ...(runtime.config.memoryCgroup ? { memoryCgroup: runtime.config.memoryCgroup } : {}),
      ...(runtime.config.fuseServerCgroup ? { fuseServerCgroup: runtime.config.fuseServerCgroup } : {}),
      loopRoots: [stateDirOf(runtime.config)],
      // The VBDs dom0 published for this guest are its disks.
      extraDevices: async () => {
        if (!guest.vbdDirectory) return [];
        const links = await readdir(guest.vbdDirectory).catch(() => [] as string[]);
        return (await Promise.all(links.sort().map((vdev) => readlink(path.join(guest.vbdDirectory!, vdev)).catch(() => '')))).filter(Boolean);
      },
      diskPaths: [stateDirOf(runtime.config)],
      pathRoots: [...mountRoots, ...deviceRoots],
    });

    const guestService = servedService('GuestAgent', {
      GetInfo: getInfo,
      ListBlockDevices: async (_request, { signal }) => ({ devices: await blockDevices(signal) }),
      GetFilesystemUsage: async (request) => {
        validatePathUnder('mountpoint', request.mountpoint, mountRoots);
        return { usage: await host.usage(request.mountpoint) };
      },
    }, runtime);
    return [
      guestService,
      servedService('HostStorage', hostStorageOperations(host, mountRoots, deviceRoots), runtime),
      servedService('LoadSessions', loadSessionOperations(new LoadSessions({ runner: runtime.runner, log: runtime.log, stateDir: stateDirOf(runtime.config) })), runtime),
      servedService('Benchmarks', benchmarkOperations(benchmarks, [guest.mountRoot]), runtime),
      servedService('HostAccounting', hostAccountingOperations(accounting), runtime),
    ];
  },
};
