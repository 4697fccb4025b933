import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VcstorError } from '../../common/errors.js';
import { KernelNfsClient, nfsMountOptions, parseNfsSource } from '../../host-storage/kernel-nfs-client.js';
import type { NfsMountSpec } from '../../host-storage/types.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';
import { rejects } from '../support/errors.js';

/**
 * /proc/self/mountinfo of a small VM, in the kernel's layout (proc(5)): root, proc, sys,
 * dev. NFS lines below carry the super options the kernel prints for nfs (v3) and nfs4
 * mounts made by mount.nfs with vers=3 / vers=4.1 over TCP.
 */
const BASE_MOUNTINFO = [
  '22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro',
  '23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw',
  '24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw',
  '25 22 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=4012340k,nr_inodes=1003085,mode=755,inode64',
].join('\n');

/** mountinfo escapes space, tab, newline and backslash in paths as octal. */
function escapeMountinfo(field: string): string {
  return field.replace(/[ \t\n\\]/g, (char) => `\\${char.charCodeAt(0).toString(8).padStart(3, '0')}`);
}

function nfsLine(id: number, mountpoint: string, source: string, version: 3 | 4): string {
  const type = version === 4 ? 'nfs4' : 'nfs';
  const superOptions =
    version === 4
      ? 'rw,vers=4.1,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=192.0.2.20,local_lock=none,addr=192.0.2.5'
      : 'rw,vers=3,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,mountaddr=192.0.2.5,mountvers=3,mountport=20048,mountproto=tcp,local_lock=none,addr=192.0.2.5';
  return `${id} 22 0:${id + 30} / ${escapeMountinfo(mountpoint)} rw,relatime shared:${id} - ${type} ${source} ${superOptions}`;
}

let workDir = '';
let caseNumber = 0;

before(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'vcstor-nfs-client-'));
});

after(async () => {
  await rm(workDir, { recursive: true, force: true });
});

/** A case directory: a mountinfo file the fake kernel appends to, and mountpoints under mnt/. */
function setup(extraLines: string[] = []): { mountinfo: string; mnt: string; runner: RecordingCommandRunner; client: KernelNfsClient } {
  caseNumber += 1;
  const dir = path.join(workDir, `case-${caseNumber}`);
  mkdirSync(dir, { recursive: true });
  const mountinfo = path.join(dir, 'mountinfo');
  writeFileSync(mountinfo, `${[BASE_MOUNTINFO, ...extraLines].join('\n')}\n`);
  const runner = new RecordingCommandRunner();
  return { mountinfo, mnt: path.join(dir, 'mnt'), runner, client: new KernelNfsClient({ runner, mountinfoPath: mountinfo }) };
}

/** mount succeeds and the kernel lists the new mount, as it would (args: -t nfs -o OPTS SOURCE MOUNTPOINT). */
function mountAppends(mountinfo: string, version: 3 | 4): (command: string, args: readonly string[]) => { stdout: string } {
  return (_command, args) => {
    appendFileSync(mountinfo, `${nfsLine(90, args[5] ?? '', args[4] ?? '', version)}\n`);
    return { stdout: '' };
  };
}

const signal = new AbortController().signal;

function spec(mountpoint: string, overrides: Partial<NfsMountSpec> = {}): NfsMountSpec {
  return { server: '192.0.2.5', exportPath: '/srv/vcstor/nfs/vol1', mountpoint, version: 3, options: ['hard', 'noatime'], ...overrides };
}

