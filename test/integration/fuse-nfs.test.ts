import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, open, readdir, readFile, readlink, rename, rm, rmdir, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VcstorError } from '../../common/errors.js';
import { parseMountinfo } from '../../common/filesystems.js';
import { isRunning, startDetached, startInNamespace, stopProcess, waitFor, type DetachedProcess } from '../../common/processes.js';
import { findProgram } from '../../common/requirements.js';
import { ExecaCommandRunner } from '../../common/runner.js';
import { pino } from 'pino';
import { FUSE_NFS_FSTYPE, FUSE_NFS_PROGRAM, FuseNfsClient } from '../../host-storage/fuse-nfs-client.js';
import { HostStorage } from '../../host-storage/host-storage.js';
import type { IscsiInitiatorDriver, NfsMountSpec } from '../../host-storage/types.js';
import { startRpcbindStub, type RpcbindStub } from '../support/rpcbind-stub.js';

/**
 * vcstor-nfs-fuse for real: nfs-ganesha (NFSv3, FSAL VFS, an export on a temp directory)
 * in one network namespace, the fuse-nfs driver's program in another, a veth between them
 * (203.0.113.0/24). The client is given the NFS and MOUNT ports, so it asks no portmapper.
 *
 * No rpcbind runs for this test. ganesha 4.3 will not start NFSv3 unless a registration
 * with rpcbind succeeds (alone it exits 2 after "Cannot register NFS V3 on TCP"), and the
 * machine's rpcbind socket (/run/rpcbind.sock) is shared by every namespace, a lab's
 * among them: a ganesha reaching it would UNSET the lab's NFS registrations as it starts.
 * So ganesha runs in a mount namespace of its own with a tmpfs on /run, where a stub
 * (test/support/rpcbind-stub.ts) accepts its registrations on /run/rpcbind.sock.
 *
 * Names: namespaces fnx-s<pid>/fnx-c<pid>; everything is removed in `after`, also when a
 * step failed.
 */
const runner = new ExecaCommandRunner();
const never = new AbortController().signal;
const tag = String(process.pid % 100_000);
const SERVER_NS = `fnx-s${tag}`;
const CLIENT_NS = `fnx-c${tag}`;
const SERVER_IP = '203.0.113.1';
const CLIENT_IP = '203.0.113.2';
const NFS_PORT = 2049;
const MNT_PORT = 20048;

async function missingTools(): Promise<string[]> {
  const tools = ['ip', 'nsenter', 'unshare', 'mount', 'umount', 'ganesha.nfsd', 'fio', 'postmark'];
  const missing = (await Promise.all(tools.map(async (t) => ((await findProgram(t)) ? undefined : t)))).filter((t): t is string => t !== undefined);
  if (!existsSync('/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so')) missing.push('nfs-ganesha-vfs');
  return missing;
}

const missing = await missingTools();
const skip =
  process.getuid?.() !== 0
    ? 'namespaces, FUSE mounts and ganesha need root'
    : !existsSync(FUSE_NFS_PROGRAM)
      ? `${FUSE_NFS_PROGRAM} is not built (npm run build; scripts/build-native.sh needs libnfs-dev and libfuse3-dev)`
      : !existsSync('/dev/fuse')
        ? 'no /dev/fuse'
        : missing.length > 0
          ? `not installed: ${missing.join(', ')}`
          : false;

/** The ganesha config of LAB.md "NFS in user space", NFSv3 only. */
function ganeshaConfig(exportDir: string, recoveryDir: string): string {
  return [
    `NFS_CORE_PARAM { Bind_addr = ${SERVER_IP}; NFS_Port = ${NFS_PORT}; MNT_Port = ${MNT_PORT}; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; Protocols = 3; Plugins_Dir = "/usr/lib/x86_64-linux-gnu/ganesha"; }`,
    `NFSv4 { Graceless = true; RecoveryRoot = "${recoveryDir}"; Only_Numeric_Owners = true; }`,
    `EXPORT { Export_Id = 1; Path = "${exportDir}"; Pseudo = "/fnx"; Access_Type = RW; Squash = No_Root_Squash; Transports = TCP; SecType = sys; FSAL { Name = VFS; } }`,
    '',
  ].join('\n');
}

/** fio's final JSON (the last object from `{` at column 0), its job's bandwidth in MB/s. */
function fioMBps(stdout: string, rw: 'read' | 'write'): { mbps: number; error: number } {
  const start = stdout.lastIndexOf('\n{') + 1;
  const report = JSON.parse(stdout.slice(start)) as { jobs: Array<{ error: number } & Record<'read' | 'write', { bw_bytes: number; io_bytes: number }>> };
  const job = report.jobs[0]!;
  assert.equal(job[rw].io_bytes, 32 << 20, `fio ${rw} moved all 32 MiB`);
  return { mbps: job[rw].bw_bytes / 1e6, error: job.error };
}

