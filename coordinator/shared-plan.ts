import { z } from 'zod';
import { validateValue, type StructuredText } from '../common/structured.js';
import { checkClusterHosts, clusterGuests, clusterSchema, type ClusterGuest } from './cluster-plan.js';
import { METHODS, type MethodName } from './methods/names.js';
import { absolute, check, name, planHeader, size, withSecrets, type WithSecrets } from './plan-header.js';
import { postmarkSchema } from './plan.js';
import { validateIqn } from '../common/validate.js';

/**
 * A shared-space plan (`shared:` beside a `cluster:` of hosts): the comparison of paper
 * section 5 — for 1, 2, 4, ... guests at once, how much each way of giving a virtual
 * cluster one space to share (a parallel file system over the storage servers; a NAS
 * head) gives in all and to each guest, against per-guest methods (each guest its own
 * iSCSI LUN) for contrast. Every space is set up, measured at each guest count and taken
 * down before the next: the run leaves nothing.
 */

/** The shared spaces of section 5 that this coordinator sets up. */
export const SHARED_SPACES = ['parallel-fs', 'nas-head', 'ip-san'] as const;
export type SharedSpaceName = (typeof SHARED_SPACES)[number];
/** What a plan can compare: a shared space, or a method giving each guest its own disk (contrast). */
export type SpaceName = SharedSpaceName | MethodName;

const MIB = 1024 ** 2;
const GIB = 1024 ** 3;

const sharedSchema = z
  .object({
    /** The spaces compared, in this order. */
    spaces: z.array(z.enum([...SHARED_SPACES, ...METHODS])).min(1),
    /** Guests writing and reading at once, ascending: the first N guests of the plan, spread over its dom0 hosts. */
    guestCounts: z.array(z.number().int().min(1).max(256)).min(1),
    repetitions: z.number().int().min(1).max(20).default(1),
    /**
     * PostMark on the shared directory: after each count's fio phases, the same guests run
     * PostMark at once, each in a directory of its own in the space (metadata: creates,
     * appends, deletes through the space's server). Absent: not run.
     */
    postmark: postmarkSchema.optional(),
    /**
     * nas-head: a storage server (`head`) logs in to a LUN of another (`san`), puts ext4 on
     * it under its export root (`exportDir`) and re-exports it over NFS to every guest.
     */
    nasHead: z
      .object({
        head: name,
        san: name,
        /** The head's initiator IQN: the SAN's target lets only it in. */
        initiatorIqn: z.string().superRefine(check((v) => validateIqn('initiatorIqn', v))),
        /** The head's NFS export root (its agent's storage.nfsServer.exportRoot). */
        exportDir: absolute,
      })
      .strict()
      .optional(),
    /**
     * Each guest's fio job: a file of `size` written in `blockSize` blocks (O_DIRECT where
     * the client takes it), caches dropped, then read back and its pattern checked — by
     * another guest where the space is shared.
     */
    fio: z
      .object({
        size: size(4 * MIB, 64 * GIB).default(64 * MIB),
        blockSize: size(4096, 64 * MIB).default(MIB),
        direct: z.boolean().default(true),
      })
      .strict()
      .default({ size: 64 * MIB, blockSize: MIB, direct: true }),
  })
  .strict();

