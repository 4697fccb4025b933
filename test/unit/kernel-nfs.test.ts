import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_KERNEL_EXPORTS_FILE, KernelNfsServer, parseExportfsVerbose, quoteExportPath } from '../../agent-storage/drivers/kernel-nfs.js';
import type { NfsExportSpec } from '../../agent-storage/drivers/types.js';
import { VcstorError } from '../../common/errors.js';
import { CommandError, type CommandResult, type CommandRunner, type RunOptions } from '../../common/runner.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';

const HEADER =
  '# vcstor: this file is owned and rewritten by the vcstor storage agent.\n' +
  '# Every change here is lost on the next export change: put exports of your own in\n' +
  '# /etc/exports or in another file under /etc/exports.d.\n';

const signal = new AbortController().signal;

const volumeA: NfsExportSpec = {
  exportId: 7,
  path: '/srv/vcstor/nfs/vol-a',
  pseudoPath: '',
  clients: [
    { match: '192.0.2.10', access: 'rw', sync: true, squash: 'none' },
    { match: '10.0.0.0/24', access: 'ro', sync: false, squash: 'root' },
  ],
};
const teamShare: NfsExportSpec = {
  exportId: 3,
  path: '/srv/vcstor/dirs/team share',
  pseudoPath: '/srv/vcstor/dirs/team share',
  clients: [
    { match: '*', access: 'ro', sync: true, squash: 'all' },
    { match: '2001:db8::/64', access: 'rw', sync: true, squash: 'root' },
    { match: 'node1.lab.example', access: 'rw', sync: false, squash: 'none' },
  ],
};

const LINE_TEAM_SHARE =
  '"/srv/vcstor/dirs/team share" *(ro,sync,all_squash,no_subtree_check,fsid=3) 2001:db8::/64(rw,sync,root_squash,no_subtree_check,fsid=3) node1.lab.example(rw,async,no_root_squash,no_subtree_check,fsid=3)\n';
const LINE_VOLUME_A =
  '"/srv/vcstor/nfs/vol-a" 192.0.2.10(rw,sync,no_root_squash,no_subtree_check,fsid=7) 10.0.0.0/24(ro,async,root_squash,no_subtree_check,fsid=7)\n';

let root: string;
let caseNumber = 0;

before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'vcstor-kernel-nfs-'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A driver writing into a fresh directory of its own, with exportfs scripted to succeed. */
function setup(): { runner: RecordingCommandRunner; server: KernelNfsServer; exportsFile: string } {
  caseNumber += 1;
  const exportsFile = path.join(root, `case-${caseNumber}`, 'exports.d', 'vcstor.exports');
  const runner = new RecordingCommandRunner().on('exportfs', ['-ra'], {});
  return { runner, server: new KernelNfsServer({ runner, exportsFile }), exportsFile };
}

