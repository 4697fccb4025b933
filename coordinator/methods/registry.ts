import path from 'node:path';
import type { GetInfoResponse__Output } from '../../common/generated/vcstor/v1/GetInfoResponse.js';
import { DOM0_BASELINES, METHODS, type BaselineName, type MethodName } from './names.js';
import { Provisioner, type Placement } from './provisioner.js';
import type { AgentRole, MethodTarget, PathLayers, ProvisionedMethod } from './types.js';
import type { UndoStep } from './undo.js';

export { DOM0_BASELINES, METHODS, type BaselineName, type MethodName };

/**
 * Every way the coordinator gives storage to a benchmark, in one place: the paper's seven
 * methods of giving a guest a disk (section 3) and dom0's baselines (Figs. 3 and 5). Each
 * entry says what its agents need, where its data lies, which tests it takes and how it
 * is set up; the campaign, the accounting and the report read them from here. Adding a
 * method: its name in METHODS (or DOM0_BASELINES) and its entry in METHOD_SPECS, here.
 */

/** Every row a report can have, in its order: dom0's baselines, then the methods. */
export const METHOD_ORDER: readonly (MethodName | BaselineName)[] = [...DOM0_BASELINES, ...METHODS];

/** The method the report's ratios are taken against (the paper's Fig. 2 baseline). */
export const REPORT_BASELINE_METHOD: MethodName = 'phy-local';

/** The agents' own descriptions (GetInfo), by role. */
export type AgentInfos = Partial<Record<AgentRole, GetInfoResponse__Output>>;

/** What the registry knows of one method or baseline. */
export interface MethodSpec {
  /** Who runs the benchmarks: the guest (a method) or dom0 itself (a baseline). */
  runsOn: 'guest' | 'dom0';
  /** The host whose own disk holds the data: dom0 (local methods) or the storage server. */
  backing: 'dom0' | 'storage';
  /** The guest's disk is an image file: the section 4.3 test (sparse vs zero-filled) runs on it. */
  imageDisk: boolean;
  /** It runs the image tests (sparse-image) too, not only the filesystem benchmarks. */
  imageBenchmarks: boolean;
  /** The dom0 baseline with the same transport, dom0 doing the I/O itself (the report's Figs. 3, 5). */
  dom0Baseline?: BaselineName;
  /** The drivers it needs, as the agents' GetInfo reports them: [role, concern]. */
  needs: ReadonlyArray<readonly [AgentRole, string]>;
  /** Why it cannot run on these agents beyond a missing driver, if so. */
  unavailable?: (infos: AgentInfos) => string | undefined;
  /** Set it up through the agents; a failed step's undos are run by the caller. */
  provision(p: Provisioner): Promise<Placement>;
  /** Its data path in a run, in words, from the run's drivers (the report's "Data paths"). */
  dataPath(l: PathLayers): string;
}

const xvdb = 'xvdb';

/** A method of giving the guest a disk: the guest runs every benchmark on it. */
function guestMethod(spec: Omit<MethodSpec, 'runsOn' | 'imageBenchmarks' | 'imageDisk'> & { imageDisk?: boolean }): MethodSpec {
  return { runsOn: 'guest', imageBenchmarks: true, imageDisk: false, ...spec };
}

/** A dom0 baseline: no guest, dom0 runs a filesystem's benchmarks itself (it has no guest disk for the image tests). */
function dom0Baseline(spec: Omit<MethodSpec, 'runsOn' | 'imageBenchmarks' | 'imageDisk' | 'dom0Baseline'>): MethodSpec {
  return { runsOn: 'dom0', imageBenchmarks: false, imageDisk: false, ...spec };
}

