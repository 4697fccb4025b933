import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { account, bonnieWriteBytes, layerOf, type HostSample } from '../../coordinator/accounting.js';
import { accountingHtml, accountingRows, accountingText } from '../../coordinator/report/index.js';
import type { MeasurementRecord } from '../../coordinator/model.js';
import type { IoCounter__Output } from '../../common/generated/vcstor/v1/IoCounter.js';

const MIB = 2 ** 20;

function counter(c: Partial<IoCounter__Output> & Pick<IoCounter__Output, 'id' | 'kind'>): IoCounter__Output {
  return {
    detail: '',
    readBytes: 0,
    writeBytes: 0,
    readOps: 0,
    writeOps: 0,
    readChars: 0,
    writeChars: 0,
    cacheBytes: 0,
    dirtyBytes: 0,
    writebackBytes: 0,
    limitBytes: 0,
    forPath: '',
    directIo: false,
    ...c,
  };
}

function host(role: HostSample['role'], name: string, counters: IoCounter__Output[]): HostSample {
  return { role, sample: { host: name, timeUnixMs: 0, counters } };
}

/**
 * An iscsi run as the lab's agents report it: the guest's device (a direct-I/O loop over
 * its qemu-storage-daemon), that daemon, the guest's link, tgtd on the storage server,
 * and the machine's disk under every host (one disk: the lab shares it).
 */
function iscsiSamples(scale: number, dirtyAfter: number): HostSample[] {
  const disk = counter({ id: 'block:vda', kind: 'IO_COUNTER_KIND_BLOCK_DEVICE', detail: 'disk under the state directory', writeBytes: 900 * MIB * scale });
  return [
    host('guest', 'guest0', [
      counter({ id: 'block:loop3', kind: 'IO_COUNTER_KIND_BLOCK_DEVICE', detail: '/x/qsd/k/disk.raw', writeBytes: 1024 * MIB * scale, directIo: true }),
      counter({ id: 'block:loop3', kind: 'IO_COUNTER_KIND_BLOCK_DEVICE', detail: 'loop3', forPath: '/mnt/r1-iscsi', writeBytes: 1024 * MIB * scale, directIo: true }),
      counter({ id: 'process:qemu-storage-d:77', kind: 'IO_COUNTER_KIND_PROCESS', detail: 'qemu-storage-daemon', writeChars: 1030 * MIB * scale }),
      counter({ id: 'net:eth0', kind: 'IO_COUNTER_KIND_NETWORK', writeBytes: 1040 * MIB * scale }),
      counter({ id: 'memory', kind: 'IO_COUNTER_KIND_MEMORY', dirtyBytes: 0 }),
      disk,
    ]),
    host('dom0', 'host0', [counter({ id: 'memory', kind: 'IO_COUNTER_KIND_MEMORY' }), disk]),
    host('storage', 'storage0', [
      counter({ id: 'process:tgtd:12', kind: 'IO_COUNTER_KIND_PROCESS', detail: 'tgtd -f', readChars: 1035 * MIB * scale, writeBytes: 1024 * MIB * scale }),
      counter({ id: 'memory', kind: 'IO_COUNTER_KIND_MEMORY', dirtyBytes: dirtyAfter }),
      disk,
    ]),
  ];
}

