import type { AgentDefinition, AgentRuntime } from '../common/agent.js';
import { stateDirOf, type StorageAgentConfig } from '../common/config.js';
import { VcstorError } from '../common/errors.js';
import { servedService } from '../common/server.js';
import { FilePoolVolumes } from './drivers/filepool.js';
import { KernelNfsServer } from './drivers/kernel-nfs.js';
import { LioTarget } from './drivers/lio.js';
import { LvmVolumes } from './drivers/lvm.js';
import { GaneshaNfsServer } from './drivers/ganesha.js';
import { TgtIscsiTarget } from './drivers/tgt.js';
import { GlusterfsServer } from './drivers/glusterfs.js';
import type { IscsiTargetDriver, NfsServerDriver, ParallelFsDriver, VolumeDriver } from './drivers/types.js';
import { STORAGE_DRIVERS } from './requirements.js';
import {
  validateCreateVolumeRequest,
  validateDeleteVolumeRequest,
  validateExportIscsiRequest,
  validateCreateParallelFsRequest,
  validateExportNfsRequest,
  validateUnexportIscsiRequest,
  validateUnexportNfsRequest,
  validateVolumeRef,
} from './requests.js';
import { HostAccounting, hostAccountingOperations } from '../common/host-accounting.js';
import { iscsiInitiatorDriver, kernelNfsClient } from '../host-storage/factories.js';
import { HostStorage } from '../host-storage/host-storage.js';
import { hostStorageOperations } from '../host-storage/operations.js';
import { validateFsType, validateParallelFsName } from '../common/requests.js';
import { resolveConfinedPath } from '../common/validate.js';
import { StorageRecordStore } from './state.js';
import { StorageServer } from './storage.js';

/** The drivers the config selects, built on the agent's command runner. */
export function storageDrivers(runtime: AgentRuntime<StorageAgentConfig>): { volumes: VolumeDriver; target: IscsiTargetDriver; nfs: NfsServerDriver; parallelFs?: ParallelFsDriver } {
  const { storage } = runtime.config;
  const runner = runtime.runner;
  let volumes: VolumeDriver;
  if (storage.volumes.driver === 'filepool') {
    volumes = new FilePoolVolumes({ runner, poolDir: storage.volumes.poolDir });
  } else {
    volumes = new LvmVolumes({
      runner,
      volumeGroup: storage.volumes.volumeGroup ?? '',
      activation: storage.volumes.activation,
      ...(storage.volumes.lvmSystemDir ? { lvmSystemDir: storage.volumes.lvmSystemDir } : {}),
    });
  }
  let target: IscsiTargetDriver;
  if (storage.iscsiTarget.driver === 'tgt') {
    target = new TgtIscsiTarget({
      runner,
      controlPort: storage.iscsiTarget.tgtControlPort,
      backingStoreType: storage.iscsiTarget.backingStoreType,
      ...(storage.iscsiTarget.portal ? { portal: storage.iscsiTarget.portal } : {}),
    });
  } else {
    target = new LioTarget({ runner, ...(storage.iscsiTarget.portal ? { portal: storage.iscsiTarget.portal } : {}) });
  }
  let nfs: NfsServerDriver;
  if (storage.nfsServer.driver === 'ganesha') {
    nfs = new GaneshaNfsServer({ configFile: storage.nfsServer.ganeshaConfig, pidFile: storage.nfsServer.ganeshaPidFile });
  } else {
    nfs = new KernelNfsServer({ runner, exportsFile: storage.nfsServer.exportsFile });
  }
  const parallelFs =
    storage.parallelFs.driver === 'glusterfs'
      ? new GlusterfsServer({ runner, socketPath: storage.parallelFs.glusterdSocket, ...(storage.parallelFs.cliLogFile ? { cliLogFile: storage.parallelFs.cliLogFile } : {}) })
      : undefined;
  return { volumes, target, nfs, ...(parallelFs ? { parallelFs } : {}) };
}

/**
 * The storage server's agent: requests are validated here, at the edge, then served by
 * StorageServer. At start it converges the daemons with its record (so a restarted
 * agent or tgtd loses no export), then keeps checking every reconcileIntervalMs.
 */