const sharedPlanSchema = z
  .object({ name: planHeader.name, tls: planHeader.tls, chap: planHeader.chap, nats: planHeader.nats, cluster: clusterSchema, shared: sharedSchema })
  .strict()
  .superRefine((plan, ctx) => {
    checkClusterHosts(plan.cluster, ctx, false);
    const guests = plan.cluster.dom0.reduce((n, d) => n + d.guests.length, 0);
    const counts = plan.shared.guestCounts;
    counts.forEach((n, i) => {
      if (n > guests) ctx.addIssue({ code: 'custom', path: ['shared', 'guestCounts', i], message: `${n} guests at once, but the plan has ${guests}` });
      if (i > 0 && n <= counts[i - 1]!) ctx.addIssue({ code: 'custom', path: ['shared', 'guestCounts', i], message: 'the counts must ascend' });
    });
    if (new Set(plan.shared.spaces).size !== plan.shared.spaces.length) ctx.addIssue({ code: 'custom', path: ['shared', 'spaces'], message: 'a space is named twice' });
    const nas = plan.shared.nasHead;
    if (plan.shared.spaces.includes('nas-head')) {
      if (!nas) ctx.addIssue({ code: 'custom', path: ['shared', 'nasHead'], message: 'nas-head needs shared.nasHead: the head and SAN storage servers, the head\'s initiator IQN and export root' });
      else {
        for (const field of ['head', 'san'] as const) {
          if (!plan.cluster.storage.some((s) => s.name === nas[field])) ctx.addIssue({ code: 'custom', path: ['shared', 'nasHead', field], message: `no storage server ${JSON.stringify(nas[field])} in cluster.storage` });
        }
        if (nas.head === nas.san) ctx.addIssue({ code: 'custom', path: ['shared', 'nasHead', 'san'], message: 'the NAS head re-exports another server\'s LUN: name two storage servers' });
      }
    }
    if (plan.shared.spaces.includes('parallel-fs') && plan.cluster.storage.length < 2) {
      ctx.addIssue({ code: 'custom', path: ['shared', 'spaces'], message: 'parallel-fs spreads its volume over the storage servers: give cluster.storage two or more' });
    }
    // Room for the files: cluster.diskSize is each brick, and each guest's own disk.
    const c = plan.cluster;
    const most = Math.max(...counts);
    const usable = (bytes: number) => bytes * 0.9;
    // A distributed volume places each file on one brick by a hash of its name: all of
    // them may land on the same brick.
    if (plan.shared.spaces.includes('parallel-fs') && plan.shared.fio.size * most > usable(c.diskSize)) {
      ctx.addIssue({ code: 'custom', path: ['shared', 'fio', 'size'], message: `${most} files of ${plan.shared.fio.size} bytes do not fit one brick of ${c.diskSize} bytes (cluster.diskSize) with a tenth to spare, and a distributed volume may put them all on one` });
    }
    if (plan.shared.spaces.includes('nas-head') && plan.shared.fio.size * most > usable(c.diskSize)) {
      ctx.addIssue({ code: 'custom', path: ['shared', 'fio', 'size'], message: `${most} files of ${plan.shared.fio.size} bytes do not fit the NAS head's LUN of ${c.diskSize} bytes (cluster.diskSize) with a tenth to spare` });
    }
    if (plan.shared.spaces.some((space) => !(SHARED_SPACES as readonly string[]).includes(space)) && plan.shared.fio.size > usable(c.diskSize * 0.75)) {
      ctx.addIssue({ code: 'custom', path: ['shared', 'fio', 'size'], message: `a file of ${plan.shared.fio.size} bytes does not fit a guest's own disk of ${c.diskSize} bytes (cluster.diskSize; an image inside a filesystem gets 3/4 of it) with a tenth to spare` });
    }
  });

export type SharedPlanValue = z.output<typeof sharedPlanSchema>;
export type SharedPlan = WithSecrets<SharedPlanValue>;

/**
 * The plan's guests in the order the counts take them: round-robin over the dom0 hosts
 * (the first of each dom0, then the second of each, ...), so two guests at once are on
 * two hosts where the plan has two; and a guest that names no storage server gets them in
 * turn in that order, so that N guests of a per-guest method spread over the servers as a
 * parallel file system's files do (a fair contrast). Pure.
 */
export function sharedGuests(plan: SharedPlanValue): ClusterGuest[] {
  const all = clusterGuests(plan);
  const byDom0 = plan.cluster.dom0.map((d) => all.filter((g) => g.dom0.name === d.name));
  const ordered: ClusterGuest[] = [];
  for (let i = 0; ordered.length < all.length; i++) for (const list of byDom0) if (list[i]) ordered.push(list[i]!);
  const named = new Set(plan.cluster.dom0.flatMap((d) => d.guests.filter((g) => g.storage).map((g) => g.name)));
  const servers = plan.cluster.storage;
  return ordered.map((g, i) => (named.has(g.name) ? g : { ...g, storage: servers[i % servers.length]! }));
}

/**
 * Validate a shared-space plan already read from its text; the CHAP (and NATS) password is
 * read from its file.
 * @throws VcstorError INVALID_ARGUMENT naming the file, line and field at fault.
 */
export async function validateSharedPlan({ value, doc, lineCounter }: StructuredText, source: string): Promise<SharedPlan> {
  return withSecrets(validateValue(sharedPlanSchema, value, source, doc, lineCounter), source);
}
