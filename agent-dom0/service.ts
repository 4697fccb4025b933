import { mkdir } from 'node:fs/promises';
import type { AgentDefinition } from '../common/agent.js';
import { benchmarkOperations } from '../host-storage/benchmarks/operations.js';
import { HostBenchmarks } from '../host-storage/benchmarks/run.js';
import { stateDirOf, type Dom0AgentConfig } from '../common/config.js';
import { VcstorError } from '../common/errors.js';
import type { CreateImageResponse } from '../common/generated/vcstor/v1/CreateImageResponse.js';
import { iscsiInitiatorDriver, kernelNfsClient } from '../host-storage/factories.js';
import { HostAccounting, hostAccountingOperations } from '../common/host-accounting.js';
import { HostStorage } from '../host-storage/host-storage.js';
import { QsdDevices } from '../host-storage/qsd.js';
import { LoopDevices } from '../common/loop-devices.js';
import type { DomainSpec, HypervisorDriver } from './hypervisor.js';
import { servedService } from '../common/server.js';
import { hostStorageOperations } from '../host-storage/operations.js';
import { loadSessionOperations } from '../host-storage/load-operations.js';
import { LoadSessions } from '../host-storage/load-sessions.js';
import { resolveConfinedPath, validateName, validatePathUnder } from '../common/validate.js';
import { Dom0Domains } from './dom0.js';
import { SandboxHypervisor } from './drivers/sandbox.js';
import { XenHypervisor } from './drivers/xen.js';
import { DOM0_DRIVERS } from './requirements.js';
import { Images } from './images.js';
import { KernelNfsImageFiles, LibnfsImageFiles, type NfsImageFiles } from './nfs-images.js';
import { checkImagePathsConfined, validateAttachVbdRequest, validateCreateImageRequest, validateDomainConfig, validateImageLocation, validateVdev } from './requests.js';

/**
 * The hypervisor host's agent: iSCSI sessions, NFS, filesystems and images on dom0, and
 * the domains with their VBDs, through the hypervisor driver the config selects.
 */