describe('KernelNfsClient.mount', () => {
  it('mounts NFSv3 over TCP with the caller options and makes the mountpoint', async () => {
    const { mountinfo, mnt, runner, client } = setup();
    const mountpoint = path.join(mnt, 'vol1');
    runner.on('mount', [], mountAppends(mountinfo, 3));

    assert.equal(await client.mount(spec(mountpoint), signal), true);
    assert.deepEqual(runner.lines, [`mount -t nfs -o vers=3,proto=tcp,hard,noatime 192.0.2.5:/srv/vcstor/nfs/vol1 ${mountpoint}`]);
    assert.ok(existsSync(mountpoint));
    assert.equal(runner.calls[0]?.options.timeoutMs, 150_000);
  });

  it('mounts NFSv4 as vers=4.1', async () => {
    const { mountinfo, mnt, runner, client } = setup();
    const mountpoint = path.join(mnt, 'vol1');
    runner.on('mount', [], mountAppends(mountinfo, 4));

    assert.equal(await client.mount(spec(mountpoint, { version: 4, options: [] }), signal), true);
    assert.deepEqual(runner.lines, [`mount -t nfs -o vers=4.1,proto=tcp 192.0.2.5:/srv/vcstor/nfs/vol1 ${mountpoint}`]);
  });

  it('puts an IPv6 server in brackets', async () => {
    const { mountinfo, mnt, runner, client } = setup();
    const mountpoint = path.join(mnt, 'v6');
    runner.on('mount', [], mountAppends(mountinfo, 4));
    await client.mount(spec(mountpoint, { server: 'fd00:2::5', version: 4, options: [] }), signal);
    assert.deepEqual(runner.calls[0]?.args, ['-t', 'nfs', '-o', 'vers=4.1,proto=tcp', '[fd00:2::5]:/srv/vcstor/nfs/vol1', mountpoint]);
  });

  it('is idempotent: the same export there already (path with a space, trailing slash) runs nothing', async () => {
    caseNumber += 1;
    const mountpoint = path.join(workDir, `case-${caseNumber}-pre`, 'team share');
    const { runner, client } = setup([nfsLine(80, mountpoint, '192.0.2.5:/srv/vcstor/nfs/vol1/', 3)]);

    assert.equal(await client.mount(spec(mountpoint), signal), false);
    assert.deepEqual(runner.lines, []);
  });

  it('refuses another filesystem at the mountpoint (FAILED_PRECONDITION), running nothing', async () => {
    caseNumber += 1;
    const mountpoint = path.join(workDir, `case-${caseNumber}-pre`, 'vol1');
    const { runner, client } = setup([`81 22 252:16 / ${mountpoint} rw,relatime shared:81 - ext4 /dev/vdb rw`]);

    const err = await rejects(client.mount(spec(mountpoint), signal));
    assert.equal(err.code, 'FAILED_PRECONDITION');
    assert.match(err.message, /already has \/dev\/vdb \(ext4\) mounted/);
    assert.deepEqual(runner.lines, []);
  });

  it('refuses another export at the mountpoint, and the same export over the other version', async () => {
    caseNumber += 1;
    const mountpoint = path.join(workDir, `case-${caseNumber}-pre`, 'vol1');
    const { client } = setup([nfsLine(82, mountpoint, '192.0.2.5:/srv/vcstor/nfs/vol1', 3)]);

    const other = await rejects(client.mount(spec(mountpoint, { exportPath: '/srv/vcstor/nfs/vol2' }), signal));
    assert.equal(other.code, 'FAILED_PRECONDITION');
    const version = await rejects(client.mount(spec(mountpoint, { version: 4 }), signal));
    assert.equal(version.code, 'FAILED_PRECONDITION');
    assert.match(version.message, /over NFSv3, not NFSv4/);
  });

  it('refuses options outside the allow-list, vers and proto included, before running anything', async () => {
    const { mnt, runner, client } = setup();
    for (const options of [['vers=4.2'], ['proto=udp'], ['hard,nolock'], ['rsize=big'], ['x-systemd.automount']]) {
      const err = await rejects(client.mount(spec(path.join(mnt, 'vol1'), { options }), signal));
      assert.equal(err.code, 'INVALID_ARGUMENT', options.join());
    }
    assert.equal((await rejects(client.mount(spec(path.join(mnt, 'vol1'), { version: 2 }), signal))).code, 'INVALID_ARGUMENT');
    assert.equal((await rejects(client.mount(spec('relative/dir'), signal))).code, 'INVALID_ARGUMENT');
    assert.deepEqual(runner.lines, []);
  });

  it("maps mount.nfs's refusal to PERMISSION_DENIED and a missing export to NOT_FOUND", async () => {
    const { mnt, runner, client } = setup();
    runner.when(
      (_command, args) => args[4] === '192.0.2.5:/srv/vcstor/nfs/vol1',
      { exitCode: 32, stderr: 'mount.nfs: access denied by server while mounting 192.0.2.5:/srv/vcstor/nfs/vol1\n' },
    );
    runner.on('mount', [], {
      exitCode: 32,
      stderr: 'mount.nfs: mounting 192.0.2.5:/srv/nope failed, reason given by server: No such file or directory\n',
    });
    const denied = await rejects(client.mount(spec(path.join(mnt, 'a')), signal));
    assert.equal(denied.code, 'PERMISSION_DENIED');
    assert.match(denied.message, /access denied by server/);
    const missing = await rejects(client.mount(spec(path.join(mnt, 'b'), { exportPath: '/srv/nope' }), signal));
    assert.equal(missing.code, 'NOT_FOUND');
  });

  it('reports a mount that mountinfo does not show afterwards', async () => {
    const { mnt, runner, client } = setup();
    runner.on('mount', [], {});
    const err = await rejects(client.mount(spec(path.join(mnt, 'vol1')), signal));
    assert.equal(err.code, 'INTERNAL');
    assert.match(err.message, /mountinfo shows nothing there/);
  });
});