export const storageAgent: AgentDefinition<StorageAgentConfig> = {
  role: 'storage',
  drivers: STORAGE_DRIVERS,
  selectedDrivers: (config) => ({
    volumes: config.storage.volumes.driver,
    'iscsi-target': config.storage.iscsiTarget.driver,
    'nfs-server': config.storage.nfsServer.driver,
    'iscsi-initiator': config.storage.iscsiInitiator.driver,
    ...(config.storage.parallelFs.driver !== 'none' ? { 'parallel-fs': config.storage.parallelFs.driver } : {}),
  }),
  async createServices(runtime, getInfo) {
    const { storage } = runtime.config;
    const drivers = storageDrivers(runtime);
    const server = new StorageServer({
      ...drivers,
      record: new StorageRecordStore(stateDirOf(runtime.config)),
      runner: runtime.runner,
      log: runtime.log,
      iqnPrefix: storage.iscsiTarget.iqnPrefix,
      exportRoot: storage.nfsServer.exportRoot,
      brickRoot: storage.parallelFs.brickRoot,
    });
    try {
      const repaired = await server.reconcile(runtime.shutdownSignal);
      runtime.log.info({ repaired: repaired.length }, 'converged with the record');
    } catch (err) {
      // Serve anyway: the loop retries, and callers see precise errors meanwhile.
      runtime.log.error({ err: err instanceof VcstorError ? err.message : err }, 'could not converge at start; will retry');
    }
    server.startReconcileLoop(storage.reconcileIntervalMs, runtime.shutdownSignal);

    const stateDir = stateDirOf(runtime.config);
    const accounting = new HostAccounting({
      host: runtime.config.name,
      runner: runtime.runner,
      ...(runtime.config.memoryCgroup ? { memoryCgroup: runtime.config.memoryCgroup } : {}),
      loopRoots: [storage.volumes.poolDir, stateDir],
      diskPaths: [stateDir, storage.volumes.poolDir],
      pathRoots: [storage.volumes.poolDir, storage.nfsServer.exportRoot],
    });

    const storageService = servedService('StorageAgent', {
      GetInfo: getInfo,
      CreateVolume: async (request, { signal }) => {
        validateCreateVolumeRequest(request);
        return server.createVolume(request, signal);
      },
      DeleteVolume: async (request, { signal }) => {
        validateDeleteVolumeRequest(request);
        return { deleted: await server.deleteVolume(request, signal) };
      },
      GetVolume: async (request, { signal }) => {
        validateVolumeRef(request.name, request.pool);
        return { volume: await server.getVolume(request.name, request.pool, signal) };
      },
      ListVolumes: async (request, { signal }) => {
        if (request.pool !== '') validateVolumeRef('x', request.pool);
        return { volumes: await server.listVolumes(request.pool, signal) };
      },
      ExportIscsi: async (request, { signal }) => {
        validateExportIscsiRequest(request, storage.iscsiTarget.requireChap, storage.iscsiTarget.iqnPrefix);
        return server.exportIscsi(request, signal);
      },
      UnexportIscsi: async (request, { signal }) => {
        validateUnexportIscsiRequest(request, storage.iscsiTarget.iqnPrefix);
        return { removed: await server.unexportIscsi(request, signal) };
      },
      ListIscsiTargets: async (_request, { signal }) => ({ targets: await server.listIscsiTargets(signal) }),
      ExportNfs: async (request, { signal }) => {
        validateExportNfsRequest(request, storage.nfsServer.exportRoot);
        if (request.source === 'directory') {
          // A symbolic link under the export root must not export what it points at.
          const directory = await resolveConfinedPath('directory', request.directory ?? '', [storage.nfsServer.exportRoot]);
          return server.exportNfs({ ...request, directory }, signal);
        }
        return server.exportNfs(request, signal);
      },
      UnexportNfs: async (request, { signal }) => {
        validateUnexportNfsRequest(request, storage.nfsServer.exportRoot);
        if (request.source === 'exportPath') {
          // Exports are recorded by their resolved path (see ExportNfs).
          const exportPath = await resolveConfinedPath('export_path', request.exportPath ?? '', [storage.nfsServer.exportRoot]);
          return { removed: await server.unexportNfs({ ...request, exportPath }, signal) };
        }
        return { removed: await server.unexportNfs(request, signal) };
      },
      ListNfsExports: async () => ({ exports: await server.listNfsExports() }),
      ExportBrick: async (request, { signal }) => {
        validateVolumeRef(request.volume, request.pool);
        if (request.makeFilesystem !== '') validateFsType('make_filesystem', request.makeFilesystem);
        return server.parallelFs.exportBrick(request.volume, request.makeFilesystem, signal);
      },
      UnexportBrick: async (request, { signal }) => {
        validateVolumeRef(request.volume, request.pool);
        return { removed: await server.parallelFs.unexportBrick(request.volume, signal) };
      },
      CreateParallelFs: async (request, { signal }) => {
        validateCreateParallelFsRequest(request);
        return server.parallelFs.create(request.name, request.bricks.map((b) => ({ host: b.host, path: b.path })), signal);
      },
      DeleteParallelFs: async (request, { signal }) => {
        validateParallelFsName('name', request.name);
        return { removed: await server.parallelFs.delete(request.name, signal) };
      },
      ListParallelFs: async (_request, { signal }) => server.parallelFs.list(signal),
    }, runtime);
    // As a NAS head: a LUN of another server logged in to, its filesystem mounted under the
    // export root (the only mount root) and exported from there with ExportNfs.
    const host = new HostStorage({
      runner: runtime.runner,
      log: runtime.log,
      initiator: iscsiInitiatorDriver(storage.iscsiInitiator.driver, runtime.runner, stateDir, runtime.config.fuseServerCgroup),
      nfsClient: kernelNfsClient(runtime.runner),
      ...(storage.iscsiInitiator.initiatorIqn ? { defaultInitiatorIqn: storage.iscsiInitiator.initiatorIqn } : {}),
      mountRoots: [storage.nfsServer.exportRoot],
    });
    return [
      storageService,
      servedService('HostStorage', hostStorageOperations(host, [storage.nfsServer.exportRoot]), runtime),
      servedService('HostAccounting', hostAccountingOperations(accounting), runtime),
    ];
  },
};
