import { readdir, readFile, readlink, stat } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../../common/errors.js';
import { ISCSI_SESSION_KEYS } from '../../common/iscsi-params.js';
import { TPG_ATTRIBUTES, TPG_DIR, type BackingKind, type ChapSettings, type LioAcl, type LioSession, type LioSnapshot, type LioStorageObject, type LioTargetSnapshot, type LioTpg, type LunLink, type StorageObjectRef } from './lio-model.js';

/**
 * What the LIO driver reads from the host: LIO's configfs tree (as rtslib and targetcli
 * themselves read it) and what a backing path is. No command is run.
 */

/**
 * Parse an ACL's `info` file (lio_target_nacl_info_show): undefined when it says "No
 * active iSCSI Session", else the initiator and the address of its first connection.
 */
export function parseLioSessionInfo(text: string, aclInitiatorIqn = ''): LioSession | undefined {
  if (text.trim() === '' || /^No active iSCSI Session/m.test(text)) return undefined;
  const name = /^InitiatorName:\s*(\S+)/m.exec(text)?.[1] ?? aclInitiatorIqn;
  // "   Address 192.0.2.7 TCP  StatSN: 0x..." (older kernels print the same words).
  const address = /^\s*Address\s+(\S+)/m.exec(text)?.[1] ?? '';
  return { initiatorIqn: name, address: address.replace(/^\[(.*)\]$/, '$1') };
}

/**
 * Parse a TPG's `dynamic_sessions` file: one initiator name per line, each followed by
 * a NUL byte (target_show_dynamic_sessions counts the terminator into the output).
 */
export function parseLioDynamicSessions(text: string): string[] {
  return text
    .split(/[\n\0]/)
    .map((line) => line.trim())
    .filter((line) => line !== '');
}

/** What `backingPath` is, by stat(2): a block device, a file, something else, or missing. */
export async function statBackingKind(backingPath: string): Promise<BackingKind> {
  try {
    const info = await stat(backingPath);
    if (info.isBlockDevice()) return 'block';
    return info.isFile() ? 'file' : 'other';
  } catch (err) {
    if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') return 'missing';
    throw err;
  }
}

function errorCode(err: unknown): string | undefined {
  return err instanceof Error ? (err as NodeJS.ErrnoException).code : undefined;
}

/** LIO's configfs tree under `root` (normally /sys/kernel/config/target), read-only. */
export class LioConfigfs {
  constructor(private readonly root: string) {}

  /**
   * Everything the driver needs to know about LIO, read in one pass: storage objects,
   * the LUNs of every fabric that use them, and each iSCSI target's tpg1. Read-only.
   * @throws VcstorError FAILED_PRECONDITION when configfs cannot be read (not root),
   *   INTERNAL for other read failures.
   */
  async snapshot(): Promise<LioSnapshot> {
    const root = this.root;
    const storageObjects: LioStorageObject[] = [];
    for (const hba of await this.directories(path.join(root, 'core'))) {
      // HBA directories are "<plugin>_<index>"; core/ also holds alua/ and others.
      const plugin = /^(.+)_\d+$/.exec(hba)?.[1];
      if (!plugin) continue;
      for (const name of await this.directories(path.join(root, 'core', hba))) {
        const backingPath = (await this.readValue(path.join(root, 'core', hba, name, 'udev_path'))) ?? '';
        storageObjects.push({ hba, plugin, name, backingPath });
      }
    }

    // LUNs of every fabric (iscsi, loopback, vhost...) count as users of a backstore.
    const lunLinks: LunLink[] = [];
    for (const fabric of (await this.directories(root)).filter((d) => d !== 'core')) {
      for (const wwn of await this.directories(path.join(root, fabric))) {
        for (const tpgt of (await this.directories(path.join(root, fabric, wwn))).filter((d) => /^tpgt_\d+$/.test(d))) {
          const lunRoot = path.join(root, fabric, wwn, tpgt, 'lun');
          for (const lunDir of (await this.directories(lunRoot)).filter((d) => /^lun_\d+$/.test(d))) {
            const ref = await this.readLunLink(path.join(lunRoot, lunDir));
            if (ref) lunLinks.push({ owner: `${fabric}/${wwn}/${tpgt}/${lunDir}`, ...ref });
          }
        }
      }
    }

    const targets = new Map<string, LioTargetSnapshot>();
    // iscsi/ also holds discovery_auth/ and lio_version: targets are named like IQNs.
    for (const iqn of (await this.directories(path.join(root, 'iscsi'))).filter((d) => /^(iqn|eui|naa)\./.test(d))) {
      targets.set(iqn, { iqn, tpg: await this.readTpg(path.join(root, 'iscsi', iqn, TPG_DIR)) });
    }
    return { targets, storageObjects, lunLinks };
  }

