import { createHash } from 'node:crypto';
import { z } from 'zod';
import { NFS_MOUNT_OPTIONS } from '../common/requests.js';
import { validateValue, type StructuredText } from '../common/structured.js';
import { validateAddressOrCidr, validateIqn, validateOptions } from '../common/validate.js';
import { METHODS, type MethodName } from './methods/names.js';
import { absolute, address, check, name, planHeader, size, storageAgent, withSecrets, type WithSecrets } from './plan-header.js';

/**
 * A cluster plan (`cluster:` section): the storage of a virtual cluster — N storage
 * servers, M dom0 hosts and the guests on each dom0, every guest given a disk by a method
 * of the registry — provisioned and left in place (`vcstor provision`), looked at
 * (`vcstor status`) and torn down (`vcstor teardown`). One dom0's or guest's fields are
 * the campaign plan's (addresses, IQNs, directories).
 */

const MIB = 1024 ** 2;
const GIB = 1024 ** 3;
const iqn = z.string().superRefine(check((v) => validateIqn('iqn', v)));

const guestSchema = z
  .object({
    name,
    address,
    initiatorIqn: iqn,
    mountDir: absolute,
    /** The guest's domain name on its dom0 (default: its name). */
    domain: name.optional(),
    /** Its method (default: the cluster's `method`). */
    method: z.enum(METHODS).optional(),
    /** Its disk's size (default: the cluster's `diskSize`). */
    diskSize: size(16 * MIB, 16 * 1024 * GIB).optional(),
    /** The storage server its disk comes from, by name (default: the servers in turn, by the guest's place in the plan). */
    storage: name.optional(),
  })
  .strict();

const dom0Schema = z
  .object({
    name,
    address,
    initiatorIqn: iqn,
    imageDir: absolute,
    mountDir: absolute,
    guests: z.array(guestSchema).min(1),
  })
  .strict();

const clusterSchema = z
  .object({
    storage: z.array(storageAgent.extend({ name }).strict()).min(1),
    dom0: z.array(dom0Schema).min(1),
    /** The method of every guest that names none. */
    method: z.enum(METHODS).optional(),
    diskSize: size(16 * MIB, 16 * 1024 * GIB).default(256 * MIB),
    sparse: z.boolean().default(false),
    /** Who may mount NFS exports (dom0 for file-nfs, the guests for nfs): an IP or CIDR. */
    nfsClients: z.string().superRefine(check((v) => validateAddressOrCidr('nfsClients', v))),
    nfsMountOptions: z.array(z.string().superRefine(check((v) => validateOptions('option', [v], NFS_MOUNT_OPTIONS)))).default([]),
    /** How many guests are set up (or torn down) at once: in all, and per agent (a storage server, a dom0, a guest). */
    concurrency: z.object({ overall: z.number().int().min(1).max(256).default(4), perAgent: z.number().int().min(1).max(64).default(2) }).strict().default({ overall: 4, perAgent: 2 }),
    /** How long one agent call may take. */
    stepTimeoutS: z.number().int().min(10).max(86_400).default(600),
  })
  .strict();

/**
 * The checks every plan with a `cluster` section makes across its hosts: names, IQNs,
 * addresses and domains unique; each guest's storage server exists; with `requireMethod`,
 * every guest has a method (its own or the cluster's).
 */
export function checkClusterHosts(c: z.output<typeof clusterSchema>, ctx: z.RefinementCtx, requireMethod: boolean): void {
  const seen = new Map<string, string>();
  const unique = (kind: string, value: string, at: (string | number)[]) => {
    const key = `${kind} ${value}`;
    if (seen.has(key)) ctx.addIssue({ code: 'custom', path: ['cluster', ...at], message: `${kind} ${JSON.stringify(value)} is given twice (also at ${seen.get(key)})` });
    else seen.set(key, at.join('.'));
  };
  c.storage.forEach((s, i) => unique('host name', s.name, ['storage', i, 'name']));
  c.dom0.forEach((d, i) => {
    unique('host name', d.name, ['dom0', i, 'name']);
    unique('initiator IQN', d.initiatorIqn, ['dom0', i, 'initiatorIqn']);
    d.guests.forEach((g, j) => {
      const at = ['dom0', i, 'guests', j];
      unique('host name', g.name, [...at, 'name']);
      unique('initiator IQN', g.initiatorIqn, [...at, 'initiatorIqn']);
      unique('guest address', g.address, [...at, 'address']);
      unique('domain', g.domain ?? g.name, [...at, g.domain ? 'domain' : 'name']);
      if (requireMethod && !g.method && !c.method) ctx.addIssue({ code: 'custom', path: ['cluster', ...at, 'method'], message: 'give the guest a method, or the cluster one (cluster.method)' });
      if (g.storage && !c.storage.some((s) => s.name === g.storage)) ctx.addIssue({ code: 'custom', path: ['cluster', ...at, 'storage'], message: `no storage server ${JSON.stringify(g.storage)} in cluster.storage` });
    });
  });
}

