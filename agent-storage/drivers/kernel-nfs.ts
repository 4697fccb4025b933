import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError, invalidArgument, type ErrorCode } from '../../common/errors.js';
import { SerialQueue } from '../../common/locks.js';
import type { CommandRunner } from '../../common/runner.js';
import type { NfsAccessMode, NfsClientSpec, NfsExportSpec, NfsServerDriver, NfsSquashMode } from './types.js';

/**
 * The kernel NFS server (nfsd) driven through nfs-utils: vcstor owns one file in
 * /etc/exports.d, rewrites it whole on every change and asks `exportfs -ra` to make the
 * export table match all exports files. exportfs(8) and exports(5) describe both.
 */

/** Where the driver keeps its exports when the configuration names no other file. */
export const DEFAULT_KERNEL_EXPORTS_FILE = '/etc/exports.d/vcstor.exports';

/**
 * The first line of the file: it marks the file as vcstor's, so the driver never
 * overwrites a file someone else wrote (for instance /etc/exports by mistake).
 */
const OWNER_MARKER = '# vcstor: this file is owned and rewritten by the vcstor storage agent.';

const FILE_HEADER = [
  OWNER_MARKER,
  '# Every change here is lost on the next export change: put exports of your own in',
  '# /etc/exports or in another file under /etc/exports.d.',
];

/** NFS_MAXPATHLEN of nfs-utils: exportfs refuses longer export paths. */
const MAX_EXPORT_PATH_BYTES = 1024;

/** fsid=0 is the NFSv4 pseudo root and e_fsid is a C int: ids must be 1..2^31-1. */
const MAX_FSID = 2 ** 31 - 1;

// Control characters and NUL would end a line of the exports file or hide in logs.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * A client as exports(5) names it: "*", an address, a CIDR range, a host name, or a
 * host wildcard. Whitespace, parentheses, quotes, '#', '@' (netgroups), '[' (wildcard
 * classes) and a leading '-' (default options) are left out: each would change how the
 * line is read.
 */
