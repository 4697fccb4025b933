import { readFile, rename, writeFile } from 'node:fs/promises';
import { VcstorError } from '../../common/errors.js';
import type { NfsClientSpec, NfsExportSpec, NfsServerDriver } from './types.js';

const BEGIN = '# BEGIN vcstor exports (written by the storage agent; edits here are replaced)';
const END = '# END vcstor exports';

const SQUASH: Record<NfsClientSpec['squash'], string> = { root: 'Root_Squash', none: 'No_Root_Squash', all: 'All_Squash' };

/** Characters that would break out of a quoted ganesha config value. */
const UNSAFE = /["\\;{}\n\r]/;

/** The EXPORT blocks for `exports`, one per export, one CLIENT block per rule. */
export function renderGaneshaExports(exports: readonly NfsExportSpec[]): string {
  const blocks = exports.map((e) => {
    for (const value of [e.path, e.pseudoPath]) {
      if (UNSAFE.test(value)) throw new VcstorError('INVALID_ARGUMENT', `${JSON.stringify(value)} cannot be written into a ganesha config`);
    }
    // Clients is a bare list (ganesha rejects a quoted one): one validated entry per block.
    for (const c of e.clients) {
      if (!/^[A-Za-z0-9.:/*_-]+$/.test(c.match)) throw new VcstorError('INVALID_ARGUMENT', `${JSON.stringify(c.match)} is not a client ganesha can match`);
    }
    const clients = e.clients.map(
      (c) => `  CLIENT { Clients = ${c.match}; Access_Type = ${c.access === 'rw' ? 'RW' : 'RO'}; Squash = ${SQUASH[c.squash]}; }`,
    );
    // Access_Type = None at the top: only the CLIENT blocks grant anything.
    return [
      'EXPORT {',
      `  Export_Id = ${e.exportId};`,
      `  Path = "${e.path}";`,
      `  Pseudo = "${e.pseudoPath}";`,
      '  Protocols = 3, 4;',
      '  Transports = TCP;',
      '  SecType = sys;',
      '  Access_Type = None;',
      '  FSAL { Name = VFS; }',
      ...clients,
      '}',
    ].join('\n');
  });
  return [BEGIN, ...blocks, END].join('\n');
}

/** Replace the vcstor section of a ganesha config (appending one if there is none). */
export function withGaneshaExports(config: string, section: string): string {
  const start = config.indexOf(BEGIN);
  const end = config.indexOf(END);
  if (start >= 0 && end > start) return `${config.slice(0, start)}${section}${config.slice(end + END.length)}`;
  return `${config.replace(/\n*$/, '\n')}${section}\n`;
}

/** The export paths in the vcstor section of a ganesha config. */
export function ganeshaExportPaths(config: string): string[] {
  const start = config.indexOf(BEGIN);
  const end = config.indexOf(END);
  if (start < 0 || end < start) return [];
  return [...config.slice(start, end).matchAll(/^\s*Path = "([^"]*)";/gm)].map((m) => m[1]!);
}

/**
 * nfs-ganesha (FSAL VFS). The agent owns a marked section of ganesha's config file and
 * rewrites it with every export; ganesha re-reads its exports on SIGHUP, adding and
 * removing exports without disturbing the clients of the others. Ganesha has no
 * per-export sync/async: it makes writes as stable as each client asks.
 */
export class GaneshaNfsServer implements NfsServerDriver {
  readonly driver = 'ganesha' as const;

  constructor(private readonly options: { configFile: string; pidFile: string }) {}

  async apply(exports: readonly NfsExportSpec[], signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw new VcstorError('CANCELLED', 'cancelled');
    const current = await this.readConfig();
    const next = withGaneshaExports(current, renderGaneshaExports(exports));
    if (next === current) return;
    const tmp = `${this.options.configFile}.vcstor-tmp`;
    await writeFile(tmp, next, { mode: 0o644 });
    await rename(tmp, this.options.configFile);
    await this.reload();
  }

  async listExportedPaths(): Promise<string[]> {
    return ganeshaExportPaths(await this.readConfig());
  }

  private async readConfig(): Promise<string> {
    try {
      return await readFile(this.options.configFile, 'utf8');
    } catch (err) {
      throw new VcstorError('UNAVAILABLE', `cannot read ganesha's config ${this.options.configFile}: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * SIGHUP: ganesha re-reads its export list. While the pid file holds no pid, or names
   * a process that is gone, it is read again for up to 2 s: a ganesha restarted after a
   * crash rewrites it as it starts (the fault suite read it empty then). An empty file
   * is never read as pid 0, which would SIGHUP the agent's own process group.
   */
  private async reload(): Promise<void> {
    let why = '';
    for (let attempt = 0; attempt < 10; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 200));
      let text: string;
      try {
        text = (await readFile(this.options.pidFile, 'utf8')).trim();
      } catch (err) {
        throw new VcstorError('UNAVAILABLE', `ganesha is not running (no pid file ${this.options.pidFile}); its config was updated and applies when it starts`, { cause: err });
      }
      const pid = /^\d+$/.test(text) ? Number(text) : 0;
      if (pid <= 1) {
        why = `its pid file ${this.options.pidFile} holds no pid (${JSON.stringify(text.slice(0, 20))})`;
        continue;
      }
      try {
        process.kill(pid, 'SIGHUP');
        return;
      } catch (err) {
        why = `pid ${pid}: ${(err as Error).message}`;
      }
    }
    throw new VcstorError('UNAVAILABLE', `ganesha is not running (${why}); its config was updated and applies when it starts`);
  }


}