describe('KernelNfsClient.unmount', () => {
  it('returns false when nothing is mounted there, running nothing', async () => {
    const { mnt, runner, client } = setup();
    assert.equal(await client.unmount(path.join(mnt, 'vol1'), signal), false);
    assert.deepEqual(runner.lines, []);
  });

  it('unmounts an NFS mount', async () => {
    caseNumber += 1;
    const mountpoint = path.join(workDir, `case-${caseNumber}-pre`, 'vol1');
    const { runner, client } = setup([nfsLine(83, mountpoint, '192.0.2.5:/srv/vcstor/nfs/vol1', 4)]);
    runner.on('umount', [], {});
    assert.equal(await client.unmount(`${mountpoint}/`, signal), true);
    assert.deepEqual(runner.lines, [`umount ${mountpoint}`]);
  });

  it('reports a busy mount as FAILED_PRECONDITION saying what to do', async () => {
    caseNumber += 1;
    const mountpoint = path.join(workDir, `case-${caseNumber}-pre`, 'vol1');
    const { runner, client } = setup([nfsLine(84, mountpoint, '192.0.2.5:/srv/vcstor/nfs/vol1', 3)]);
    runner.on('umount', [], { exitCode: 32, stderr: `umount: ${mountpoint}: target is busy.\n` });

    const err = await rejects(client.unmount(mountpoint, signal));
    assert.equal(err.code, 'FAILED_PRECONDITION');
    assert.match(err.message, /is busy: a process still has files or its working directory under it \(see fuser -vm /);
  });

  it('takes "not mounted" from umount (it went meanwhile) as false', async () => {
    caseNumber += 1;
    const mountpoint = path.join(workDir, `case-${caseNumber}-pre`, 'vol1');
    const { runner, client } = setup([nfsLine(85, mountpoint, '192.0.2.5:/srv/vcstor/nfs/vol1', 3)]);
    runner.on('umount', [], { exitCode: 32, stderr: `umount: ${mountpoint}: not mounted.\n` });
    assert.equal(await client.unmount(mountpoint, signal), false);
  });

  it('leaves a mount that is not NFS alone', async () => {
    caseNumber += 1;
    const mountpoint = path.join(workDir, `case-${caseNumber}-pre`, 'vol1');
    const { runner, client } = setup([`86 22 252:16 / ${mountpoint} rw,relatime shared:86 - xfs /dev/vdb rw`]);
    const err = await rejects(client.unmount(mountpoint, signal));
    assert.equal(err.code, 'FAILED_PRECONDITION');
    assert.deepEqual(runner.lines, []);
  });
});

describe('KernelNfsClient.list', () => {
  it('lists the NFS mounts under the roots only, with server, export, version and options', async () => {
    const { client } = setup([
      nfsLine(70, '/var/lib/vcstor/nfs/vol a', '192.0.2.5:/srv/vcstor/nfs/vol-a', 3),
      nfsLine(71, '/var/lib/vcstor/nfs/vol-b', '[fd00:2::5]:/srv/vcstor/nfs/vol-b', 4),
      nfsLine(72, '/var/lib/vcstor/nfs2/other', '192.0.2.5:/srv/other', 3),
      nfsLine(73, '/home', '192.0.2.9:/export/home', 4),
      '74 22 252:16 / /var/lib/vcstor/nfs/local rw,relatime shared:74 - ext4 /dev/vdb rw',
    ]);
    assert.deepEqual(await client.list(['/var/lib/vcstor/nfs/']), [
      { server: '192.0.2.5', exportPath: '/srv/vcstor/nfs/vol-a', mountpoint: '/var/lib/vcstor/nfs/vol a', version: 3, options: ['rw', 'relatime'] },
      { server: 'fd00:2::5', exportPath: '/srv/vcstor/nfs/vol-b', mountpoint: '/var/lib/vcstor/nfs/vol-b', version: 4, options: ['rw', 'relatime'] },
    ]);
    assert.deepEqual(await client.list([]), []);
  });

  it('reads the real /proc/self/mountinfo by default', async () => {
    const client = new KernelNfsClient({ runner: new RecordingCommandRunner() });
    // A wrong default path would throw here (ENOENT).
    assert.ok(Array.isArray(await client.list(['/'])));
  });
});

describe('NFS source and options helpers', () => {
  it('splits sources with IPv4, names and bracketed IPv6, and rejects others', () => {
    assert.deepEqual(parseNfsSource('192.0.2.5:/srv/x'), { server: '192.0.2.5', exportPath: '/srv/x' });
    assert.deepEqual(parseNfsSource('nas.example:/'), { server: 'nas.example', exportPath: '/' });
    assert.deepEqual(parseNfsSource('[fd00::5]:/srv/x'), { server: 'fd00::5', exportPath: '/srv/x' });
    assert.equal(parseNfsSource('/dev/vdb'), undefined);
  });

  it('puts vers and proto first and keeps the caller options in order', () => {
    assert.deepEqual(nfsMountOptions({ version: 4, options: ['soft', 'timeo=50', 'sec=krb5p'] }), ['vers=4.1', 'proto=tcp', 'soft', 'timeo=50', 'sec=krb5p']);
  });
});