describe('fuse-nfs: vcstor-nfs-fuse against a real ganesha (NFSv3, no portmapper)', { skip, timeout: 60_000 }, () => {
  let dir = '';
  let exportDir = '';
  let mnt = '';
  let holder: DetachedProcess | undefined;
  let ganesha: DetachedProcess | undefined;
  let stub: RpcbindStub | undefined;
  let client: FuseNfsClient;
  let spec: NfsMountSpec;
  const extraMounts: string[] = [];

  before(async () => {
    dir = await mkdtemp('/tmp/vcstor-fnx-');
    exportDir = path.join(dir, 'export');
    mnt = path.join(dir, 'mnt');
    await mkdir(exportDir);
    await mkdir(path.join(dir, 'recovery'));
    // Two namespaces and a veth pair between them.
    const ip = (...args: string[]) => runner.run('ip', args);
    await ip('netns', 'add', SERVER_NS);
    await ip('netns', 'add', CLIENT_NS);
    await ip('link', 'add', `fnx${tag}a`, 'type', 'veth', 'peer', 'name', `fnx${tag}b`);
    await ip('link', 'set', `fnx${tag}a`, 'netns', SERVER_NS);
    await ip('link', 'set', `fnx${tag}b`, 'netns', CLIENT_NS);
    for (const [ns, dev, address] of [
      [SERVER_NS, `fnx${tag}a`, SERVER_IP],
      [CLIENT_NS, `fnx${tag}b`, CLIENT_IP],
    ] as const) {
      await ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', dev);
      await ip('-n', ns, 'link', 'set', dev, 'up');
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    // ganesha's mount namespace: held by a sleep, /run a tmpfs of its own (see above).
    // Slave propagation: unmounts on the machine reach it, so it pins no one's mounts.
    holder = await startInNamespace('holder', 'fnx', SERVER_NS, ['unshare', '--mount', '--propagation', 'slave', '--', 'sleep', '600'], path.join(dir, 'holder.log'));
    const ownMountNs = await readlink('/proc/self/ns/mnt');
    await waitFor('the holder\'s mount namespace', async () => (await readlink(`/proc/${holder!.pid}/ns/mnt`)) !== ownMountNs, 5000);
    await runner.run('nsenter', ['-t', String(holder.pid), '-m', '--', 'mount', '-t', 'tmpfs', '-o', 'size=4m,mode=0755', 'vcstor-fnx-run', '/run']);
    stub = await startRpcbindStub(`/proc/${holder.pid}/root/run/rpcbind.sock`);
    await writeFile(path.join(dir, 'ganesha.conf'), ganeshaConfig(exportDir, path.join(dir, 'recovery')));
    const ganeshaLog = path.join(dir, 'ganesha.log');
    ganesha = await startDetached(
      'ganesha',
      'fnx',
      ['nsenter', '-t', String(holder.pid), '-m', '-n', '--', 'ganesha.nfsd', '-F', '-L', ganeshaLog, '-f', path.join(dir, 'ganesha.conf'), '-p', path.join(dir, 'ganesha.pid')],
      path.join(dir, 'ganesha.out'),
    );
    for (let waited = 0; !(await readFile(ganeshaLog, 'utf8').catch(() => '')).includes('NFS SERVER INITIALIZED'); waited += 50) {
      if (!(await isRunning(ganesha))) throw new Error(`ganesha exited: ${await readFile(ganeshaLog, 'utf8').catch(() => '')}`);
      if (waited > 10_000) throw new Error('ganesha did not start within 10 s');
      await sleep(50);
    }
    // The driver as an agent in the client namespace would run it: the program inherits
    // that namespace; its mount is made in this (the machine's) mount namespace.
    client = new FuseNfsClient({
      runner,
      stateDir: path.join(dir, 'state'),
      start: (name, host, command, log) => startInNamespace(name, host, CLIENT_NS, command, log),
    });
    spec = { server: SERVER_IP, exportPath: exportDir, mountpoint: mnt, version: 3, options: [`port=${NFS_PORT}`, `mountport=${MNT_PORT}`, 'hard'] };
  });

  after(async () => {
    // Whatever happened: no mount, no process, no namespace, no directory left.
    const mounted = () => readFile('/proc/self/mountinfo', 'utf8').then((t) => parseMountinfo(t).filter((m) => m.fsType === FUSE_NFS_FSTYPE && m.mountpoint.startsWith(`${dir}/`)));
    if (client) await client.unmount(mnt, never).catch(() => undefined);
    for (const m of await mounted().catch(() => [])) await runner.run('umount', ['-l', m.mountpoint], { okExitCodes: [0, 32] }).catch(() => undefined);
    for (const extra of extraMounts) await runner.run('umount', ['-l', extra], { okExitCodes: [0, 32] }).catch(() => undefined);
    if (ganesha) await stopProcess(ganesha, 5000);
    if (stub) await stub.close().catch(() => undefined);
    if (holder) await stopProcess(holder, 2000);
    for (const ns of [SERVER_NS, CLIENT_NS]) await runner.run('ip', ['netns', 'del', ns], { okExitCodes: [0, 1] }).catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('mounts as an agent does (HostStorage.mountNfs, on a kernel without NFS); the same mount again is already mounted', async (t) => {
    const host = new HostStorage({ runner, log: pino({ level: 'silent' }), initiator: {} as IscsiInitiatorDriver, nfsClient: client, mountRoots: [dir] });
    const request = { server: SERVER_IP, exportPath: exportDir, mountpoint: mnt, nfsVersion: 3, options: spec.options };
    const started = Date.now();
    const first = await host.mountNfs(request, never);
    t.diagnostic(`mounted in ${Date.now() - started} ms`);
    assert.equal(first.alreadyMounted, false);
    assert.equal(first.mount.driver, 'fuse-nfs');
    assert.equal((await host.mountNfs(request, never)).alreadyMounted, true);
    assert.equal(await client.mount(spec, never), false);
    const [listed] = await host.listNfsMounts();
    assert.deepEqual(
      { server: listed?.server, exportPath: listed?.exportPath, mountpoint: listed?.mountpoint, nfsVersion: listed?.nfsVersion, driver: listed?.driver },
      { server: SERVER_IP, exportPath: exportDir, mountpoint: mnt, nfsVersion: 3, driver: 'fuse-nfs' },
    );
    assert.ok(stub!.registrations.some((r) => r.proc === 'set' && r.program === 100003 && r.version === 3), 'ganesha registered NFSv3 with the stub only');
  });

  it('writes, reads back, and does directory operations on the server', async () => {
    await writeFile(path.join(mnt, 'hello.txt'), 'hello over NFSv3\n');
    assert.equal(await readFile(path.join(mnt, 'hello.txt'), 'utf8'), 'hello over NFSv3\n');
    assert.equal(await readFile(path.join(exportDir, 'hello.txt'), 'utf8'), 'hello over NFSv3\n', 'on the server\'s disk');
    await mkdir(path.join(mnt, 'd1/d2'), { recursive: true });
    await rename(path.join(mnt, 'hello.txt'), path.join(mnt, 'd1/d2/moved.txt'));
    assert.deepEqual(await readdir(mnt), ['d1']);
    assert.deepEqual(await readdir(path.join(mnt, 'd1/d2')), ['moved.txt']);
    assert.ok(existsSync(path.join(exportDir, 'd1/d2/moved.txt')));
    await chmod(path.join(mnt, 'd1/d2/moved.txt'), 0o600);
    assert.equal((await stat(path.join(exportDir, 'd1/d2/moved.txt'))).mode & 0o777, 0o600, 'chmod is an NFS SETATTR');
    await truncate(path.join(mnt, 'd1/d2/moved.txt'), 5);
    assert.equal(await readFile(path.join(mnt, 'd1/d2/moved.txt'), 'utf8'), 'hello');
    const handle = await open(path.join(mnt, 'd1/big.bin'), 'w');
    await handle.write(Buffer.alloc(3 << 20, 7), 0, 3 << 20, 0);
    await handle.sync();
    await handle.close();
    assert.equal((await stat(path.join(exportDir, 'd1/big.bin'))).size, 3 << 20);
    await unlink(path.join(mnt, 'd1/d2/moved.txt'));
    await unlink(path.join(mnt, 'd1/big.bin'));
    await rmdir(path.join(mnt, 'd1/d2'));
    await rmdir(path.join(mnt, 'd1'));
    assert.deepEqual(await readdir(exportDir), []);
  });

  it('runs fio with O_DIRECT: 32 MiB written, then read, at 1 MiB', async (t) => {
    const rates: Record<string, number> = {};
    for (const rw of ['write', 'read'] as const) {
      const result = await runner.run('fio', ['--name=x', `--directory=${mnt}`, `--rw=${rw}`, '--bs=1M', '--size=32M', '--direct=1', '--output-format=json'], { timeoutMs: 60_000 });
      const { mbps, error } = fioMBps(result.stdout, rw);
      assert.equal(error, 0);
      rates[rw] = mbps;
    }
    t.diagnostic(`fio through vcstor-nfs-fuse, O_DIRECT 1 MiB: write ${rates.write!.toFixed(0)} MB/s, read ${rates.read!.toFixed(0)} MB/s`);
    assert.equal((await stat(path.join(exportDir, 'x.0.0'))).size, 32 << 20);
    await unlink(path.join(mnt, 'x.0.0'));
  });

  it('runs PostMark to the end without an Error: line', async (t) => {
    await mkdir(path.join(mnt, 'pm'));
    const config = path.join(dir, 'postmark.cfg');
    await writeFile(
      config,
      [`set location ${path.join(mnt, 'pm')}`, 'set number 200', 'set subdirectories 10', 'set transactions 600', 'set size 512 16384', 'set read 8192', 'set write 8192', 'set buffering false', 'set bias read 5', 'set bias create 5', 'set report terse', 'run', 'quit', ''].join('\n'),
    );
    const result = await runner.run('postmark', [config], { timeoutMs: 60_000, cwd: dir });
    assert.doesNotMatch(result.stderr, /Error:/, result.stderr);
    const terse = result.stdout.trim().split('\n').pop()!.trim().split(/\s+/).map(Number);
    assert.equal(terse.length, 13, result.stdout);
    t.diagnostic(`postmark: ${terse[0]} s, ${terse[2]} transactions/s`);
    assert.deepEqual(await readdir(path.join(exportDir, 'pm')), [], 'postmark removed its files');
    await rmdir(path.join(mnt, 'pm'));
  });

  it('without the ports (no portmapper anywhere) the mount fails UNAVAILABLE, saying why', async () => {
    const err = await client.mount({ ...spec, mountpoint: path.join(dir, 'mnt-noports'), options: [] }, never).then(
      () => assert.fail('mounted without a portmapper'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof VcstorError);
    assert.equal(err.code, 'UNAVAILABLE');
    assert.match(err.message, /portmapper/);
  });

  it('ends cleanly on SIGTERM: the mount gone, exit status 0', async () => {
    const mountpoint = path.join(dir, 'mnt-term');
    await mkdir(mountpoint);
    extraMounts.push(mountpoint);
    const program = spawn('nsenter', [`--net=/run/netns/${CLIENT_NS}`, '--', FUSE_NFS_PROGRAM, '-o', `nfsport=${NFS_PORT},mountport=${MNT_PORT}`, `nfs://${SERVER_IP}${exportDir}`, mountpoint], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let said = '';
    program.stderr.on('data', (chunk: Buffer) => (said += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => program.once('exit', (code) => resolve(code)));
    const isMounted = async () => parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8')).some((m) => m.mountpoint === mountpoint && m.fsType === FUSE_NFS_FSTYPE);
    try {
      await waitFor('the SIGTERM test\'s mount', isMounted, 10_000);
    } finally {
      program.kill('SIGTERM');
    }
    assert.equal(await exited, 0, said);
    assert.equal(await isMounted(), false);
    assert.match(said, /unmounted .* \(signal\)/);
  });

  it('compares with libnfs alone (nfs-cp, one 1 MiB call at a time)', { skip: existsSync('/usr/bin/nfs-cp') ? false : 'nfs-cp is not installed (libnfs-utils)' }, async (t) => {
    const local = path.join(dir, 'local.bin');
    await writeFile(local, Buffer.alloc(32 << 20, 3));
    const url = `nfs://${SERVER_IP}${exportDir}/cp.bin?nfsport=${NFS_PORT}&mountport=${MNT_PORT}`;
    const timed = async (from: string, to: string) => {
      const started = performance.now();
      await runner.run('nsenter', [`--net=/run/netns/${CLIENT_NS}`, '--', 'nfs-cp', from, to], { timeoutMs: 60_000 });
      return (32 << 20) / 1e6 / ((performance.now() - started) / 1000);
    };
    const write = await timed(local, url);
    const read = await timed(url, path.join(dir, 'back.bin'));
    t.diagnostic(`nfs-cp (libnfs alone, process start included): write ${write.toFixed(0)} MB/s, read ${read.toFixed(0)} MB/s`);
    await rm(path.join(exportDir, 'cp.bin'));
  });

  it('unmounts: umount, the program gone, no record left', async () => {
    const record = JSON.parse(await readFile(path.join(dir, 'state', 'fuse-nfs', (await readdir(path.join(dir, 'state', 'fuse-nfs')))[0]!, 'mount.json'), 'utf8')) as { process: DetachedProcess };
    assert.equal(await isRunning(record.process), true);
    assert.equal(await client.unmount(mnt, never), true);
    assert.equal(await isRunning(record.process), false);
    assert.deepEqual(await client.list([dir]), []);
    assert.deepEqual(await readdir(path.join(dir, 'state', 'fuse-nfs')), []);
    assert.equal(await client.unmount(mnt, never), false);
  });
});
