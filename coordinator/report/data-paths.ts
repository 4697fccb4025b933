/**
 * What each row's bytes went through in this run, from the benchmark's files down to the
 * disk: composed from the drivers each agent selected (the set-up), or, for a run that
 * recorded none, the namespace lab's path and a real host's. Pure functions.
 */

import { methodSpec, type PathLayers } from '../methods.js';
import type { MeasurementRecord, RunSetup } from '../model.js';
import { measurementOutcome, orderMethods } from './analysis.js';
import { esc } from './format.js';

/** One row's data path in this run (the "Data paths" section). */
export interface DataPath {
  /** A method or a dom0 baseline. */
  method: string;
  /** Its path, from the benchmark's files down to the disk, as this run's drivers make it. */
  text: string;
  /** The drivers it follows from ("dom0 hypervisor=sandbox, ..."); empty when none apply. */
  basis: string;
}

type Role = RunSetup['hosts'][number]['role'];
type DriverLookup = (role: Role, concern: string) => { driver: string; available: boolean } | undefined;

/** The selected drivers of a set-up: "iscsi-target=tgt", "nfs-client=kernel (unavailable)". */
function driverLookup(setup: RunSetup): DriverLookup {
  return (role, concern) => {
    for (const host of setup.hosts.filter((h) => h.role === role)) {
      for (const entry of host.drivers) {
        const at = entry.indexOf('=');
        if (at < 0 || entry.slice(0, at) !== concern) continue;
        return selectedDriver(entry.slice(at + 1));
      }
    }
    return undefined;
  };
}

/** A selected driver as a set-up writes it: "kernel", or "kernel (unavailable)" where its host lacks what it needs. */
function selectedDriver(text: string): { driver: string; available: boolean } {
  const unavailable = / \(unavailable\)$/;
  return { driver: text.replace(unavailable, ''), available: !unavailable.test(text) };
}

/** The namespace lab's drivers and a real host's (README's two columns), for a run that recorded none. */
const LAB_DRIVERS: Record<string, string> = { 'storage volumes': 'filepool', 'storage iscsi-target': 'tgt', 'storage nfs-server': 'ganesha', 'dom0 iscsi-initiator': 'qsd', 'dom0 nfs-client': 'libnfs', 'dom0 hypervisor': 'sandbox', 'guest iscsi-initiator': 'qsd', 'guest nfs-client': 'kernel (unavailable)' };
const REAL_DRIVERS: Record<string, string> = { 'storage volumes': 'lvm', 'storage iscsi-target': 'lio', 'storage nfs-server': 'kernel', 'dom0 iscsi-initiator': 'open-iscsi', 'dom0 nfs-client': 'kernel', 'dom0 hypervisor': 'xen', 'guest iscsi-initiator': 'open-iscsi', 'guest nfs-client': 'kernel' };

/** The drivers of a fixed table (LAB_DRIVERS, REAL_DRIVERS), looked up as a set-up's are. */
function fixedDrivers(table: Record<string, string>): DriverLookup {
  return (role, concern) => {
    const value = table[`${role} ${concern}`];
    return value === undefined ? undefined : selectedDriver(value);
  };
}

/**
 * A method's path from its drivers (README, "What each method's data path is": the lab's
 * and a real host's texts, composed per layer, since a run may mix them — the VM tier runs
 * open-iscsi and kernel NFS under the sandbox hypervisor). Records each driver it used.
 */