function assertVcstorError(code: string, pattern: RegExp): (err: unknown) => true {
  return (err: unknown) => {
    assert.ok(err instanceof VcstorError, `a VcstorError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.match(err.message, pattern);
    return true;
  };
}

describe('KernelNfsServer.apply', () => {
  it('writes one line per export, sorted by id, every client with its options spelled out, then runs exportfs -ra', async () => {
    const { runner, server, exportsFile } = setup();
    await server.apply([volumeA, teamShare], signal);
    assert.equal(await readFile(exportsFile, 'utf8'), HEADER + LINE_TEAM_SHARE + LINE_VOLUME_A);
    assert.deepEqual(runner.lines, ['exportfs -ra']);
    assert.deepEqual(runner.calls[0]?.args, ['-ra']);
    assert.equal((await stat(exportsFile)).mode & 0o777, 0o644 & ~process.umask());
  });

  it('is idempotent: the same exports in any order give the same file, left unwritten, and exportfs -ra each time', async () => {
    const { runner, server, exportsFile } = setup();
    await server.apply([volumeA, teamShare], signal);
    const first = await stat(exportsFile);
    const content = await readFile(exportsFile, 'utf8');
    await server.apply([teamShare, volumeA], signal);
    await server.apply([volumeA, teamShare], signal);
    const last = await stat(exportsFile);
    assert.equal(await readFile(exportsFile, 'utf8'), content);
    // rename() gives the file a new inode: the same one means it was not rewritten.
    assert.equal(last.ino, first.ino);
    assert.equal(last.mtimeMs, first.mtimeMs);
    assert.deepEqual(runner.lines, ['exportfs -ra', 'exportfs -ra', 'exportfs -ra']);
    assert.deepEqual(await readdir(path.dirname(exportsFile)), ['vcstor.exports'], 'no temporary file is left behind');
  });

  it('withdraws a removed export by rewriting the file without it, and an empty list leaves only the header', async () => {
    const { runner, server, exportsFile } = setup();
    await server.apply([volumeA, teamShare], signal);
    await server.apply([volumeA], signal);
    assert.equal(await readFile(exportsFile, 'utf8'), HEADER + LINE_VOLUME_A);
    await server.apply([], signal);
    assert.equal(await readFile(exportsFile, 'utf8'), HEADER);
    assert.deepEqual(runner.lines, ['exportfs -ra', 'exportfs -ra', 'exportfs -ra']);
  });

  it('runs exportfs -ra again on an unchanged file, so an apply after a failed exportfs (or an nfsd restart) converges', async () => {
    caseNumber += 1;
    const exportsFile = path.join(root, `case-${caseNumber}`, 'vcstor.exports');
    let exportfsFails = true;
    const runner = new RecordingCommandRunner().on('exportfs', ['-ra'], () =>
      exportfsFails ? { exitCode: 1, stderr: 'exportfs: Failed to stat /srv/vcstor/nfs/vol-a: No such file or directory\n' } : {},
    );
    const server = new KernelNfsServer({ runner, exportsFile });
    await assert.rejects(server.apply([volumeA], signal), (err: unknown) => {
      assert.ok(err instanceof CommandError);
      assert.equal(err.code, 'INTERNAL');
      assert.match(err.message, /^exportfs -ra exited with 1: exportfs: Failed to stat \/srv\/vcstor\/nfs\/vol-a/);
      return true;
    });
    assert.equal(await readFile(exportsFile, 'utf8'), HEADER + LINE_VOLUME_A, 'the file was written before exportfs ran');
    exportfsFails = false;
    await server.apply([volumeA], signal);
    assert.deepEqual(runner.lines, ['exportfs -ra', 'exportfs -ra']);
  });

  it('keeps the runner\'s UNAVAILABLE error when exportfs is not installed', async () => {
    caseNumber += 1;
    const exportsFile = path.join(root, `case-${caseNumber}`, 'vcstor.exports');
    const missing = new CommandError('UNAVAILABLE', 'exportfs is not installed on this host (not found in PATH)', { commandLine: 'exportfs -ra' });
    const runner = new RecordingCommandRunner().on('exportfs', [], missing);
    const server = new KernelNfsServer({ runner, exportsFile });
    await assert.rejects(server.apply([volumeA], signal), (err: unknown) => {
      assert.equal(err, missing);
      return true;
    });
    await assert.rejects(server.listExportedPaths(signal), assertVcstorError('UNAVAILABLE', /^exportfs is not installed on this host/));
  });

  it('passes the signal on to exportfs', async () => {
    const { runner, server } = setup();
    const controller = new AbortController();
    await server.apply([volumeA], controller.signal);
    controller.abort();
    await assert.rejects(server.apply([volumeA], controller.signal), /aborted/);
    assert.deepEqual(runner.lines, ['exportfs -ra', 'exportfs -ra']);
  });

  it('does not write the file when cancelled before the write', async () => {
    const { runner, server, exportsFile } = setup();
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(server.apply([volumeA], controller.signal), assertVcstorError('CANCELLED', /cancelled before .*vcstor\.exports was written/));
    await assert.rejects(stat(exportsFile), { code: 'ENOENT' });
    assert.deepEqual(runner.lines, []);
  });

  it('refuses to overwrite an exports file vcstor did not write', async () => {
    const { runner, server, exportsFile } = setup();
    await server.apply([], signal);
    const foreign = '/home *(rw,sync,no_subtree_check)\n';
    await writeFile(exportsFile, foreign);
    await assert.rejects(server.apply([volumeA], signal), assertVcstorError('FAILED_PRECONDITION', /exists and was not written by vcstor/));
    assert.equal(await readFile(exportsFile, 'utf8'), foreign);
    assert.deepEqual(runner.lines, ['exportfs -ra']);
  });

  it('refuses exports the exports file cannot express safely, before writing or running anything', async () => {
    const withClient = (match: string): NfsExportSpec => ({ ...volumeA, clients: [{ match, access: 'rw', sync: true, squash: 'root' }] });
    const refused: Array<{ exports: NfsExportSpec[]; code: string; pattern: RegExp }> = [
      { exports: [{ ...volumeA, clients: [] }], code: 'INVALID_ARGUMENT', pattern: /^exports\[0\]\.clients: name at least one client/ },
      { exports: [{ ...volumeA, exportId: 0 }], code: 'INVALID_ARGUMENT', pattern: /^exports\[0\]\.exportId: 0 is not a kernel fsid .*NFSv4 root/ },
      { exports: [{ ...volumeA, exportId: 2 ** 31 }], code: 'INVALID_ARGUMENT', pattern: /^exports\[0\]\.exportId: 2147483648 is not a kernel fsid/ },
      { exports: [{ ...volumeA, exportId: 1.5 }], code: 'INVALID_ARGUMENT', pattern: /^exports\[0\]\.exportId/ },
      { exports: [volumeA, { ...teamShare, exportId: 7 }], code: 'INVALID_ARGUMENT', pattern: /^exports\[1\]\.exportId: 7 is also the id of exports\[0\]/ },
      { exports: [volumeA, { ...teamShare, path: volumeA.path, pseudoPath: '' }], code: 'INVALID_ARGUMENT', pattern: /^exports\[1\]\.path: .* is also exported by exports\[0\]/ },
      { exports: [{ ...volumeA, path: '/srv/a\nb *(rw,no_root_squash)' }], code: 'INVALID_ARGUMENT', pattern: /^exports\[0\]\.path: contains control characters/ },
      { exports: [{ ...volumeA, path: 'srv/relative' }], code: 'INVALID_ARGUMENT', pattern: /^exports\[0\]\.path: "srv\/relative" is not an absolute path/ },
      { exports: [{ ...volumeA, path: `/${'x'.repeat(1024)}` }], code: 'INVALID_ARGUMENT', pattern: /^exports\[0\]\.path: is longer than 1024 bytes/ },
      { exports: [withClient('evil *(rw')], code: 'INVALID_ARGUMENT', pattern: /^exports\[0\]\.clients\[0\]\.match: "evil \*\(rw" is not/ },
      { exports: [withClient('@trusted')], code: 'INVALID_ARGUMENT', pattern: /clients\[0\]\.match/ },
      { exports: [withClient('-rw')], code: 'INVALID_ARGUMENT', pattern: /clients\[0\]\.match/ },
      { exports: [withClient('host#x')], code: 'INVALID_ARGUMENT', pattern: /clients\[0\]\.match/ },
      { exports: [withClient('')], code: 'INVALID_ARGUMENT', pattern: /clients\[0\]\.match/ },
      {
        exports: [{ ...volumeA, clients: [...volumeA.clients, { match: '192.0.2.10', access: 'ro', sync: true, squash: 'all' }] }],
        code: 'INVALID_ARGUMENT',
        pattern: /^exports\[0\]\.clients\[2\]\.match: "192\.0\.2\.10" is named twice/,
      },
      { exports: [{ ...volumeA, pseudoPath: '/vcstor/vol-a' }], code: 'FAILED_PRECONDITION', pattern: /^exports\[0\]\.pseudoPath: the kernel NFS server cannot export/ },
    ];
    for (const { exports, code, pattern } of refused) {
      const { runner, server, exportsFile } = setup();
      await assert.rejects(server.apply(exports, signal), assertVcstorError(code, pattern));
      await assert.rejects(stat(exportsFile), { code: 'ENOENT' }, `nothing written for ${pattern}`);
      assert.deepEqual(runner.lines, [], `nothing run for ${pattern}`);
    }
  });

  it('runs concurrent applies one after another, so the last one wins', async () => {
    caseNumber += 1;
    const exportsFile = path.join(root, `case-${caseNumber}`, 'vcstor.exports');
    const recorder = new RecordingCommandRunner().on('exportfs', ['-ra'], {});
    let releaseFirstExportfs: () => void = () => undefined;
    const firstExportfsHeld = new Promise<void>((resolve) => {
      releaseFirstExportfs = resolve;
    });
    const contentSeenByExportfs: string[] = [];
    const gatedRunner: CommandRunner = {
      async run(command: string, args: readonly string[], options?: RunOptions): Promise<CommandResult> {
        contentSeenByExportfs.push(await readFile(exportsFile, 'utf8'));
        if (contentSeenByExportfs.length === 1) await firstExportfsHeld;
        return recorder.run(command, args, options);
      },
    };
    const server = new KernelNfsServer({ runner: gatedRunner, exportsFile });
    const first = server.apply([volumeA], signal);
    const second = server.apply([teamShare], signal);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(await readFile(exportsFile, 'utf8'), HEADER + LINE_VOLUME_A, 'the second apply waits while the first one runs exportfs');
    releaseFirstExportfs();
    await Promise.all([first, second]);
    assert.deepEqual(contentSeenByExportfs, [HEADER + LINE_VOLUME_A, HEADER + LINE_TEAM_SHARE]);
    assert.equal(await readFile(exportsFile, 'utf8'), HEADER + LINE_TEAM_SHARE);
  });

  it('lets an apply run after an earlier one failed', async () => {
    const { runner, server, exportsFile } = setup();
    await assert.rejects(server.apply([{ ...volumeA, clients: [] }], signal), assertVcstorError('INVALID_ARGUMENT', /clients/));
    await server.apply([volumeA], signal);
    assert.equal(await readFile(exportsFile, 'utf8'), HEADER + LINE_VOLUME_A);
    assert.deepEqual(runner.lines, ['exportfs -ra']);
  });
});

/**
 * How nfs-utils reads the first token of an exports line: xgettok() in
 * support/nfs/xio.c, byte by byte. A '"' toggles quoting and is dropped; outside quotes
 * whitespace ends the token; after every byte it appends, it decodes the last four
 * collected bytes if they are '\' and three octal digits (and, having decoded, does not
 * look again until the next byte).
 */
function nfsUtilsFirstToken(line: string): { token: string; rest: string } {
  const bytes = Buffer.from(line, 'utf8');
  const token: number[] = [];
  const isOctal = (byte: number | undefined) => byte !== undefined && byte >= 0x30 && byte <= 0x37;
  let quoted = false;
  let i = 0;
  for (; i < bytes.length; i++) {
    const byte = bytes[i] as number;
    if (byte === 0x22) {
      quoted = !quoted;
      continue;
    }
    if (!quoted && [0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d].includes(byte)) break;
    token.push(byte);
    const n = token.length;
    if (n >= 4 && token[n - 4] === 0x5c && isOctal(token[n - 3]) && isOctal(token[n - 2]) && isOctal(token[n - 1])) {
      const value = parseInt(Buffer.from(token.slice(n - 3)).toString('latin1'), 8);
      if (value < 256) token.splice(n - 4, 4, value);
    }
  }
  return { token: Buffer.from(token).toString('utf8'), rest: bytes.subarray(i).toString('utf8') };
}

describe('quoteExportPath', () => {
  it('writes paths that nfs-utils reads back exactly, spaces, quotes, backslashes and "#" included', () => {
    const paths = [
      '/srv/vcstor/nfs/vol-a',
      '/srv/vcstor/dirs/team share',
      '/srv/vcstor/dirs/a "quoted" name',
      '/srv/vcstor/dirs/back\\slash',
      '/srv/vcstor/dirs/octal\\101lookalike',
      '/srv/vcstor/dirs/\\\\134\\0777',
      '/srv/vcstor/dirs/#not a comment',
      '/srv/vcstor/dirs/ünïcödé 目录',
      '/srv/vcstor/dirs/trailing ',
    ];
    for (const exportPath of paths) {
      const written = quoteExportPath(exportPath);
      assert.doesNotMatch(written, /#/, 'old nfs-utils end a line at any "#"');
      const { token, rest } = nfsUtilsFirstToken(`${written} *(rw)`);
      assert.equal(token, exportPath);
      assert.equal(rest, ' *(rw)', `the clients stay separate for ${exportPath}`);
    }
  });

  it('escapes the digit that would make nfs-utils decode a backslash twice', () => {
    // The reader model sees the trap: escaping only the backslash is not enough.
    assert.equal(nfsUtilsFirstToken('"/a\\134101"').token, '/aA');
    assert.equal(quoteExportPath('/a\\101'), '"/a\\13410\\061"');
    assert.equal(quoteExportPath('/plain/path with space'), '"/plain/path with space"');
  });

  it('refuses control characters', () => {
    assert.throws(() => quoteExportPath('/a\nb'), assertVcstorError('INVALID_ARGUMENT', /^path: contains control characters/));
  });
});

// `exportfs -v` as nfs-utils 2.x prints it: printf("%-14s\t%s", path, client) for paths
// of up to 14 bytes, printf("%-14s\n\t\t%s", ...) for longer ones, "<world>" for "*".
const EXPORTFS_V_OUTPUT = [
  '/srv/vcstor/nfs/vol-a',
  '\t\t192.0.2.10(sync,wdelay,hide,no_subtree_check,fsid=7,sec=sys,rw,secure,no_root_squash,no_all_squash)',
  '/srv/vcstor/nfs/vol-a',
  '\t\t10.0.0.0/24(async,wdelay,hide,no_subtree_check,fsid=7,sec=sys,ro,secure,root_squash,no_all_squash)',
  '/export       \t<world>(sync,wdelay,hide,no_subtree_check,sec=sys,ro,secure,root_squash,no_all_squash)',
  '/srv/fourteen1\t<world>(sync,wdelay,hide,no_subtree_check,sec=sys,ro,secure,root_squash,no_all_squash)',
  '/srv/a b      \t192.0.2.0/24(sync,wdelay,hide,no_subtree_check,sec=sys,rw,secure,root_squash,no_all_squash)',
  '/srv/vcstor/dirs/team share',
  '\t\t<world>(sync,wdelay,hide,no_subtree_check,fsid=3,sec=sys,ro,secure,root_squash,all_squash)',
  '/srv/vcstor/dirs/team share',
  '\t\t2001:db8::/64(sync,wdelay,hide,no_subtree_check,fsid=3,sec=sys,rw,secure,root_squash,no_all_squash)',
  '',
].join('\n');

const EXPORTED_PATHS = ['/srv/vcstor/nfs/vol-a', '/export', '/srv/fourteen1', '/srv/a b', '/srv/vcstor/dirs/team share'];

describe('parseExportfsVerbose', () => {
  it('reads short and wrapped long entries, each path once, spaces kept and padding dropped', () => {
    assert.deepEqual(parseExportfsVerbose(EXPORTFS_V_OUTPUT), EXPORTED_PATHS);
  });

  it('reads an empty table as no paths', () => {
    assert.deepEqual(parseExportfsVerbose(''), []);
    assert.deepEqual(parseExportfsVerbose('\n'), []);
  });
});

describe('KernelNfsServer.listExportedPaths', () => {
  it('runs exportfs -v and returns the paths it lists', async () => {
    const runner = new RecordingCommandRunner().on('exportfs', ['-v'], { stdout: EXPORTFS_V_OUTPUT });
    const server = new KernelNfsServer({ runner, exportsFile: path.join(root, 'unused.exports') });
    assert.deepEqual(await server.listExportedPaths(signal), EXPORTED_PATHS);
    assert.deepEqual(runner.lines, ['exportfs -v']);
  });

  it('passes the signal on to exportfs -v', async () => {
    const runner = new RecordingCommandRunner().on('exportfs', ['-v'], { stdout: EXPORTFS_V_OUTPUT });
    const server = new KernelNfsServer({ runner, exportsFile: path.join(root, 'unused.exports') });
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(server.listExportedPaths(controller.signal), /aborted/);
    assert.deepEqual(runner.lines, ['exportfs -v']);
  });

  it('returns no paths for an empty table', async () => {
    const runner = new RecordingCommandRunner().on('exportfs', ['-v'], { stdout: '' });
    const server = new KernelNfsServer({ runner, exportsFile: path.join(root, 'unused.exports') });
    assert.deepEqual(await server.listExportedPaths(signal), []);
  });

  it('defaults to /etc/exports.d/vcstor.exports', () => {
    // Only checked, never applied: these tests may run as root, and a broken apply must
    // not be able to write the host's real exports directory.
    assert.equal(DEFAULT_KERNEL_EXPORTS_FILE, '/etc/exports.d/vcstor.exports');
    assert.equal(new KernelNfsServer({ runner: new RecordingCommandRunner() }).driver, 'kernel');
  });
});