/** The hosts of a cluster (`cluster:`): what a shared-space plan names its hosts with too. */
export { clusterSchema };

const clusterPlanSchema = z
  .object({ name: planHeader.name, tls: planHeader.tls, chap: planHeader.chap, nats: planHeader.nats, cluster: clusterSchema })
  .strict()
  .superRefine((plan, ctx) => checkClusterHosts(plan.cluster, ctx, true));

/** A cluster plan as validated. */
export type ClusterPlanValue = z.output<typeof clusterPlanSchema>;
/** A cluster plan as parsed: validated, with its secrets. */
export type ClusterPlan = WithSecrets<ClusterPlanValue>;
export type ClusterStorage = ClusterPlanValue['cluster']['storage'][number];
export type ClusterDom0 = ClusterPlanValue['cluster']['dom0'][number];

/** One guest of a cluster with everything its set-up needs resolved: its dom0, storage server, method, size and names. */
export interface ClusterGuest {
  name: string;
  domain: string;
  method: MethodName;
  sizeBytes: number;
  address: string;
  initiatorIqn: string;
  mountDir: string;
  dom0: Omit<ClusterDom0, 'guests'>;
  storage: ClusterStorage;
  /** Prefix of every name its set-up makes (volume, image, mountpoints): from the plan's and the guest's names, so a re-run finds them. */
  prefix: string;
}

/**
 * Every guest of a cluster plan, in the plan's order, resolved. Pure.
 */
export function clusterGuests(plan: Pick<ClusterPlanValue, 'name' | 'cluster'>): ClusterGuest[] {
  const c = plan.cluster;
  const out: ClusterGuest[] = [];
  for (const d of c.dom0) {
    const { guests, ...dom0 } = d;
    for (const g of guests) {
      const storage = g.storage ? c.storage.find((s) => s.name === g.storage)! : c.storage[out.length % c.storage.length]!;
      out.push({
        name: g.name,
        domain: g.domain ?? g.name,
        method: (g.method ?? c.method)!,
        sizeBytes: g.diskSize ?? c.diskSize,
        address: g.address,
        initiatorIqn: g.initiatorIqn,
        mountDir: g.mountDir,
        dom0,
        storage,
        prefix: `${slug(plan.name).slice(0, 20)}-${slug(g.name).slice(0, 24)}`.replace(/-+$/, ''),
      });
    }
  }
  return out;
}

/**
 * What a guest's set-up depends on: a guest provisioned with another key must be torn
 * down before it is set up again (a re-run changes nothing it has). Pure.
 */
export function guestSpecKey(g: ClusterGuest, plan: ClusterPlanValue): string {
  return JSON.stringify([g.method, g.sizeBytes, plan.cluster.sparse, g.storage.address, g.storage.host, g.dom0.address, g.dom0.initiatorIqn, g.dom0.imageDir, g.dom0.mountDir, g.address, g.initiatorIqn, g.mountDir, g.domain, g.prefix]);
}

function slug(value: string): string {
  return value.toLowerCase().replace(/[^a-z0-9-]+/g, '-');
}

/**
 * The run id of a cluster plan, from its name (`cl-<name>`, with a hash when the name has
 * characters a run id cannot): every provision of the plan is the same run, so a re-run
 * finds the journal and records of the last, and status and teardown need only the name.
 * Pure.
 */
export function clusterRunId(planName: string): string {
  const plain = `cl-${planName}`;
  if (/^[a-z0-9-]{1,64}$/.test(plain)) return plain;
  const hash = createHash('sha256').update(planName).digest('hex').slice(0, 8);
  return `cl-${slug(planName).slice(0, 50)}-${hash}`;
}

/**
 * Validate a cluster plan already read from its text; the CHAP (and NATS) password is
 * read from its file.
 * @throws VcstorError INVALID_ARGUMENT naming the file, line and field at fault.
 */
export async function validateClusterPlan({ value, doc, lineCounter }: StructuredText, source: string): Promise<ClusterPlan> {
  return withSecrets(validateValue(clusterPlanSchema, value, source, doc, lineCounter), source);
}