/** The registry: one entry per method and baseline. */
export const METHOD_SPECS: Readonly<Record<MethodName | BaselineName, MethodSpec>> = {
  'file-local': guestMethod({
    dataPath: (l) => `image file on dom0's filesystem → ${l.fileBackend()}`,
    backing: 'dom0',
    imageDisk: true,
    dom0Baseline: 'dom0-local',
    needs: [['dom0', 'hypervisor'], ['guest', 'filesystem']],
    provision: (p) => localImage(p, 'VBD_KIND_FILE'),
  }),
  'phy-local': guestMethod({
    dataPath: (l) => `image file on dom0's filesystem (a real host's phy-local disk is an LV) → ${l.phyBackend()}`,
    backing: 'dom0',
    dom0Baseline: 'dom0-local',
    needs: [['dom0', 'hypervisor'], ['guest', 'filesystem']],
    // phy-local's "local volume" here is a zero-filled file given to the guest as a block
    // device (phy); on a real host it is an LV given as phy:/dev/VG/LV.
    provision: (p) => localImage(p, 'VBD_KIND_PHY'),
  }),
  'file-nfs': guestMethod({
    dataPath: (l) => {
      const c = l.driver('dom0', 'nfs-client');
      const head = `${l.volume()}, ext4 on it, ${l.nfsServer()}`;
      if (c === 'libnfs') return `${head} → dom0's qemu-storage-daemon with qemu's NFS driver (libnfs, NFSv3) → FUSE → direct-I/O loop → the guest's VBD`;
      return `${head} → ${c === 'kernel' ? 'a kernel NFS mount in dom0' : `dom0's NFS client (${c ?? 'driver not recorded'})`} → image file → ${l.fileBackend()}${l.unavailable('dom0', 'nfs-client')}`;
    },
    backing: 'storage',
    imageDisk: true,
    dom0Baseline: 'dom0-nfs',
    needs: [['storage', 'nfs-server'], ['dom0', 'nfs-client'], ['dom0', 'hypervisor']],
    provision: async (p) => {
      // The image reached through qemu's libnfs driver: no directory mount on dom0.
      await p.volume();
      const exportPath = await p.exportNfs();
      const image = { nfsFile: { server: p.t.storageHost, exportPath, fileName: 'guest.img' } };
      // qemu's NFS driver takes no rsize/wsize: libnfs asks the server (FSINFO).
      p.nfsClient = { client: 'dom0 libnfs (qemu NFS driver), NFSv3 over TCP', options: 'rsize/wsize as the server offers them (the plan\'s NFS mount options do not apply)' };
      await p.createImage(image, p.nestedImageBytes);
      await p.startDomain([]);
      return p.guestFilesystem(await p.attachImage(image));
    },
  }),
  'file-iscsi': guestMethod({
    dataPath: (l) => `${l.volume()} → ${l.target()} → ${l.initiator('dom0')} → dom0 ext4 → image file → ${l.fileBackend()}`,
    backing: 'storage',
    imageDisk: true,
    dom0Baseline: 'dom0-iscsi',
    needs: [['storage', 'iscsi-target'], ['dom0', 'iscsi-initiator'], ['dom0', 'filesystem'], ['dom0', 'hypervisor']],
    provision: async (p) => {
      await p.volume();
      const mountpoint = await p.mountOnDom0(await p.iscsiDisk('dom0'));
      const image = { path: path.join(mountpoint, 'guest.img') };
      await p.createImage(image, p.nestedImageBytes);
      await p.startDomain([{ source: { image }, vdev: xvdb, kind: 'VBD_KIND_FILE' }]);
      return p.guestFilesystem(await p.guestVbd(xvdb));
    },
  }),
  'phy-iscsi': guestMethod({
    dataPath: (l) => `${l.volume()} → ${l.target()} → ${l.initiator('dom0')} → its device as the guest's phy: disk${l.hypervisor() === 'xen' ? ' (blkback)' : ' (the VBD)'}`,
    backing: 'storage',
    dom0Baseline: 'dom0-iscsi',
    needs: [['storage', 'iscsi-target'], ['dom0', 'iscsi-initiator'], ['dom0', 'hypervisor']],
    provision: async (p) => {
      await p.volume();
      const device = await p.iscsiDisk('dom0');
      await p.startDomain([{ source: { blockDevice: device }, vdev: xvdb, kind: 'VBD_KIND_PHY' }]);
      return p.guestFilesystem(await p.guestVbd(xvdb));
    },
  }),
  nfs: guestMethod({
    dataPath: (l) => {
      const c = l.driver('guest', 'nfs-client');
      const head = `${l.volume()}, ext4 on it, ${l.nfsServer()}`;
      return `${head} → ${c === 'kernel' || c === undefined ? 'a kernel NFS mount in the guest' : `the guest's NFS client (${c})`} (in the guest's memory, on the guest's link)${l.available('guest', 'nfs-client') ? '' : `${l.unavailable('guest', 'nfs-client')}: it needs a kernel NFS client in the guest (the VM tier)`}`;
    },
    backing: 'storage',
    dom0Baseline: 'dom0-nfs',
    needs: [['storage', 'nfs-server'], ['guest', 'nfs-client']],
    provision: async (p) => {
      await p.volume();
      const mountpoint = await p.nfsMount('guest', await p.exportNfs());
      return { guestDevice: '', guestMountpoint: mountpoint, benchmarkDirectory: mountpoint };
    },
  }),
  iscsi: guestMethod({
    dataPath: (l) => `${l.volume()} → ${l.target()} → ${l.initiator('guest')} → the guest's disk`,
    backing: 'storage',
    dom0Baseline: 'dom0-iscsi',
    needs: [['storage', 'iscsi-target'], ['guest', 'iscsi-initiator']],
    provision: async (p) => {
      await p.volume();
      return p.guestFilesystem(await p.iscsiDisk('guest'));
    },
  }),
  'dom0-local': dom0Baseline({
    dataPath: () => "a directory on dom0's own local filesystem (the one its images live on)",
    backing: 'dom0',
    needs: [['dom0', 'benchmark']],
    // dom0's own local disk: the filesystem its images live on, as it is.
    provision: async (p) => ({ guestDevice: '', guestMountpoint: '', benchmarkDirectory: p.t.dom0ImageDir }),
  }),
  'dom0-nfs': dom0Baseline({
    dataPath: (l) => {
      const head = `${l.volume()}, ext4 on it, ${l.nfsServer()} → a kernel NFS mount in dom0`;
      if (l.driver('dom0', 'nfs-client') === 'libnfs') return `${head} — not available where dom0's NFS client is libnfs, which reaches image files only`;
      return `${head}${l.unavailable('dom0', 'nfs-client')}`;
    },
    backing: 'storage',
    needs: [['storage', 'nfs-server'], ['dom0', 'nfs-client']],
    // libnfs reaches files on an export (file-nfs's image), not directories: dom0 has no
    // NFS mount to run a benchmark in.
    unavailable: (infos) => {
      const client = infos.dom0?.drivers.find((d) => d.concern === 'nfs-client' && d.selected);
      return client && client.driver !== 'kernel'
        ? `dom0's NFS client here is ${client.driver} (qemu's NFS driver), which reaches image files on an export but mounts no directory to run a benchmark in; dom0-nfs needs the kernel client (the VM tier, or a real host)`
        : undefined;
    },
    provision: async (p) => {
      await p.volume();
      return { guestDevice: '', guestMountpoint: '', benchmarkDirectory: await p.nfsMount('dom0', await p.exportNfs()) };
    },
  }),
  'dom0-iscsi': dom0Baseline({
    dataPath: (l) => `${l.volume()} → ${l.target()} → ${l.initiator('dom0')} → ext4 mounted in dom0`,
    backing: 'storage',
    needs: [['storage', 'iscsi-target'], ['dom0', 'iscsi-initiator'], ['dom0', 'filesystem']],
    provision: async (p) => {
      await p.volume();
      return { guestDevice: '', guestMountpoint: '', benchmarkDirectory: await p.mountOnDom0(await p.iscsiDisk('dom0')) };
    },
  }),
};

