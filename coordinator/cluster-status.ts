import path from 'node:path';
import { unary, type AgentClients } from '../common/clients.js';
import type { AgentRole, AgentSet, UndoStep } from './methods.js';

/**
 * What a cluster guest's set-up left, piece by piece, read from its journaled undo steps
 * (each names what it removes: a volume, a target, a session, a mount...), and whether
 * each piece is still there, asked of the agents with their List calls. Read-only.
 */

/** One piece of a guest's storage and whether its agent still lists it. */
export interface Piece {
  /** "volume cl-x-guest0-iscsi", "guest iSCSI session to iqn...", "guest mount /.../mnt/cl-x-guest0-iscsi". */
  what: string;
  /** The agent that holds it. */
  agent: AgentRole;
  /** The undo step that removes it (where it comes from: the journal). */
  undo: string;
  /** true: listed; false: not listed; undefined: could not tell (the agent did not answer). */
  present: boolean | undefined;
  detail?: string;
}

/** The List calls of one status look, made once per agent and call. */
export class AgentLists {
  private readonly calls = new Map<string, Promise<unknown>>();
  constructor(private readonly timeoutMs: number) {}

  /** `rpc`'s answer from `client` (at `address`), asked once per look. */
  get<R>(address: string, rpc: string, ask: () => Promise<R>): Promise<R> {
    const key = `${address} ${rpc}`;
    let call = this.calls.get(key);
    if (!call) {
      call = ask();
      this.calls.set(key, call);
    }
    return call as Promise<R>;
  }

  get T(): { timeoutMs: number } {
    return { timeoutMs: this.timeoutMs };
  }
}

type Check = { what: string; present: (agents: AgentSet, lists: AgentLists, addresses: Record<AgentRole, string>) => Promise<boolean> };

function hostStorage(who: AgentRole, agents: AgentSet): AgentClients['dom0'] | AgentClients['guest'] {
  return who === 'dom0' ? agents.dom0 : agents.guest;
}

/** What an undo step says is there, and how to ask whether it still is; undefined for a step that names nothing to look for. */
function checkOf(step: UndoStep): Check | undefined {
  const r = step.request as Record<string, unknown>;
  const who = step.agent;
  switch (step.rpc) {
    case 'DeleteVolume':
      return {
        what: `volume ${String(r.name)}`,
        present: async (a, l, at) => (await l.get(at.storage, 'ListVolumes', () => unary(a.storage, a.storage.ListVolumes, {}, l.T))).volumes.some((v) => v.name === r.name),
      };
    case 'UnexportIscsi':
      return {
        what: `iSCSI target of ${String(r.volume)}`,
        present: async (a, l, at) => (await l.get(at.storage, 'ListIscsiTargets', () => unary(a.storage, a.storage.ListIscsiTargets, {}, l.T))).targets.some((t) => t.luns.some((u) => u.volume === r.volume)),
      };
    case 'UnexportNfs':
      return {
        what: `NFS export of ${String(r.volume)}`,
        present: async (a, l, at) => (await l.get(at.storage, 'ListNfsExports', () => unary(a.storage, a.storage.ListNfsExports, {}, l.T))).exports.some((e) => e.volume === r.volume),
      };
    case 'IscsiLogout': {
      const target = r.target as { iqn?: string } | undefined;
      return {
        what: `${who} iSCSI session to ${target?.iqn ?? '?'}`,
        present: async (a, l, at) => {
          const c = hostStorage(who, a);
          const { sessions } = await l.get(at[who], 'ListIscsiSessions', () => unary(c, c.ListIscsiSessions, {}, l.T));
          return sessions.some((s) => s.target?.iqn === target?.iqn && (s.initiatorIqn === '' || s.initiatorIqn === r.initiatorIqn));
        },
      };
    }
    case 'UnmountFilesystem':
      return {
        what: `${who} mount ${String(r.mountpoint)}`,
        present: async (a, l, at) => {
          const c = hostStorage(who, a);
          return (await l.get(at[who], 'ListFilesystems', () => unary(c, c.ListFilesystems, {}, l.T))).mounts.some((m) => m.mountpoint === r.mountpoint);
        },
      };
    case 'UnmountNfs':
      return {
        what: `${who} NFS mount ${String(r.mountpoint)}`,
        present: async (a, l, at) => {
          const c = hostStorage(who, a);
          return (await l.get(at[who], 'ListNfsMounts', () => unary(c, c.ListNfsMounts, {}, l.T))).mounts.some((m) => m.mountpoint === r.mountpoint);
        },
      };
    case 'DeleteImage': {
      const location = r.location as { path?: string } | undefined;
      return {
        what: `image ${location?.path ?? JSON.stringify(location)}`,
        // Asked of its own directory: a listing of the image roots is one level deep, and
        // file-iscsi's image lies inside a mount under dom0's mount root.
        present: async (a, l, at) => {
          const directory = path.dirname(location?.path ?? '/');
          const { images } = await l.get(at.dom0, `ListImages ${directory}`, () => unary(a.dom0, a.dom0.ListImages, { directory }, l.T));
          return images.some((i) => i.location?.path === location?.path);
        },
      };
    }
    case 'StopDomain':
      return {
        what: `domain ${String(r.name)} running`,
        present: async (a, l, at) => (await l.get(at.dom0, 'ListDomains', () => unary(a.dom0, a.dom0.ListDomains, {}, l.T))).domains.some((d) => d.name === r.name && d.state === 'DOMAIN_STATE_RUNNING'),
      };
    case 'DetachVbd':
      return {
        what: `VBD ${String(r.vdev)} of ${String(r.domain)}`,
        present: async (a, l, at) => (await l.get(at.dom0, 'ListVbds', () => unary(a.dom0, a.dom0.ListVbds, {}, l.T))).vbds.some((v) => v.domain === r.domain && v.spec?.vdev === r.vdev),
      };
    default:
      return undefined;
  }
}

/**
 * Every piece a guest's journaled undo steps name, oldest first, each asked of its
 * agent. Read-only; an agent that does not answer leaves its pieces `present: undefined`.
 */
export async function checkPieces(steps: readonly UndoStep[], agents: AgentSet, addresses: Record<AgentRole, string>, lists: AgentLists): Promise<Piece[]> {
  const pieces: Piece[] = [];
  for (const step of steps) {
    const check = checkOf(step);
    if (!check) continue;
    const piece: Piece = { what: check.what, agent: step.agent, undo: step.step, present: undefined };
    try {
      piece.present = await check.present(agents, lists, addresses);
    } catch (err) {
      piece.detail = `the ${step.agent} agent at ${addresses[step.agent]} did not say: ${err instanceof Error ? err.message : String(err)}`;
    }
    pieces.push(piece);
  }
  return pieces;
}
