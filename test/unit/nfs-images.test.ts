import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { NfsClientDriver, NfsMountSpec } from '../../host-storage/types.js';
import { LoopDevices } from '../../common/loop-devices.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';
import { Images } from '../../agent-dom0/images.js';
import { KernelNfsImageFiles, nfsImageKey } from '../../agent-dom0/nfs-images.js';

/**
 * dom0's file-nfs images through the kernel NFS client (the VM tier runs them for real):
 * which mounts it makes and where, which loop devices, and that everything it makes is
 * undone. The NFS client is a double that records mounts; the directories are real.
 */

/**
 * A kernel NFS client double: the export is a directory of the test (`serverDir`); a
 * mount moves its files into the mountpoint and an unmount moves them back, so the
 * mountpoint is empty again afterwards, as after a real umount.
 */
class RecordingNfsClient implements NfsClientDriver {
  readonly driver = 'kernel' as const;
  readonly mounted = new Map<string, NfsMountSpec>();
  readonly log: string[] = [];
  constructor(private readonly serverDir: string) {}
  private async move(from: string, to: string): Promise<void> {
    await mkdir(to, { recursive: true });
    for (const name of await readdir(from).catch(() => [] as string[])) await rename(path.join(from, name), path.join(to, name));
  }
  async mount(spec: NfsMountSpec): Promise<boolean> {
    this.log.push(`mount ${spec.server}:${spec.exportPath} ${spec.mountpoint} v${spec.version} ${spec.options.join(',')}`);
    if (this.mounted.has(spec.mountpoint)) return false;
    this.mounted.set(spec.mountpoint, spec);
    await this.move(this.serverDir, spec.mountpoint);
    return true;
  }
  async unmount(mountpoint: string): Promise<boolean> {
    this.log.push(`umount ${mountpoint}`);
    if (!this.mounted.has(mountpoint)) return false;
    await this.move(mountpoint, this.serverDir);
    return this.mounted.delete(mountpoint);
  }
  async list(): Promise<NfsMountSpec[]> {
    return [...this.mounted.values()];
  }
}

describe('KernelNfsImageFiles: file-nfs images in a kernel NFS mount', () => {
  let root: string;
  const file = { server: '198.19.100.10', exportPath: '/srv/vcstor/v-file-nfs', fileName: 'guest.img', nfsVersion: 0 };
  const signal = new AbortController().signal;

  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'vcstor-nfs-images-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('creates the image inside a mount of the export, then unmounts and removes the mountpoint', async () => {
    const nfsClient = new RecordingNfsClient(path.join(root, 'server'));
    const runner = new RecordingCommandRunner();
    const files = new KernelNfsImageFiles({ nfsClient, loops: new LoopDevices(runner), images: new Images([root]), mountRoot: root, runner });
    const progress: number[] = [];
    const { image, created } = await files.create(file, 4 * 2 ** 20, 'preallocated', signal, (done) => progress.push(done));
    const mountpoint = path.join(root, '.nfs', `create-${nfsImageKey(file).slice(4)}`);
    assert.deepEqual(nfsClient.log, [`mount 198.19.100.10:/srv/vcstor/v-file-nfs ${mountpoint} v3 hard`, `umount ${mountpoint}`]);
    assert.equal(created, true);
    assert.deepEqual(image.location, { nfsFile: file }, 'the image is described by where the guest config names it');
    assert.equal(image.sizeBytes, 4 * 2 ** 20);
    assert.equal(image.provisioning, 'PROVISIONING_PREALLOCATED');
    assert.ok(progress.length > 0, 'the zero-fill reports progress');
    // The image is on the server; the mountpoint is gone.
    assert.equal((await stat(path.join(root, 'server', 'guest.img'))).size, 4 * 2 ** 20);
    await assert.rejects(stat(mountpoint), /ENOENT/);
    assert.deepEqual(runner.lines, [], 'no command: the mount is the NFS client driver\'s');
  });

  it('opens a VBD device as a loop device over the file in its own mount, and close undoes both', async () => {
    const nfsClient = new RecordingNfsClient(path.join(root, 'server'));
    const runner = new RecordingCommandRunner();
    const key = nfsImageKey(file);
    const mountpoint = path.join(root, '.nfs', key);
    const backing = path.join(mountpoint, 'guest.img');
    let attached = false;
    runner
      .on('losetup', ['--json', '--list'], () => ({ stdout: attached ? JSON.stringify({ loopdevices: [{ name: '/dev/loop7', 'back-file': backing, offset: 0, sizelimit: 0 }] }) : '' }))
      .on('losetup', ['--find', '--show', backing], () => {
        attached = true;
        return { stdout: '/dev/loop7\n' };
      })
      .on('losetup', ['--detach', '/dev/loop7'], () => {
        attached = false;
        return {};
      })
      .on('blockdev', ['--flushbufs', '/dev/loop7'], {});
    const files = new KernelNfsImageFiles({ nfsClient, loops: new LoopDevices(runner), images: new Images([root]), mountRoot: root, runner });
    assert.equal(await files.open(key, file, signal), '/dev/loop7');
    assert.equal(await files.open(key, file, signal), '/dev/loop7', 'opening again gives the same device');
    assert.deepEqual([...nfsClient.mounted.keys()], [mountpoint]);
    await files.close(key, signal);
    assert.deepEqual([...nfsClient.mounted.keys()], [], 'the export is unmounted');
    assert.ok(runner.lines.includes('blockdev --flushbufs /dev/loop7'), 'flushed before detaching');
    assert.ok(runner.lines.includes('losetup --detach /dev/loop7'));
    assert.deepEqual(await readdir(path.join(root, '.nfs')).catch(() => []), [], 'no mountpoint left');
    // Closing again finds nothing to do.
    await files.close(key, signal);
  });

  it('says NOT_FOUND, and leaves no mount, when there is no image to attach', async () => {
    const nfsClient = new RecordingNfsClient(path.join(root, 'server'));
    const runner = new RecordingCommandRunner();
    runner.on('losetup', ['--json', '--list'], { stdout: '' }).on('losetup', ['--find', '--show'], { exitCode: 1, stderr: 'losetup: guest.img: failed to set up loop device: No such file or directory' });
    const files = new KernelNfsImageFiles({ nfsClient, loops: new LoopDevices(runner), images: new Images([root]), mountRoot: root, runner });
    await assert.rejects(files.open(nfsImageKey(file), file, signal), (err: unknown) => {
      assert.equal((err as { code?: string }).code, 'NOT_FOUND');
      assert.match((err as Error).message, /no image there to attach/);
      return true;
    });
    assert.deepEqual([...nfsClient.mounted.keys()], []);
  });
});

