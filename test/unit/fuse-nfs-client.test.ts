import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { VcstorError } from '../../common/errors.js';
import { isRunning, startDetached, type DetachedProcess } from '../../common/processes.js';
import { describeDrivers, findLibrary, findProgram } from '../../common/requirements.js';
import {
  FUSE_NFS_FSTYPE,
  FUSE_NFS_PROGRAM,
  FuseNfsClient,
  fuseNfsFailure,
  fuseNfsProgramOptions,
  parseFuseNfsSource,
} from '../../host-storage/fuse-nfs-client.js';
import { FUSE_NFS_CLIENT } from '../../host-storage/requirements.js';
import type { NfsMountSpec } from '../../host-storage/types.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';
import { rejects } from '../support/errors.js';

/**
 * The fuse-nfs driver without FUSE or a server: its command lines, its reading of
 * mountinfo (lines captured from real vcstor-nfs-fuse mounts, test/fixtures/nfs), and its
 * process handling, with real stand-in processes (sleep; cat of a captured log) started
 * through the driver's `start` hook, and umount answered by the recording runner.
 */
const FIXTURES = [fileURLToPath(new URL('../../../test/fixtures/nfs/', import.meta.url)), path.resolve('test/fixtures/nfs')].find((d) => existsSync(d))!;
const CAPTURED_MOUNTINFO = readFileSync(path.join(FIXTURES, 'fuse-nfs-mountinfo.txt'), 'utf8');
/** The captured machine's lines without the two fuse-nfs mounts. */
const BASE_MOUNTINFO = CAPTURED_MOUNTINFO.split('\n').filter((l) => l !== '' && !l.includes(FUSE_NFS_FSTYPE)).join('\n');
const PROGRAM = '/opt/vcstor/bin/vcstor-nfs-fuse';

function escapeMountinfo(field: string): string {
  return field.replace(/[ \t\n\\]/g, (char) => `\\${char.charCodeAt(0).toString(8).padStart(3, '0')}`);
}

/** A line as the kernel lists a vcstor-nfs-fuse mount (the captured one's layout). */
function fuseLine(id: number, mountpoint: string, source: string, fsType = FUSE_NFS_FSTYPE): string {
  return `${id} 26 0:${id} / ${escapeMountinfo(mountpoint)} rw,nosuid,nodev,relatime - ${fsType} ${escapeMountinfo(source)} rw,user_id=0,group_id=0,default_permissions,allow_other`;
}

let workDir = '';
let caseNumber = 0;
const started: DetachedProcess[] = [];

before(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'vcstor-fuse-nfs-'));
});