const CLIENT_MATCH = /^[A-Za-z0-9:*?][A-Za-z0-9._:/*?-]{0,254}$/;

const ACCESS_OPTION: Readonly<Record<NfsAccessMode, string>> = { rw: 'rw', ro: 'ro' };
const SQUASH_OPTION: Readonly<Record<NfsSquashMode, string>> = { root: 'root_squash', none: 'no_root_squash', all: 'all_squash' };

/**
 * A path written as one token of an exports file, read back by nfs-utils exactly as
 * given. It is always double-quoted (so spaces need nothing more), and '"', '\' and '#'
 * become three-digit octal escapes (`\042`, `\134`, `\043`): exports(5) documents
 * both forms. One more case: nfs-utils' reader (xgettok in support/nfs/xio.c)
 * looks at the last four characters it has collected after every character it reads
 * literally, decoded ones included, so a path holding a backslash followed by three
 * octal digits would be decoded a second time. The last of those digits is escaped
 * too, which the reader decodes without looking again.
 * @throws VcstorError INVALID_ARGUMENT for control characters, which no escape makes safe
 *   (the agent's validator refuses them before this).
 */
export function quoteExportPath(exportPath: string): string {
  if (CONTROL.test(exportPath)) throw invalidArgument('path', 'contains control characters');
  let quoted = '';
  for (let i = 0; i < exportPath.length; i++) {
    const char = exportPath.charAt(i);
    const completesOctalEscape = i >= 3 && /^\\[0-7]{3}$/.test(exportPath.slice(i - 3, i + 1));
    quoted += char === '"' || char === '\\' || char === '#' || completesOctalEscape ? octalEscape(char) : char;
  }
  return `"${quoted}"`;
}

function octalEscape(asciiChar: string): string {
  return `\\${asciiChar.charCodeAt(0).toString(8).padStart(3, '0')}`;
}

/**
 * The exported paths in the output of `exportfs -v`, each once, in the order listed.
 * exportfs prints one entry per path and client: a path of at most 14 bytes is padded
 * to 14 columns and followed by a tab and the client on the same line; a longer path
 * stands alone on its line and the client follows on the next line, indented by two
 * tabs. Paths are printed raw (not escaped), so a path with spaces reads back as is;
 * only trailing spaces of a short path cannot be told from the padding.
 */
export function parseExportfsVerbose(output: string): string[] {
  const paths = new Set<string>();
  for (const line of output.split('\n')) {
    // Blank lines, and the indented client lines of the wrapped form, name no path.
    if (line.trim() === '' || line.startsWith('\t') || line.startsWith(' ')) continue;
    const tab = line.indexOf('\t');
    paths.add(tab < 0 ? line : line.slice(0, tab).replace(/ +$/, ''));
  }
  return [...paths];
}

/**
 * The kernel NFS server. `apply` writes vcstor's exports file and runs `exportfs -ra`;
 * `listExportedPaths` reads `exportfs -v`. Every program runs through the injected
 * CommandRunner, so a missing exportfs is the runner's UNAVAILABLE error, message kept.
 *
 * Paths: exportfs resolves symbolic links, so the paths it reports are the resolved
 * ones; callers pass resolved paths (the agent's resolveConfinedPath) to compare them.
 * NFSv4 clients of nfsd mount the real path: nfs-utils builds the NFSv4 pseudo
 * filesystem from the exported paths, and there is no way to give an export another
 * pseudo path.
 */
export class KernelNfsServer implements NfsServerDriver {
  /** Always 'kernel'. */
  readonly driver = 'kernel' as const;
  private readonly runner: CommandRunner;
  private readonly exportsFile: string;
  /** Applies run one after another: each writes the whole file, and the last must win. */
  private readonly applyQueue = new SerialQueue();

  /**
   * @param options.runner runs exportfs.
   * @param options.exportsFile the file vcstor owns (default
   *   {@link DEFAULT_KERNEL_EXPORTS_FILE}). exportfs reads only files named `*.exports`
   *   in /etc/exports.d, so another file there must keep that suffix.
   */
  constructor(options: { runner: CommandRunner; exportsFile?: string }) {
    this.runner = options.runner;
    this.exportsFile = path.resolve(options.exportsFile ?? DEFAULT_KERNEL_EXPORTS_FILE);
  }

  /**
   * Make the kernel's export table hold exactly `exports` (plus what other exports
   * files hold): write vcstor's exports file when its content changes, then always run
   * `exportfs -ra`. exportfs adds new exports, withdraws the ones no file names any
   * more and leaves unchanged ones alone, so their clients keep working.
   *
   * exportfs runs even when the file is unchanged: the file says what should be
   * exported, not what the kernel has. After an nfsd restart, an `exportfs -ua`, or an
   * earlier apply whose exportfs failed or was cancelled after the file was renamed,
   * the table lags behind the file, and re-running exportfs is the only way apply
   * converges. On an up-to-date table exportfs -ra changes nothing clients notice: it
   * only flushes the kernel's export cache, which rpc.mountd refills on demand.
   *
   * Idempotent: the same exports (in any order) give the same file, byte for byte, and
   * the same one command. Exports are written sorted by exportId; each export's clients
   * keep their order, because the first client that matches a host decides its options.
   * Every export is checked before anything is written, so a refused list leaves the
   * file and the table as they were.
   *
   * @throws VcstorError INVALID_ARGUMENT for an export exports(5) cannot express safely
   *   (no clients, a control character, a path over 1024 bytes, an exportId outside
   *   1..2^31-1, a duplicate exportId, path or client); FAILED_PRECONDITION for a
   *   pseudo path other than the path itself, when the exports file exists and was not
   *   written by vcstor, or when its file system is read-only; PERMISSION_DENIED,
   *   RESOURCE_EXHAUSTED or INTERNAL when the file cannot be read or written;
   *   CANCELLED when `signal` aborted before the file was written. exportfs failures
   *   are the runner's CommandErrors, unchanged: UNAVAILABLE when exportfs is not
   *   installed, INTERNAL with its stderr when it fails (for instance when an exported
   *   directory does not exist), CANCELLED or DEADLINE_EXCEEDED.
   */
  apply(exports: readonly NfsExportSpec[], signal: AbortSignal): Promise<void> {
    // A failed apply does not block the ones queued after it.
    return this.applyQueue.run(() => this.applyNow(exports, signal));
  }

  /**
   * The paths `exportfs -v` lists now (every exports file's, not only vcstor's), each
   * once. exportfs reads them from its table (/var/lib/nfs/etab), which is what nfsd
   * serves to clients.
   * @throws CommandError UNAVAILABLE when exportfs is not installed, INTERNAL when it fails.
   */
  async listExportedPaths(signal: AbortSignal): Promise<string[]> {
    const result = await this.runner.run('exportfs', ['-v'], { signal });
    return parseExportfsVerbose(result.stdout);
  }

  private async applyNow(exports: readonly NfsExportSpec[], signal: AbortSignal): Promise<void> {
    const content = renderExportsFile(exports);
    const current = await this.readCurrentFile();
    if (current !== undefined && current !== '' && !current.startsWith(`${OWNER_MARKER}\n`)) {
      throw new VcstorError(
        'FAILED_PRECONDITION',
        `${this.exportsFile} exists and was not written by vcstor; move it away or configure another exports file for the kernel NFS driver`,
      );
    }
    if (current !== content) {
      if (signal.aborted) {
        throw new VcstorError('CANCELLED', `applying NFS exports was cancelled before ${this.exportsFile} was written`);
      }
      await this.writeAtomically(content);
    }
    await this.runner.run('exportfs', ['-ra'], { signal });
  }

  private async readCurrentFile(): Promise<string | undefined> {
    try {
      return await readFile(this.exportsFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw fileError(`cannot read ${this.exportsFile}`, err);
    }
  }

  /**
   * Write to a temporary file in the same directory, fsync it, rename it over the
   * exports file and fsync the directory: a reader (exportfs, or the agent after a
   * crash) sees the old file or the new one, never a part. The temporary name does not
   * end in ".exports", so an exportfs running meanwhile does not read it.
   */
  private async writeAtomically(content: string): Promise<void> {
    const directory = path.dirname(this.exportsFile);
    const temporary = path.join(directory, `.${path.basename(this.exportsFile)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      // /etc/exports.d is not created by every distribution's nfs-utils package.
      await mkdir(directory, { recursive: true, mode: 0o755 });
      const file = await open(temporary, 'wx', 0o644);
      try {
        await file.writeFile(content, 'utf8');
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temporary, this.exportsFile);
    } catch (err) {
      await rm(temporary, { force: true }).catch(() => undefined);
      throw fileError(`cannot write ${this.exportsFile}`, err);
    }
    // The rename is durable only once the directory is synced; the new file is in place
    // already, so a failure here is not worth failing the apply for.
    const directoryHandle = await open(directory, 'r').catch(() => undefined);
    await directoryHandle?.sync().catch(() => undefined);
    await directoryHandle?.close();
  }
}

/** The whole exports file for `exports`, after checking every one of them. */
function renderExportsFile(exports: readonly NfsExportSpec[]): string {
  const seenIds = new Map<number, number>();
  const seenPaths = new Map<string, number>();
  exports.forEach((spec, i) => {
    checkExport(spec, `exports[${i}]`);
    const sameId = seenIds.get(spec.exportId);
    if (sameId !== undefined) throw invalidArgument(`exports[${i}].exportId`, `${spec.exportId} is also the id of exports[${sameId}]`);
    const samePath = seenPaths.get(spec.path);
    if (samePath !== undefined) throw invalidArgument(`exports[${i}].path`, `${JSON.stringify(spec.path)} is also exported by exports[${samePath}]`);
    seenIds.set(spec.exportId, i);
    seenPaths.set(spec.path, i);
  });
  const lines = [...exports].sort((a, b) => a.exportId - b.exportId).map(exportLine);
  return [...FILE_HEADER, ...lines].join('\n') + '\n';
}

function checkExport(spec: NfsExportSpec, field: string): void {
  if (!Number.isInteger(spec.exportId) || spec.exportId < 1 || spec.exportId > MAX_FSID) {
    throw invalidArgument(`${field}.exportId`, `${spec.exportId} is not a kernel fsid (1-${MAX_FSID}; 0 is the NFSv4 root)`);
  }
  if (!spec.path.startsWith('/')) throw invalidArgument(`${field}.path`, `${JSON.stringify(spec.path)} is not an absolute path`);
  if (CONTROL.test(spec.path)) throw invalidArgument(`${field}.path`, 'contains control characters');
  if (Buffer.byteLength(spec.path) > MAX_EXPORT_PATH_BYTES) {
    throw invalidArgument(`${field}.path`, `is longer than ${MAX_EXPORT_PATH_BYTES} bytes, the most exportfs accepts`);
  }
  if (spec.pseudoPath !== '' && spec.pseudoPath !== spec.path) {
    throw new VcstorError(
      'FAILED_PRECONDITION',
      `${field}.pseudoPath: the kernel NFS server cannot export ${JSON.stringify(spec.path)} under another NFSv4 path (${JSON.stringify(spec.pseudoPath)}); NFSv4 clients mount the real path, so leave the pseudo path empty or equal to the path`,
    );
  }
  // A line without clients exports to every host (exports(5)): never write one.
  if (spec.clients.length === 0) throw invalidArgument(`${field}.clients`, 'name at least one client');
  const seenMatches = new Set<string>();
  spec.clients.forEach((client, j) => {
    const clientField = `${field}.clients[${j}]`;
    if (!CLIENT_MATCH.test(client.match)) {
      throw invalidArgument(`${clientField}.match`, `${JSON.stringify(client.match)} is not "*", an address, a CIDR range or a host name`);
    }
    if (seenMatches.has(client.match)) throw invalidArgument(`${clientField}.match`, `${JSON.stringify(client.match)} is named twice`);
    seenMatches.add(client.match);
    if (!Object.hasOwn(ACCESS_OPTION, client.access)) throw invalidArgument(`${clientField}.access`, `${JSON.stringify(client.access)} is not rw or ro`);
    if (!Object.hasOwn(SQUASH_OPTION, client.squash)) throw invalidArgument(`${clientField}.squash`, `${JSON.stringify(client.squash)} is not root, none or all`);
  });
}

/** `"PATH" CLIENT(opts) CLIENT(opts)...`, every client with its options spelled out. */
function exportLine(spec: NfsExportSpec): string {
  return [quoteExportPath(spec.path), ...spec.clients.map((client) => clientEntry(client, spec.exportId))].join(' ');
}

function clientEntry(client: NfsClientSpec, exportId: number): string {
  // Every option is explicit, so nfs-utils' defaults (which changed over the years,
  // and warn when subtree checking is left unsaid) never decide anything.
  const options = [ACCESS_OPTION[client.access], client.sync ? 'sync' : 'async', SQUASH_OPTION[client.squash], 'no_subtree_check', `fsid=${exportId}`];
  return `${client.match}(${options.join(',')})`;
}

function fileError(what: string, err: unknown): VcstorError {
  const errno = (err as NodeJS.ErrnoException).code;
  const codeByErrno: Readonly<Record<string, ErrorCode>> = {
    EACCES: 'PERMISSION_DENIED',
    EPERM: 'PERMISSION_DENIED',
    EROFS: 'FAILED_PRECONDITION',
    ENOSPC: 'RESOURCE_EXHAUSTED',
    EDQUOT: 'RESOURCE_EXHAUSTED',
  };
  const code = (errno !== undefined ? codeByErrno[errno] : undefined) ?? 'INTERNAL';
  return new VcstorError(code, `${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