function composePath(method: string, lookup: DriverLookup, used: string[]): string | undefined {
  const d = (role: Role, concern: string): string | undefined => {
    const found = lookup(role, concern);
    if (!found) return undefined;
    const entry = `${role} ${concern}=${found.driver}${found.available ? '' : ' (unavailable)'}`;
    if (!used.includes(entry)) used.push(entry);
    return found.driver;
  };
  const available = (role: Role, concern: string): boolean => lookup(role, concern)?.available !== false;
  const volume = (): string => {
    const v = d('storage', 'volumes');
    return v === 'lvm' ? 'a storage-server volume (an LV)' : v === 'filepool' ? 'a storage-server volume (a pool file on a loop device)' : 'a storage-server volume';
  };
  const target = (): string => {
    const t = d('storage', 'iscsi-target');
    return t === 'tgt' ? 'tgtd (aio backing store)' : t === 'lio' ? 'LIO (targetcli)' : t ? `the ${t} iSCSI target` : 'the iSCSI target (driver not recorded)';
  };
  const nfsServer = (): string => {
    const s = d('storage', 'nfs-server');
    return s === 'ganesha' ? 'exported by nfs-ganesha' : s === 'kernel' ? "exported by the kernel's nfsd" : s ? `exported by ${s}` : 'NFS-exported';
  };
  const initiator = (host: 'dom0' | 'guest'): string => {
    const whose = host === 'dom0' ? "dom0's" : "the guest's own";
    const where = `in ${host === 'dom0' ? "dom0's" : "the guest's"} memory, on ${host === 'dom0' ? "dom0's" : "the guest's"} link`;
    const i = d(host, 'iscsi-initiator');
    if (i === 'qsd') return `${whose} initiator (qemu-storage-daemon + libiscsi → FUSE → direct-I/O loop; ${where})`;
    if (i === 'open-iscsi') return `${whose} initiator (open-iscsi, the kernel's; ${where})`;
    return `${whose} initiator (${i ?? 'driver not recorded'}; ${where})`;
  };
  const hypervisor = (): string | undefined => d('dom0', 'hypervisor');
  const fileBackend = (): string => {
    const h = hypervisor();
    if (h === 'sandbox') return "dom0's qemu-storage-daemon (driver=file, buffered: dom0's page cache, in dom0's memory) → FUSE → direct-I/O loop device → the guest's VBD";
    if (h === 'xen') return "Xen file: VBD (blkback over a loop device, dom0's page cache)";
    return `dom0's file backend (hypervisor ${h ?? 'not recorded'}) → the guest's VBD`;
  };
  const phyBackend = (): string => {
    const h = hypervisor();
    const loop = 'loop device with direct I/O (no dom0 cache, as a phy: disk has none)';
    if (h === 'sandbox') return `${loop} → the guest's VBD`;
    if (h === 'xen') return `${loop} → phy: VBD`;
    return `${loop} → the guest's VBD (hypervisor ${h ?? 'not recorded'})`;
  };
  const unavailable = (role: Role, concern: string): string => {
    const found = lookup(role, concern);
    return found && !found.available ? ` — ${role}'s ${concern} driver (${found.driver}) is not available on its host` : '';
  };
  const layers: PathLayers = { driver: d, available, unavailable, volume, target, nfsServer, initiator, hypervisor, fileBackend, phyBackend };
  return methodSpec(method)?.dataPath(layers);
}

/** The reason of a row whose every measurement was skipped ("skipped: ..."), else undefined. */
function skippedReason(measurements: MeasurementRecord[], method: string): string | undefined {
  const of = measurements.filter((m) => m.method === method);
  if (of.length === 0 || !of.every((m) => measurementOutcome(m) === 'skipped')) return undefined;
  return of[0]!.error.replace(/^skipped:\s*/, '');
}

/**
 * Each row's data path in this run, dom0's baselines first, then the methods in the
 * paper's order: derived from the set-up's drivers (hypervisor sandbox or xen, iSCSI
 * initiator qsd or open-iscsi, NFS client libnfs or kernel, ...); without a set-up, the
 * namespace lab's path and a real host's, both. A row whose every measurement was skipped
 * says so, with the measurement's reason. Pure.
 */
export function dataPaths(measurements: MeasurementRecord[], setup?: RunSetup): DataPath[] {
  return orderMethods(measurements.map((m) => m.method)).map((method): DataPath => {
    let text: string;
    let basis: string;
    if (setup) {
      const used: string[] = [];
      text = composePath(method, driverLookup(setup), used) ?? 'not one of the paper\'s methods: no data path known';
      basis = used.length > 0 ? `from the set-up: ${used.join(', ')}` : '';
    } else {
      const lab = composePath(method, fixedDrivers(LAB_DRIVERS), []);
      const real = composePath(method, fixedDrivers(REAL_DRIVERS), []);
      text = lab === undefined || real === undefined ? 'not one of the paper\'s methods: no data path known' : `in the namespace lab, ${lab}; on a real host, ${real}`;
      basis = 'drivers not recorded (no set-up)';
    }
    const skipped = skippedReason(measurements, method);
    if (skipped !== undefined) text += `. Skipped in this run: ${skipped}`;
    return { method, text, basis };
  });
}

/** The page's "Data paths" section: {@link dataPaths} as a list; empty without rows. */
export function renderDataPaths(measurements: MeasurementRecord[], setup?: RunSetup): string {
  const paths = dataPaths(measurements, setup);
  if (paths.length === 0) return '';
  return [
    '<section class="data-paths">',
    '<h2>Data paths</h2>',
    `<p>What each row's bytes went through in this run, from the benchmark's files to the disk${setup ? ', as the drivers each agent selected make it (in brackets)' : ': the run recorded no set-up, so both the namespace lab\'s path and a real host\'s are given'}. dom0's baselines run the benchmark in dom0 itself: no guest, no VBD.</p>`,
    '<ul class="data-paths">',
    ...paths.map((p) => `<li data-method="${esc(p.method)}"><strong>${esc(p.method)}</strong>: ${esc(p.text)}${p.basis ? ` <span class="basis">[${esc(p.basis)}]</span>` : ''}</li>`),
    '</ul>',
    '</section>',
  ].join('\n');
}