describe('I/O accounting of a benchmark run', () => {
  it('names each counter by its layer in the method, and the disk only where the data is kept', () => {
    const vda = counter({ id: 'block:vda', kind: 'IO_COUNTER_KIND_BLOCK_DEVICE' });
    assert.equal(layerOf('storage', vda, 'iscsi'), 'backing disk');
    assert.equal(layerOf('dom0', vda, 'iscsi'), undefined);
    assert.equal(layerOf('dom0', vda, 'phy-local'), 'backing disk');
    assert.equal(layerOf('storage', vda, 'file-local'), undefined);
    assert.equal(layerOf('guest', counter({ id: 'block:loop1', kind: 'IO_COUNTER_KIND_BLOCK_DEVICE', forPath: '/mnt/x' }), 'file-local'), 'guest device');
    assert.equal(layerOf('dom0', counter({ id: 'process:qemu-storage-d:5', kind: 'IO_COUNTER_KIND_PROCESS' }), 'file-local'), 'dom0 backend');
    assert.equal(layerOf('guest', counter({ id: 'process:qemu-storage-d:5', kind: 'IO_COUNTER_KIND_PROCESS' }), 'iscsi'), 'guest initiator');
    assert.equal(layerOf('storage', counter({ id: 'process:ganesha.nfsd:9', kind: 'IO_COUNTER_KIND_PROCESS' }), 'file-nfs'), 'storage daemon');
    assert.equal(layerOf('dom0', counter({ id: 'net:eth0', kind: 'IO_COUNTER_KIND_NETWORK' }), 'phy-iscsi'), 'dom0 link');
  });

  it('subtracts the samples, counts the backing disk once, and names the cache that held what did not reach it', () => {
    const before = iscsiSamples(0, 0);
    const after = iscsiSamples(1, 96 * MIB);
    const a = account({ method: 'iscsi', before, after, drops: [{ host: 'guest', scope: 'memory cgroup /vcstor.vcs/guest0', cachedBytesBefore: 50 * MIB, cachedBytesAfter: MIB, elapsedMs: 30 }], elapsedMs: 12_000, benchmarkWriteBytes: 1024 * MIB });
    assert.equal(a.benchmarkWriteBytes, 1024 * MIB);
    assert.equal(a.backingWriteBytes, 900 * MIB, 'the shared disk is counted on the storage server only');
    assert.equal(a.reachedBackingPercent, 87.9);
    assert.equal(a.absorbedBytes, 124 * MIB);
    assert.match(a.heldBy, /^storage0 page cache \(96\.0 MiB dirty/);
    const layers = a.layers.map((l) => `${l.host} ${l.layer}`);
    assert.deepEqual(layers, ['guest0 guest device', 'guest0 guest initiator', 'guest0 guest link', 'guest0 guest memory', 'host0 dom0 memory', 'storage0 storage daemon', 'storage0 storage memory', 'storage0 backing disk']);
    assert.equal(a.layers.find((l) => l.layer === 'guest device')!.writeBytes, 1024 * MIB);
    assert.match(a.layers.find((l) => l.layer === 'guest device')!.detail, /holds \/mnt\/r1-iscsi/);
  });

  it('takes the guest device for what was written when the tool does not say, and a process new since the first sample counts from zero', () => {
    const before = iscsiSamples(0, 0);
    const guest = before[0]!;
    guest.sample.counters = guest.sample.counters.filter((c) => !c.id.startsWith('process:'));
    const a = account({ method: 'iscsi', before, after: iscsiSamples(1, 0), drops: [], elapsedMs: 1 });
    assert.equal(a.benchmarkWriteBytes, 1024 * MIB);
    assert.equal(a.layers.find((l) => l.layer === 'guest initiator')!.writeChars, 1030 * MIB);
    assert.equal(a.heldBy, '', 'nothing dirty: no holder named');
  });

  it('knows bonnie++ writes its file twice with -f (block write, rewrite) and three times with per-char tests', () => {
    assert.equal(bonnieWriteBytes({ bonnie: { fileSizeBytes: 512 * MIB, directIo: true } }), 1024 * MIB);
    assert.equal(bonnieWriteBytes({ bonnie: { fileSizeBytes: 512 * MIB } }), 1536 * MIB);
    assert.equal(bonnieWriteBytes({}), undefined);
  });

  it('tables the accounting per method in paper order, with the spread of what reached the disk', () => {
    const run = (method: string, rep: number, scale: number): MeasurementRecord => ({
      runId: 'r',
      method,
      benchmark: 'bonnie',
      repetition: rep,
      guest: 'guest0',
      error: '',
      result: {},
      accounting: account({ method, before: iscsiSamples(0, 0), after: iscsiSamples(scale, 0), drops: [], elapsedMs: 1, benchmarkWriteBytes: 1024 * MIB }),
    });
    const measurements = [run('iscsi', 1, 1), run('iscsi', 2, 1.1), run('phy-local', 1, 1), { ...run('file-local', 1, 1), error: 'failed', accounting: undefined }];
    const rows = accountingRows(measurements);
    assert.deepEqual(rows.map((r) => r.method), ['phy-local', 'iscsi']);
    const iscsi = rows[1]!;
    assert.equal(iscsi.repetitions, 2);
    assert.equal(iscsi.reachedMinPercent, 87.9);
    assert.equal(iscsi.reachedMaxPercent, 96.7);
    const text = accountingText(measurements).join('\n');
    assert.match(text, /iscsi\s+bonnie\s+1024\s+945\s+88-97%/);
    assert.match(text, /guest device 1075 > guest initiator 1082 > guest link 1092 > storage daemon 1075 > backing disk 945/);
    const html = accountingHtml(measurements);
    assert.match(html, /<h2>Where the bytes went<\/h2>/);
    assert.match(html, /data-method="iscsi" data-benchmark="bonnie" data-reached="87.9"/);
    assert.match(html, /class="num warn">88-97%/);
    assert.equal(accountingHtml([]), '');
  });

  it('says a run whose few KiB never left a cache stayed in cache, rather than a percentage of noise', () => {
    const tiny: MeasurementRecord = {
      runId: 'r',
      method: 'iscsi',
      benchmark: 'postmark',
      repetition: 1,
      guest: 'guest0',
      error: '',
      result: {},
      accounting: account({ method: 'iscsi', before: iscsiSamples(0, 0), after: iscsiSamples(1 / 2048, 0), drops: [], elapsedMs: 1, benchmarkWriteBytes: 4096 }),
    };
    assert.match(accountingText([tiny]).join('\n'), /iscsi\s+postmark\s+0\.0\s+0\.4\s+stayed in cache/);
    assert.match(accountingHtml([tiny]), /class="num warn">stayed in cache</);
  });
});