export const dom0Agent: AgentDefinition<Dom0AgentConfig> = {
  role: 'dom0',
  drivers: DOM0_DRIVERS,
  selectedDrivers: (config) => ({
    'iscsi-initiator': config.dom0.iscsiInitiator.driver,
    'nfs-client': config.dom0.nfsClient.driver,
    hypervisor: config.dom0.hypervisor.driver,
    filesystem: 'ext4',
  }),
  async createServices(runtime, getInfo) {
    const { dom0 } = runtime.config;
    const stateDir = stateDirOf(runtime.config);
    const mountRoots = [dom0.mountRoot, ...dom0.imageRoots];
    const host = new HostStorage({
      runner: runtime.runner,
      log: runtime.log,
      initiator: iscsiInitiatorDriver(dom0.iscsiInitiator.driver, runtime.runner, stateDir, runtime.config.fuseServerCgroup),
      nfsClient: kernelNfsClient(runtime.runner),
      ...(dom0.iscsiInitiator.initiatorIqn ? { defaultInitiatorIqn: dom0.iscsiInitiator.initiatorIqn } : {}),
      mountRoots,
    });
    // xl's config format for both: the sandbox writes the configs Xen would run.
    const xen = new XenHypervisor({ runner: runtime.runner });
    const hypervisor: HypervisorDriver =
      dom0.hypervisor.driver === 'xen'
        ? xen
        : new SandboxHypervisor({ runner: runtime.runner, root: dom0.hypervisor.sandboxRoot, fileBackend: dom0.hypervisor.fileBackend, render: (spec: DomainSpec) => xen.renderConfig(spec) });
    // libnfs daemons are initiators too: outside dom0's memory group (config fuseServerCgroup).
    const qsd = new QsdDevices({ runner: runtime.runner, root: `${stateDir}/qsd`, ...(runtime.config.fuseServerCgroup ? { memoryCgroup: runtime.config.fuseServerCgroup } : {}) });
    // Images may live on local image roots and on filesystems mounted under the mount root
    // (a logged-in LUN's filesystem for file-iscsi, an NFS mount).
    const imageRoots = [...dom0.imageRoots, dom0.mountRoot];
    const images = new Images(imageRoots);
    const loops = new LoopDevices(runtime.runner);
    const nfsImages: NfsImageFiles =
      dom0.nfsClient.driver === 'kernel'
        ? new KernelNfsImageFiles({ nfsClient: kernelNfsClient(runtime.runner), loops, images, mountRoot: dom0.mountRoot, runner: runtime.runner })
        : new LibnfsImageFiles({ runner: runtime.runner, qsd });
    // The image roots are this agent's directories: made here, so that dom0's local-disk
    // baseline has its directory before any image was made.
    await Promise.all(dom0.imageRoots.map((root) => mkdir(root, { recursive: true })));
    // The baselines of Fig. 3 and 5: on filesystems dom0 mounted, or on its local disk.
    const benchmarks = new HostBenchmarks({ runner: runtime.runner, log: runtime.log, mountRoot: dom0.mountRoot, localRoots: dom0.imageRoots });
    // Before serving: a benchmark left by a killed agent would keep its filesystem busy.
    await benchmarks.reapOrphans();
    const domains = new Dom0Domains({ hypervisor, configDir: dom0.hypervisor.configDir, stateDir, nfsImages, loops, log: runtime.log });

    const accounting = new HostAccounting({
      host: runtime.config.name,
      runner: runtime.runner,
      ...(runtime.config.memoryCgroup ? { memoryCgroup: runtime.config.memoryCgroup } : {}),
      ...(runtime.config.fuseServerCgroup ? { fuseServerCgroup: runtime.config.fuseServerCgroup } : {}),
      // Images (phy: direct loops), the sandbox's file backends, the initiator's exports.
      loopRoots: [...imageRoots, dom0.hypervisor.sandboxRoot, stateDir],
      diskPaths: [stateDir, ...dom0.imageRoots],
      pathRoots: imageRoots,
    });

    const dom0Service = servedService('Dom0Agent', {
      GetInfo: getInfo,
      CreateImage: async (request, { signal }, send) => {
        validateCreateImageRequest(request, imageRoots);
        const location = request.location!;
        const started = Date.now();
        let lastSent = 0;
        const progress = (done: number, total: number): CreateImageResponse => ({
          progress: { phase: 'zero-fill', percent: (100 * done) / total, bytesDone: done, bytesTotal: total, elapsedMs: Date.now() - started },
        });
        const pending: Promise<void>[] = [];
        const onProgress = (done: number, total: number) => {
          // At most 4 progress messages a second: enough for a bar, little for the wire.
          if (Date.now() - lastSent >= 250) {
            lastSent = Date.now();
            pending.push(send(progress(done, total)));
          }
        };
        const provisioning = request.provisioning === 'PROVISIONING_SPARSE' ? 'sparse' : 'preallocated';
        const result =
          location.location === 'path'
            ? await images.create(await resolveConfinedPath('location.path', location.path ?? '', imageRoots), request.sizeBytes, provisioning, signal, onProgress)
            : await nfsImages.create(location.nfsFile!, request.sizeBytes, provisioning, signal, onProgress);
        await Promise.all(pending);
        await send({ result });
      },
      DeleteImage: async (request) => {
        validateImageLocation('location', request.location, imageRoots);
        if (request.location?.location !== 'path') throw new VcstorError('FAILED_PRECONDITION', 'images on NFS are removed with their volume on the storage server');
        const file = await resolveConfinedPath('location.path', request.location.path ?? '', imageRoots);
        const attached = (await domains.listVbds('')).find((v) => v.spec?.source?.image?.path === request.location?.path);
        if (attached) throw new VcstorError('FAILED_PRECONDITION', `${request.location.path} is attached to ${attached.domain} as ${attached.spec?.vdev}; detach it first`);
        return { deleted: await images.delete(file) };
      },
      ListImages: async (request) => {
        if (request.directory !== '') validatePathUnder('directory', request.directory, imageRoots);
        const directory = request.directory === '' ? undefined : await resolveConfinedPath('directory', request.directory, imageRoots);
        return { images: await images.list(directory) };
      },
      AttachVbd: async (request, { signal }) => {
        validateAttachVbdRequest(request, imageRoots);
        await checkImagePathsConfined('spec', [request.spec], imageRoots);
        return domains.attach(request.domain, request.spec!, signal);
      },
      DetachVbd: async (request, { signal }) => {
        validateName('domain', request.domain);
        validateVdev('vdev', request.vdev);
        return { wasAttached: await domains.detach(request.domain, request.vdev, signal) };
      },
      ListVbds: async (request) => {
        if (request.domain !== '') validateName('domain', request.domain);
        return { vbds: await domains.listVbds(request.domain) };
      },
      WriteDomainConfig: async (request, { signal }) => {
        validateDomainConfig(request.config, imageRoots);
        await checkImagePathsConfined('config.disks[#]', request.config?.disks ?? [], imageRoots);
        return domains.writeConfig(request.config!, signal);
      },
      StartDomain: async (request, { signal }) => {
        validateName('name', request.name);
        return domains.start(request.name, signal);
      },
      StopDomain: async (request, { signal }) => {
        validateName('name', request.name);
        return { wasRunning: await domains.stop(request.name, request.force, request.timeoutMs, signal) };
      },
      ListDomains: async (_request, { signal }) => ({ domains: await domains.list(signal) }),
    }, runtime);
    return [
      dom0Service,
      servedService('HostStorage', hostStorageOperations(host, mountRoots), runtime),
      servedService('LoadSessions', loadSessionOperations(new LoadSessions({ runner: runtime.runner, log: runtime.log, stateDir })), runtime),
      servedService('Benchmarks', benchmarkOperations(benchmarks, [dom0.mountRoot, ...dom0.imageRoots]), runtime),
      servedService('HostAccounting', hostAccountingOperations(accounting), runtime),
    ];
  },
};
