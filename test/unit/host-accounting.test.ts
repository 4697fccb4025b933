import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { HostAccounting, parseBlockStat, parseKeyValues, parseNetDev, parseProcessIo, parseProcessStat } from '../../common/host-accounting.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';

/**
 * HostAccounting against a copy of the kernel's files: /proc, /sys and a memory cgroup
 * laid out in a scratch directory from outputs captured on a lab machine
 * (test/fixtures/host: a 40 MiB dd in a 64 MiB cgroup, an 8 MiB O_DIRECT write to a
 * direct-I/O loop device, a veth in a namespace).
 */

const FIXTURES = (() => {
  const besideBuild = fileURLToPath(new URL('../../../test/fixtures/host/', import.meta.url));
  return existsSync(besideBuild) ? besideBuild : path.join(process.cwd(), 'test', 'fixtures', 'host');
})();
const fixture = (name: string) => readFileSync(path.join(FIXTURES, name), 'utf8');

describe('kernel counter parsers (captured outputs)', () => {
  it('block stat: I/Os and 512-byte sectors', () => {
    assert.deepEqual(parseBlockStat(fixture('loop-stat.txt')), { readOps: 0, readBytes: 0, writeOps: 16, writeBytes: 8 * 2 ** 20 });
    assert.throws(() => parseBlockStat('1 2 x'), /unexpected block stat/);
  });
  it('/proc/PID/io: chars through syscalls, bytes to the block layer', () => {
    const io = parseProcessIo(fixture('process-io.txt'));
    assert.equal(io.writeBytes, 25186304);
    assert.equal(io.writeChars, 25165829);
    assert.equal(io.readBytes, 0);
    assert.equal(parseProcessIo('write_bytes: 100\ncancelled_write_bytes: 40\n').writeBytes, 60);
  });
  it('/proc/PID/stat: a command with spaces and parentheses', () => {
    assert.deepEqual(parseProcessStat('4242 (a (b) c) S 17 4242 4242 0 -1'), { comm: 'a (b) c', ppid: 17 });
  });
  it('/proc/net/dev: received is read, transmitted is write', () => {
    const links = parseNetDev(fixture('net-dev.txt'));
    assert.deepEqual(links.map((l) => l.name), ['lo', 'captv1']);
    assert.deepEqual(links[1], { name: 'captv1', readBytes: 90, readOps: 1, writeBytes: 90, writeOps: 1 });
  });
  it('memory.stat in bytes, /proc/meminfo in kB', () => {
    assert.equal(parseKeyValues(fixture('memory.stat.txt')).get('total_dirty'), 41947136);
    assert.equal(parseKeyValues(fixture('meminfo.txt')).get('Cached'), 396804 * 1024);
  });
});