after(async () => {
  for (const proc of started) {
    try {
      process.kill(proc.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  await rm(workDir, { recursive: true, force: true });
});

const signal = new AbortController().signal;

interface Case {
  dir: string;
  mountinfo: string;
  mnt: string;
  stateDir: string;
  runner: RecordingCommandRunner;
  commands: string[][];
  client: FuseNfsClient;
}

/**
 * A case: a mountinfo file the fake kernel edits, a state dir, and a driver whose `start`
 * records the command line and runs `stand-in` instead of the program (default: a sleep
 * that mounts, i.e. appends its line to mountinfo, as the real program would).
 */
function setup(
  options: { extraLines?: string[]; standIn?: (command: string[], log: string) => Promise<DetachedProcess>; mountTimeoutMs?: number } = {},
): Case {
  caseNumber += 1;
  const dir = path.join(workDir, `case-${caseNumber}`);
  mkdirSync(dir, { recursive: true });
  const mountinfo = path.join(dir, 'mountinfo');
  writeFileSync(mountinfo, `${[BASE_MOUNTINFO, ...(options.extraLines ?? [])].join('\n')}\n`);
  const runner = new RecordingCommandRunner();
  // umount(8): the kernel drops the mount from mountinfo.
  runner.on('umount', [], (_command, args) => {
    const target = args[args.length - 1] ?? '';
    const lines = readFileSync(mountinfo, 'utf8').split('\n');
    const kept = lines.filter((l) => l.split(' ')[4] !== escapeMountinfo(target));
    writeFileSync(mountinfo, kept.join('\n'));
    return kept.length === lines.length ? { exitCode: 32, stderr: `umount: ${target}: not mounted.\n` } : {};
  });
  const commands: string[][] = [];
  const standIn =
    options.standIn ??
    (async (command: string[], log: string) => {
      const proc = await startDetached('stand-in', 'test', ['sleep', '30'], log);
      appendFileSync(mountinfo, `${fuseLine(90 + commands.length, command[command.length - 1]!, command[command.length - 2]!)}\n`);
      return proc;
    });
  const client = new FuseNfsClient({
    runner,
    stateDir: path.join(dir, 'state'),
    program: PROGRAM,
    mountinfoPath: mountinfo,
    exitGraceMs: 100,
    ...(options.mountTimeoutMs ? { mountTimeoutMs: options.mountTimeoutMs } : {}),
    start: async (_name, _host, command, log) => {
      commands.push(command);
      const proc = await standIn(command, log);
      started.push(proc);
      return proc;
    },
  });
  return { dir, mountinfo, mnt: path.join(dir, 'mnt'), stateDir: path.join(dir, 'state'), runner, commands, client };
}

function spec(mountpoint: string, overrides: Partial<NfsMountSpec> = {}): NfsMountSpec {
  return { server: '203.0.113.1', exportPath: '/srv/vcstor/nfs/vol1', mountpoint, version: 3, options: ['port=2049', 'mountport=20048'], ...overrides };
}

/** The state dir's mount directories (one per mount). */
function records(stateDir: string): string[] {
  return existsSync(path.join(stateDir, 'fuse-nfs')) ? readdirSync(path.join(stateDir, 'fuse-nfs')) : [];
}

/** A stand-in that prints a captured log of the program and exits, as the program does on failure. */
function failsWith(fixture: string) {
  return (_command: string[], log: string) => startDetached('stand-in', 'test', ['cat', path.join(FIXTURES, fixture)], log);
}

describe('fuseNfsProgramOptions', () => {
  it('passes the ports on as libnfs takes them, so that no portmapper is asked', () => {
    assert.deepEqual(fuseNfsProgramOptions({ version: 3, options: ['port=2049', 'mountport=20048'] }), ['nfsport=2049', 'mountport=20048']);
  });

  it('translates nfs(5) options: sizes, read-only, sync, attribute caching; hard and async are the defaults', () => {
    assert.deepEqual(fuseNfsProgramOptions({ version: 3, options: ['hard', 'async', 'ro', 'rsize=65536', 'wsize=262144', 'sync', 'actimeo=5', 'noatime'] }), [
      'ro',
      'sync',
      'noatime',
      'rsize=65536',
      'wsize=262144',
      'attr_timeout=5',
      'entry_timeout=5',
    ]);
    assert.deepEqual(fuseNfsProgramOptions({ version: 3, options: ['noac'] }), ['attr_timeout=0,entry_timeout=0']);
    assert.deepEqual(fuseNfsProgramOptions({ version: 3, options: ['cache=page'] }), ['cache=page']);
    assert.deepEqual(fuseNfsProgramOptions({ version: 3, options: [] }), []);
  });

  it('gives soft mounts a call timeout of timeo x (retrans + 1), nfs(5)\'s defaults 60 s x 3', () => {
    assert.deepEqual(fuseNfsProgramOptions({ version: 3, options: ['soft'] }), ['timeout=180']);
    assert.deepEqual(fuseNfsProgramOptions({ version: 3, options: ['soft', 'timeo=100', 'retrans=1'] }), ['timeout=20']);
    assert.deepEqual(fuseNfsProgramOptions({ version: 3, options: ['timeo=100'] }), [], 'timeo alone (hard) changes nothing');
  });

  it('refuses NFSv4, the driver\'s own options and unknown ones, naming the field', () => {
    assert.throws(() => fuseNfsProgramOptions({ version: 4, options: [] }), (e: unknown) => e instanceof VcstorError && e.code === 'INVALID_ARGUMENT' && /version/.test(e.message));
    for (const option of ['vers=3', 'nfsvers=3', 'proto=tcp', 'port=0', 'port=70000', 'rsize=1', 'cache=all', 'uid=0', 'nfsport=2049', 'ro,nosuid', 'bogus']) {
      assert.throws(
        () => fuseNfsProgramOptions({ version: 3, options: [option] }),
        (e: unknown) => e instanceof VcstorError && e.code === 'INVALID_ARGUMENT' && /options/.test(e.message),
        option,
      );
    }
  });
});

describe('FuseNfsClient.commandLine', () => {
  it('is the program, its -o list, the nfs:// URL and the mountpoint, normalized', () => {
    const { client } = setup();
    assert.deepEqual(client.commandLine(spec('/mnt/vcstor/./nfs1/', { options: ['port=2049', 'mountport=20048', 'hard', 'rsize=1048576'] })), [
      PROGRAM,
      '-o',
      'nfsport=2049,mountport=20048,rsize=1048576',
      'nfs://203.0.113.1/srv/vcstor/nfs/vol1',
      '/mnt/vcstor/nfs1',
    ]);
    assert.deepEqual(client.commandLine(spec('/mnt/x', { options: [] })), [PROGRAM, 'nfs://203.0.113.1/srv/vcstor/nfs/vol1', '/mnt/x']);
  });

  it('finds the program where npm run build puts it', () => {
    assert.match(FUSE_NFS_PROGRAM, /\/dist\/bin\/vcstor-nfs-fuse$/);
  });
});

describe('parseFuseNfsSource', () => {
  it('splits the captured sources', () => {
    assert.deepEqual(parseFuseNfsSource('nfs://203.0.113.1/tmp/fnx/export'), { server: '203.0.113.1', exportPath: '/tmp/fnx/export' });
    assert.deepEqual(parseFuseNfsSource('nfs://203.0.113.1/tmp/fnx/export/sub dir,1'), { server: '203.0.113.1', exportPath: '/tmp/fnx/export/sub dir,1' });
    assert.equal(parseFuseNfsSource('203.0.113.1:/srv/x'), undefined);
    assert.equal(parseFuseNfsSource('/dev/fuse'), undefined);
  });
});

describe('FuseNfsClient.list', () => {
  it('reads the captured mountinfo: both mounts, escapes undone, version 3, the mount options', async () => {
    const dir = path.join(workDir, 'list');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'mountinfo'), CAPTURED_MOUNTINFO);
    const client = new FuseNfsClient({ runner: new RecordingCommandRunner(), stateDir: path.join(dir, 'state'), mountinfoPath: path.join(dir, 'mountinfo') });
    assert.deepEqual(await client.list(['/tmp/fnx']), [
      { server: '203.0.113.1', exportPath: '/tmp/fnx/export', mountpoint: '/tmp/fnx/mnt', version: 3, options: ['rw', 'nosuid', 'nodev', 'relatime'] },
      { server: '203.0.113.1', exportPath: '/tmp/fnx/export/sub dir,1', mountpoint: '/tmp/fnx/mnt 5', version: 3, options: ['rw', 'nosuid', 'nodev', 'relatime'] },
    ]);
    assert.deepEqual(await client.list(['/tmp/fnx/mnt']), [
      { server: '203.0.113.1', exportPath: '/tmp/fnx/export', mountpoint: '/tmp/fnx/mnt', version: 3, options: ['rw', 'nosuid', 'nodev', 'relatime'] },
    ]);
    assert.deepEqual(await client.list(['/srv']), []);
  });

  it('leaves out other FUSE mounts (qemu-storage-daemon\'s exports) and kernel NFS mounts', async () => {
    const { client, dir } = setup({
      extraLines: [fuseLine(80, path.join(workDir, 'q', 'disk.raw'), '/dev/fuse', 'fuse'), '81 26 0:81 / /mnt/k rw,relatime - nfs 203.0.113.1:/srv/x rw,vers=3'],
    });
    assert.deepEqual(await client.list(['/', dir]), []);
  });
});

describe('FuseNfsClient.mount and unmount', () => {
  it('starts the program detached, waits for the mount, records it; again is false; unmount is umount, then the process is reaped', async () => {
    const c = setup();
    const mountpoint = path.join(c.mnt, 'vol1');
    assert.equal(await c.client.mount(spec(mountpoint, { options: ['port=2049', 'mountport=20048', 'hard'] }), signal), true);
    assert.deepEqual(c.commands, [[PROGRAM, '-o', 'nfsport=2049,mountport=20048', 'nfs://203.0.113.1/srv/vcstor/nfs/vol1', mountpoint]]);
    assert.ok(existsSync(mountpoint), 'the mountpoint is made');
    assert.equal(records(c.stateDir).length, 1);
    assert.deepEqual(c.runner.lines, [], 'mounting runs nothing but the program');
    const proc = started[started.length - 1]!;
    assert.equal(await isRunning(proc), true);

    assert.equal(await c.client.mount(spec(mountpoint), signal), false, 'the same export there already');
    assert.equal(c.commands.length, 1, 'not started twice');
    const listed = await c.client.list([c.mnt]);
    assert.equal(listed.length, 1);
    assert.deepEqual(listed[0]!.options, ['rw', 'nosuid', 'nodev', 'relatime', 'port=2049', 'mountport=20048', 'hard'], 'mount options, then the NFS options it was mounted with');

    assert.equal(await c.client.unmount(`${mountpoint}/`, signal), true);
    assert.deepEqual(c.runner.lines, [`umount ${mountpoint}`]);
    assert.equal(await isRunning(proc), false, 'the stand-in ignored the unmount: it was stopped');
    assert.deepEqual(records(c.stateDir), []);
    assert.equal(await c.client.unmount(mountpoint, signal), false, 'nothing there any more');
    assert.deepEqual(c.runner.lines, [`umount ${mountpoint}`], 'no umount of nothing');
  });

  it('mounts again where the program died (its mount answers ENOTCONN): umount, then a new program', async () => {
    const c = setup();
    const mountpoint = path.join(c.mnt, 'vol1');
    await c.client.mount(spec(mountpoint), signal);
    process.kill(started[started.length - 1]!.pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await c.client.mount(spec(mountpoint), signal), true);
    assert.deepEqual(c.runner.lines, [`umount ${mountpoint}`]);
    assert.equal(c.commands.length, 2);
    assert.equal(await c.client.unmount(mountpoint, signal), true);
  });

  it('refuses a mountpoint that has something else, or another export, mounted', async () => {
    const mountpoint = path.join(workDir, 'busy-mnt');
    const c = setup({ extraLines: [fuseLine(80, mountpoint, 'nfs://203.0.113.1/srv/other'), fuseLine(81, `${mountpoint}2`, '/dev/loop0', 'ext4')] });
    const other = await rejects(c.client.mount(spec(mountpoint), signal));
    assert.equal(other.code, 'FAILED_PRECONDITION');
    assert.match(other.message, /nfs:\/\/203\.0\.113\.1\/srv\/other/);
    assert.equal((await rejects(c.client.mount(spec(`${mountpoint}2`), signal))).code, 'FAILED_PRECONDITION');
    assert.equal((await rejects(c.client.unmount(`${mountpoint}2`, signal))).code, 'FAILED_PRECONDITION', 'an ext4 mount is left alone');
    assert.deepEqual(c.commands, []);
    assert.deepEqual(c.runner.lines, []);
  });

  it('refuses IPv6 servers and "?" in export paths (libnfs 4.0 URLs), before starting anything', async () => {
    const c = setup();
    assert.equal((await rejects(c.client.mount(spec(path.join(c.mnt, 'a'), { server: 'fd00::1' }), signal))).code, 'INVALID_ARGUMENT');
    assert.equal((await rejects(c.client.mount(spec(path.join(c.mnt, 'a'), { exportPath: '/srv/a?nfsport=1' }), signal))).code, 'INVALID_ARGUMENT');
    assert.equal((await rejects(c.client.mount(spec('relative/path'), signal))).code, 'INVALID_ARGUMENT');
    assert.deepEqual(c.commands, []);
  });

  for (const [fixture, code, words] of [
    ['fuse-nfs-unreachable.stderr.txt', 'UNAVAILABLE', /could not be reached.*nfs_service failed/],
    ['fuse-nfs-no-portmapper.stderr.txt', 'UNAVAILABLE', /portmapper's port 111/],
    ['fuse-nfs-refused.stderr.txt', 'PERMISSION_DENIED', /refused.*MNT3ERR_ACCES/],
  ] as const) {
    it(`turns the program's exit with ${fixture} into ${code}, leaving nothing behind`, async () => {
      const c = setup({ standIn: failsWith(fixture) });
      const err = await rejects(c.client.mount(spec(path.join(c.mnt, 'vol1')), signal));
      assert.equal(err.code, code);
      assert.match(err.message, words);
      assert.deepEqual(records(c.stateDir), []);
      assert.deepEqual(c.runner.lines, [], 'nothing was mounted, nothing to umount');
    });
  }

  it('says what the program said when it is not a known failure', () => {
    const err = fuseNfsFailure('fuse: unknown option(s): `-o bogus\'\n', 'mounting x');
    assert.equal(err.code, 'FAILED_PRECONDITION');
    const other = fuseNfsFailure('vcstor-nfs-fuse: something new\n', 'mounting x');
    assert.equal(other.code, 'INTERNAL');
    assert.match(other.message, /something new/);
  });

  it('gives up after the mount timeout: DEADLINE_EXCEEDED, the program stopped, nothing left', async () => {
    const c = setup({ mountTimeoutMs: 200, standIn: (_command, log) => startDetached('stand-in', 'test', ['sleep', '30'], log) });
    const err = await rejects(c.client.mount(spec(path.join(c.mnt, 'vol1')), signal));
    assert.equal(err.code, 'DEADLINE_EXCEEDED');
    assert.equal(await isRunning(started[started.length - 1]!), false);
    assert.deepEqual(records(c.stateDir), []);
  });

  it('stops on cancellation: CANCELLED, the program stopped', async () => {
    const c = setup({ standIn: (_command, log) => startDetached('stand-in', 'test', ['sleep', '30'], log) });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const err = await rejects(c.client.mount(spec(path.join(c.mnt, 'vol1')), controller.signal));
    assert.equal(err.code, 'CANCELLED');
    assert.equal(await isRunning(started[started.length - 1]!), false);
    assert.deepEqual(records(c.stateDir), []);
  });

  it('says UNAVAILABLE when the program cannot be started', async () => {
    const c = setup({ standIn: (_command, log) => startDetached('stand-in', 'test', ['/nonexistent/vcstor-nfs-fuse'], log) });
    const err = await rejects(c.client.mount(spec(path.join(c.mnt, 'vol1')), signal));
    assert.equal(err.code, 'UNAVAILABLE');
    assert.match(err.message, /npm run build/);
  });

  it('reports a busy mount and leaves it mounted', async () => {
    const c = setup();
    const mountpoint = path.join(c.mnt, 'vol1');
    await c.client.mount(spec(mountpoint), signal);
    const busy = new RecordingCommandRunner().on('umount', [], { exitCode: 32, stderr: `umount: ${mountpoint}: target is busy.\n` });
    const client = new FuseNfsClient({ runner: busy, stateDir: c.stateDir, program: PROGRAM, mountinfoPath: c.mountinfo });
    const err = await rejects(client.unmount(mountpoint, signal));
    assert.equal(err.code, 'FAILED_PRECONDITION');
    assert.match(err.message, /busy/);
    assert.equal(await isRunning(started[started.length - 1]!), true, 'its program still serves it');
    assert.equal(await c.client.unmount(mountpoint, signal), true);
  });
});

describe('fuse-nfs requirements', () => {
  it('are the program, umount, libnfs and libfuse3, and FUSE in the kernel', () => {
    assert.equal(FUSE_NFS_CLIENT.concern, 'nfs-client');
    assert.equal(FUSE_NFS_CLIENT.driver, 'fuse-nfs');
    assert.deepEqual(FUSE_NFS_CLIENT.programs, [FUSE_NFS_PROGRAM, 'umount']);
    assert.deepEqual(FUSE_NFS_CLIENT.libraries, ['libnfs.so.13', 'libfuse3.so.3']);
    assert.deepEqual(FUSE_NFS_CLIENT.kernelFilesystems, ['fuse']);
  });

  it('checks a program by its path and a library by its soname', async () => {
    assert.equal(await findProgram('/bin/sh'), '/bin/sh');
    assert.equal(await findProgram('/nonexistent/vcstor-nfs-fuse'), undefined);
    assert.match((await findLibrary('libc.so.6')) ?? '', /\/libc\.so\.6$/);
    assert.equal(await findLibrary('libvcstor-none.so.0'), undefined);
    const [status] = await describeDrivers([{ ...FUSE_NFS_CLIENT, programs: ['/bin/sh'], libraries: ['libc.so.6', 'libvcstor-none.so.0'], kernelFilesystems: [] }], { 'nfs-client': 'fuse-nfs' });
    assert.equal(status!.available, false);
    assert.equal(status!.selected, true);
    assert.match(status!.detail ?? '', /libraries not found: libvcstor-none\.so\.0/);
  });
});