  private async readTpg(tpgDir: string): Promise<LioTpg | undefined> {
    if ((await this.directories(path.dirname(tpgDir))).every((d) => d !== TPG_DIR)) return undefined;
    const luns: LioTpg['luns'] = [];
    for (const lunDir of await this.directories(path.join(tpgDir, 'lun'))) {
      const number = /^lun_(\d+)$/.exec(lunDir)?.[1];
      if (number === undefined) continue;
      luns.push({ lun: Number(number), storageObject: await this.readLunLink(path.join(tpgDir, 'lun', lunDir)) });
    }
    const acls: LioAcl[] = [];
    for (const initiatorIqn of await this.directories(path.join(tpgDir, 'acls'))) {
      const aclDir = path.join(tpgDir, 'acls', initiatorIqn);
      const mappedLuns = (await this.directories(aclDir))
        .map((d) => /^lun_(\d+)$/.exec(d)?.[1])
        .filter((n): n is string => n !== undefined)
        .map(Number);
      const session = parseLioSessionInfo((await this.readRaw(path.join(aclDir, 'info'))) ?? '', initiatorIqn);
      acls.push({ initiatorIqn, chap: await this.readChap(path.join(aclDir, 'auth')), mappedLuns, ...(session ? { session } : {}) });
    }
    const attributes: LioTpg['attributes'] = {};
    for (const key of TPG_ATTRIBUTES) {
      const value = await this.readValue(path.join(tpgDir, 'attrib', key));
      if (value !== undefined) attributes[key] = value;
    }
    const params: LioTpg['params'] = {};
    for (const { rfcKey } of ISCSI_SESSION_KEYS) {
      const value = await this.readValue(path.join(tpgDir, 'param', rfcKey));
      if (value !== undefined) params[rfcKey] = value;
    }
    return {
      enabled: (await this.readValue(path.join(tpgDir, 'enable'))) !== '0',
      params,
      luns: luns.sort((a, b) => a.lun - b.lun),
      acls,
      portals: await this.directories(path.join(tpgDir, 'np')),
      attributes,
      chap: await this.readChap(path.join(tpgDir, 'auth')),
      dynamicSessionInitiators: parseLioDynamicSessions((await this.readRaw(path.join(tpgDir, 'dynamic_sessions'))) ?? ''),
    };
  }

  /** LIO shows a cleared CHAP value as "NULL" (rtslib writes that word to clear it). */
  private async readChap(authDir: string): Promise<ChapSettings> {
    const read = async (file: string) => {
      const value = (await this.readValue(path.join(authDir, file))) ?? '';
      return value === 'NULL' ? '' : value;
    };
    return {
      userid: await read('userid'),
      password: await read('password'),
      mutualUserid: await read('userid_mutual'),
      mutualPassword: await read('password_mutual'),
    };
  }

  /** A LUN directory holds one symlink to core/<hba>/<name>: the backstore it serves. */
  private async readLunLink(lunDir: string): Promise<StorageObjectRef | undefined> {
    let entries;
    try {
      entries = await readdir(lunDir, { withFileTypes: true });
    } catch (err) {
      return this.ignoreMissing(err, lunDir, undefined);
    }
    const link = entries.find((entry) => entry.isSymbolicLink());
    if (!link) return undefined; // a broken LUN: no storage object attached
    const target = path.resolve(lunDir, await readlink(path.join(lunDir, link.name)));
    return { hba: path.basename(path.dirname(target)), name: path.basename(target) };
  }

  private async directories(dir: string): Promise<string[]> {
    try {
      const entries = await readdir(dir, { withFileTypes: true });
      return entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
    } catch (err) {
      return this.ignoreMissing(err, dir, []);
    }
  }

  private async readRaw(file: string): Promise<string | undefined> {
    try {
      return await readFile(file, 'utf8');
    } catch (err) {
      return this.ignoreMissing(err, file, undefined);
    }
  }

  private async readValue(file: string): Promise<string | undefined> {
    return (await this.readRaw(file))?.replace(/\0/g, '').trim();
  }

  /** A missing file or directory is "not there"; anything else says why configfs is unreadable. */
  private ignoreMissing<T>(err: unknown, file: string, fallback: T): T {
    const code = errorCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return fallback;
    if (code === 'EACCES' || code === 'EPERM') {
      throw new VcstorError('FAILED_PRECONDITION', `cannot read LIO's configfs (${file}: ${code}); the storage agent must run as root to use LIO`, { cause: err });
    }
    throw new VcstorError('INTERNAL', `cannot read LIO's configfs at ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}