describe('HostAccounting over a captured kernel tree', () => {
  let dir: string;
  let roots: { proc: string; sys: string; cgroup: string; images: string; state: string; outside: string };
  const diskMajorMinor = () => {
    const dev = statSync(dir, { bigint: true }).dev;
    return `${((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn)}:${(dev & 0xffn) | ((dev >> 12n) & ~0xffn)}`;
  };

  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vcstor-acct-'));
    roots = {
      proc: path.join(dir, 'proc'),
      sys: path.join(dir, 'sys'),
      cgroup: path.join(dir, 'cgroup'),
      images: path.join(dir, 'images'),
      state: path.join(dir, 'state'),
      outside: path.join(dir, 'outside'),
    };
    for (const d of Object.values(roots)) mkdirSync(d, { recursive: true });
    // Two loop devices: one over this host's image (direct I/O), one over another host's file.
    for (const [name, backing, dio] of [
      ['loop3', path.join(roots.images, 'a.img'), '1'],
      ['loop4', '/elsewhere/b.img', '0'],
    ] as const) {
      mkdirSync(path.join(roots.sys, 'block', name, 'loop'), { recursive: true });
      cpSync(path.join(FIXTURES, 'loop-stat.txt'), path.join(roots.sys, 'block', name, 'stat'));
      writeFileSync(path.join(roots.sys, 'block', name, 'loop/backing_file'), `${backing}\n`);
      writeFileSync(path.join(roots.sys, 'block', name, 'loop/dio'), `${dio}\n`);
    }
    // The disk holding the scratch directory, found by its device number.
    mkdirSync(path.join(roots.sys, 'block/vda'), { recursive: true });
    cpSync(path.join(FIXTURES, 'disk-stat.txt'), path.join(roots.sys, 'block/vda/stat'));
    mkdirSync(path.join(roots.sys, 'dev/block'), { recursive: true });
    symlinkSync('../../block/vda', path.join(roots.sys, 'dev/block', diskMajorMinor()));
    // A memory cgroup holding two processes (one gone before it is read).
    const group = path.join(roots.cgroup, 'vcstor.t/storage0');
    mkdirSync(group, { recursive: true });
    cpSync(path.join(FIXTURES, 'memory.stat.txt'), path.join(group, 'memory.stat'));
    writeFileSync(path.join(group, 'memory.limit_in_bytes'), '67108864\n');
    writeFileSync(path.join(group, 'memory.force_empty'), '');
    writeFileSync(path.join(group, 'cgroup.procs'), '100\n999\n');
    // The host's initiator runs in its FUSE server group, beside the host's own.
    mkdirSync(path.join(roots.cgroup, 'vcstor.t/storage0-fuse'), { recursive: true });
    writeFileSync(path.join(roots.cgroup, 'vcstor.t/storage0-fuse/cgroup.procs'), '101\n');
    for (const [pid, comm] of [
      [100, 'tgtd'],
      [101, 'qemu-storage-da'],
    ] as const) {
      mkdirSync(path.join(roots.proc, String(pid)));
      writeFileSync(path.join(roots.proc, String(pid), 'stat'), `${pid} (${comm}) S 1 ${pid} ${pid} 0 -1 4194560\n`);
      cpSync(path.join(FIXTURES, 'process-io.txt'), path.join(roots.proc, String(pid), 'io'));
    }
    mkdirSync(path.join(roots.proc, 'self/net'), { recursive: true });
    mkdirSync(path.join(roots.proc, 'sys/vm'), { recursive: true });
    writeFileSync(path.join(roots.proc, 'sys/vm/drop_caches'), '');
    cpSync(path.join(FIXTURES, 'net-dev.txt'), path.join(roots.proc, 'self/net/dev'));
    cpSync(path.join(FIXTURES, 'meminfo.txt'), path.join(roots.proc, 'meminfo'));
    writeFileSync(path.join(roots.images, 'a.img'), 'x');
    symlinkSync(roots.outside, path.join(roots.images, 'link'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const accounting = (runner: RecordingCommandRunner, memoryCgroup?: string) =>
    new HostAccounting({
      host: 'storage0',
      runner,
      ...(memoryCgroup ? { memoryCgroup, fuseServerCgroup: '/vcstor.t/storage0-fuse' } : {}),
      loopRoots: [roots.images, roots.state],
      diskPaths: [roots.state],
      pathRoots: [roots.images],
      procRoot: roots.proc,
      sysRoot: roots.sys,
      cgroupRoot: roots.cgroup,
    });

  it('samples the cgroup, this host\'s loop devices, its disk, its processes and links', async () => {
    const sample = await accounting(new RecordingCommandRunner(), '/vcstor.t/storage0').sample([path.join(roots.images, 'a.img')]);
    assert.equal(sample.host, 'storage0');
    const byId = (id: string) => sample.counters?.filter((c) => c.id === id) ?? [];
    const memory = byId('memory')[0];
    assert.equal(memory?.detail, 'memory cgroup /vcstor.t/storage0');
    assert.equal(memory?.cacheBytes, 42049536);
    assert.equal(memory?.dirtyBytes, 41947136);
    assert.equal(memory?.limitBytes, 64 * 2 ** 20);
    const loop = byId('block:loop3')[0];
    assert.equal(loop?.directIo, true);
    assert.equal(loop?.writeBytes, 8 * 2 ** 20);
    assert.match(loop?.detail ?? '', /a\.img \(direct I\/O\)$/);
    assert.equal(byId('block:loop4').length, 0, "another host's loop device is not this host's");
    // The disk: once as the state directory's, once as the device holding the asked path.
    const disks = byId('block:vda');
    assert.deepEqual(disks.map((d) => d.forPath ?? ''), ['', path.join(roots.images, 'a.img')]);
    assert.deepEqual(sample.counters?.filter((c) => c.kind === 'IO_COUNTER_KIND_PROCESS').map((c) => [c.id, c.writeBytes]), [
      ['process:tgtd:100', 25186304],
      ['process:qemu-storage-da:101', 25186304],
    ]);
    assert.deepEqual(sample.counters?.filter((c) => c.kind === 'IO_COUNTER_KIND_NETWORK').map((c) => c.id), ['net:captv1']);
  });

  it('without a cgroup the host is the machine: /proc/meminfo', async () => {
    const sample = await accounting(new RecordingCommandRunner()).sample([]);
    const memory = sample.counters?.find((c) => c.id === 'memory');
    assert.equal(memory?.detail, 'machine');
    assert.equal(memory?.cacheBytes, 396804 * 1024);
    assert.equal(memory?.limitBytes, 24683748 * 1024);
  });

  it('refuses paths outside its roots, also through a symbolic link, and skips missing ones', async () => {
    const a = accounting(new RecordingCommandRunner());
    await assert.rejects(a.sample(['/etc/passwd']), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(a.sample([path.join(roots.images, 'link/x')]), /leads outside/);
    await assert.rejects(a.sample(Array.from({ length: 17 }, (_, i) => path.join(roots.images, `f${i}`))), /at most 16/);
    const sample = await a.sample([path.join(roots.images, 'missing.img')]);
    assert.equal(sample.counters?.some((c) => c.forPath), false);
  });

  it('drops the cgroup: sync, then memory.force_empty', async () => {
    const runner = new RecordingCommandRunner().on('sync', [], {});
    const drop = await accounting(runner, '/vcstor.t/storage0').dropCaches(new AbortController().signal);
    assert.deepEqual(runner.calls.map((c) => [c.command, ...c.args]), [['sync']]);
    assert.equal(readFileSync(path.join(roots.cgroup, 'vcstor.t/storage0/memory.force_empty'), 'utf8'), '0');
    assert.equal(drop.scope, 'memory cgroup /vcstor.t/storage0');
    assert.equal(drop.cachedBytesBefore, 42049536);
    assert.equal(drop.dirtyBytesBefore, 41947136);
  });

  it('drops the machine\'s caches without a cgroup, and says when a cgroup is missing', async () => {
    await accounting(new RecordingCommandRunner().on('sync', [], {})).dropCaches(new AbortController().signal);
    assert.equal(readFileSync(path.join(roots.proc, 'sys/vm/drop_caches'), 'utf8'), '3');
    await assert.rejects(accounting(new RecordingCommandRunner().on('sync', [], {}), '/vcstor.t/nope').dropCaches(new AbortController().signal), {
      code: 'FAILED_PRECONDITION',
      message: /memory cgroup \/vcstor.t\/nope cannot be read/,
    });
  });
});