/** file-local and phy-local: an image on dom0's own disk, given to the guest as a file or a block device. */
async function localImage(p: Provisioner, kind: 'VBD_KIND_FILE' | 'VBD_KIND_PHY'): Promise<Placement> {
  const image = { path: path.join(p.t.dom0ImageDir, `${p.name}.img`) };
  await p.createImage(image);
  await p.startDomain([{ source: { image }, vdev: xvdb, kind }]);
  return p.guestFilesystem(await p.guestVbd(xvdb));
}

/** The registry's entry of `method`, or undefined for a name it does not know (a scale run's rows). */
export function methodSpec(method: string): MethodSpec | undefined {
  return Object.hasOwn(METHOD_SPECS, method) ? METHOD_SPECS[method as MethodName | BaselineName] : undefined;
}

/** Who ran the benchmark: dom0 for its baselines (dom0-local, dom0-nfs, dom0-iscsi), else the guest. */
export function benchmarkRole(method: string): 'guest' | 'dom0' {
  return methodSpec(method)?.runsOn ?? 'guest';
}

/** A dom0 baseline row (Figs. 3 and 5), not a method of giving a guest a disk. */
export function isDom0Baseline(method: string): method is BaselineName {
  return (DOM0_BASELINES as readonly string[]).includes(method);
}

/** The dom0 baseline `method` is held against, if any. */
export function dom0BaselineOf(method: string): BaselineName | undefined {
  return methodSpec(method)?.dom0Baseline;
}

/**
 * Methods whose drivers are not available on these agents (the selected driver of a
 * concern it needs), with the agent's own words for why: skipped, not failed — a lab of
 * namespaces has no kernel NFS client for the nfs method, and says so. Pure.
 */
export function unavailableMethods(infos: AgentInfos): Map<string, string> {
  const out = new Map<string, string>();
  for (const [method, spec] of Object.entries(METHOD_SPECS)) {
    const own = spec.unavailable?.(infos);
    if (own) {
      out.set(method, own);
      continue;
    }
    for (const [role, concern] of spec.needs) {
      const driver = infos[role]?.drivers.find((d) => d.concern === concern && d.selected);
      if (driver && !driver.available) {
        out.set(method, `the ${role} agent's ${concern} driver (${driver.driver}) is not available: ${driver.detail}`);
        break;
      }
    }
  }
  return out;
}

/**
 * Set up `method` (registry.ts) for the target's guest — or for dom0, for a baseline —
 * through agent calls only, ending with a filesystem to run benchmarks in. Each step that
 * makes something journals its undo first; on a failure the undos run in reverse and the
 * error is rethrown, so nothing is left — unless `keepOnFailure` (a cluster's re-run
 * repairing a guest set up before: what was there stays, journaled). Every call has the
 * target's deadline. Idempotent where the agents' calls are (a second set-up with the
 * same target makes nothing twice).
 * @throws VcstorError of the step that failed, named.
 */
export async function provisionMethod(
  method: MethodName | BaselineName,
  t: MethodTarget,
  signal?: AbortSignal,
  /** Called with the pending undo steps before each change, to keep them durably. */
  journal: (pending: readonly UndoStep[]) => Promise<void> = async () => undefined,
  options: { keepOnFailure?: boolean } = {},
): Promise<ProvisionedMethod> {
  const spec = METHOD_SPECS[method];
  const p = new Provisioner(method, t, signal, journal);
  try {
    return p.finish(spec.runsOn, await spec.provision(p));
  } catch (err) {
    if (!options.keepOnFailure) await p.runUndo(p.undo).catch(() => undefined);
    throw err;
  }
}
