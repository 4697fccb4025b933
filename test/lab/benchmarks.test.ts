import type * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { RunBenchmarkRequest } from '../../common/generated/vcstor/v1/RunBenchmarkRequest.js';
import type { RunBenchmarkResponse__Output } from '../../common/generated/vcstor/v1/RunBenchmarkResponse.js';
import type { BenchmarkResult__Output } from '../../common/generated/vcstor/v1/BenchmarkResult.js';
import type { Progress__Output } from '../../common/generated/vcstor/v1/Progress.js';
import { provisionMethod, type MethodTarget, type ProvisionedMethod } from '../../coordinator/methods.js';
import { eventually, needsRoot, runner, TEST_LAB, testLab } from '../support/lab.js';
import { labMethodTarget } from '../support/methods.js';

const MIB = 1024 * 1024;

interface Run {
  progress: Array<Progress__Output & { at: number }>;
  result?: BenchmarkResult__Output;
  error?: grpc.ServiceError;
}

describe('benchmarks in a lab guest, on a filesystem over iSCSI', { skip: needsRoot }, () => {
  const lab = testLab();
  let target: MethodTarget;
  let disk: ProvisionedMethod;

  before(async () => {
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
    const record = await lab.up(TEST_LAB);
    target = labMethodTarget(record, TEST_LAB, { sizeBytes: 384 * MIB, sparse: true, prefix: 'b' });
    disk = await provisionMethod('iscsi', target);
  });
  after(async () => {
    await disk?.teardown().catch(() => undefined);
    for (const c of [target?.storage, target?.dom0, target?.guest]) c?.close();
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
  });

  /** Run a benchmark to its end, recording each progress message's arrival. */
  function run(request: RunBenchmarkRequest, cancelAfterFirstProgress = false): Promise<Run> {
    return new Promise((resolve) => {
      const out: Run = { progress: [] };
      const call = target.guest.RunBenchmark({ directory: disk.guestMountpoint, ...request }, { deadline: Date.now() + 300_000 });
      call.on('data', (m: RunBenchmarkResponse__Output) => {
        if (m.progress) {
          out.progress.push({ ...m.progress, at: Date.now() });
          if (cancelAfterFirstProgress && out.progress.length === 2) call.cancel();
        }
        if (m.result) out.result = m.result;
      });
      call.on('error', (err: grpc.ServiceError) => resolve({ ...out, error: err }));
      call.on('end', () => resolve(out));
    });
  }

  const noLeftovers = async () => {
    assert.deepEqual((await readdir(disk.guestMountpoint)).filter((f) => f.startsWith('.vcstor-bench')), [], 'no benchmark files left');
    for (const tool of ['bonnie++', 'postmark', 'fio --name=vcstor']) {
      const found = await runner.run('pgrep', ['-f', tool], { okExitCodes: [0, 1] });
      assert.equal(found.stdout.trim(), '', `no ${tool} process left`);
    }
  };

  it('bonnie++: every figure parsed, block throughput consistent with file size and time', async () => {
    // O_DIRECT, so the page cache of this 24 GiB machine does not make every figure "+++++".
    const { result, error, progress } = await run({ bonnie: { fileSizeBytes: 128 * MIB, directIo: true } });
    assert.equal(error, undefined, error?.details);
    const b = result!.bonnie!;
    assert.equal(b.fileSizeBytes, 128 * MIB);
    assert.equal(b.chunkSizeBytes, 8192);
    assert.equal(b.writePerChar!.measured, false, 'direct I/O skips the per-char tests');
    const figures = { writeBlock: b.writeBlock!, rewrite: b.rewrite!, readBlock: b.readBlock!, randomSeeks: b.randomSeeks! };
    assert.ok(b.writeBlock!.measured, 'block write measured');
    // Moving the file at each reported rate cannot take longer than the whole run.
    for (const [name, figure] of Object.entries(figures)) {
      if (!figure.measured) continue;
      assert.ok(figure.perSecond > 0 && figure.cpuPercent >= 0, name);
      if (name === 'randomSeeks') continue; // seeks/s, not KB/s
      const seconds = b.fileSizeBytes / 1024 / figure.perSecond;
      assert.ok(seconds <= result!.elapsedMs / 1000, `${name}: ${seconds.toFixed(2)} s at ${figure.perSecond} KB/s within ${result!.elapsedMs} ms`);
    }
    assert.ok(b.writeBlock!.latencyUs > 0);
    assert.match(b.rawCsv, /^1\.98,/);
    assert.ok(progress.length >= 1);
    await noLeftovers();
  });

  it('postmark: the paper\'s parameters at a small size', async () => {
    const { result, error } = await run({ postmark: { transactions: 3000, files: 200, subdirectories: 10 } });
    assert.equal(error, undefined, error?.details);
    const p = result!.postmark!;
    assert.ok(p.transactionsPerSecond > 0);
    assert.ok(p.totalSeconds <= result!.elapsedMs / 1000 + 1, 'postmark\'s time fits in the run');
    assert.ok(p.filesCreatedPerSecond > 0 && p.bytesWrittenPerSecond > 0);
    await noLeftovers();
  });

  it('fio: bandwidth, IOPS and percentiles agree with each other; verify passes', async () => {
    const { result, error } = await run({ fio: { rw: 'randwrite', blockSizeBytes: 8192, sizeBytes: 32 * MIB, iodepth: 1, verify: true } });
    assert.equal(error, undefined, error?.details);
    const w = result!.fio!.write!;
    assert.equal(w.ioBytes, 32 * MIB);
    assert.ok(w.iops > 0 && w.bandwidthBytesPerSecond > 0);
    // fio's runtime includes the verify pass (reads): writing took at most that long.
    const impliedMs = (w.ioBytes / w.bandwidthBytesPerSecond) * 1000;
    assert.ok(impliedMs > 0 && impliedMs <= result!.fio!.runtimeMs * 1.05, `bytes/bandwidth ${impliedMs.toFixed(0)} ms within runtime ${result!.fio!.runtimeMs} ms`);
    assert.ok(result!.fio!.read!.ioBytes >= 32 * MIB, 'the verify pass read back what was written');
    assert.ok(Math.abs(w.iops - w.bandwidthBytesPerSecond / 8192) / w.iops < 0.05, 'IOPS = bandwidth / block size');
    const p = new Map(w.completionLatency.map((x) => [x.percentile, x.latencyNs]));
    assert.ok(p.get(50)! > 0 && p.get(50)! <= p.get(99)!, 'p50 <= p99');
    await noLeftovers();
  });

  it('sparse-image test: every pass reported, the image only grows', async () => {
    const { result, error, progress } = await run({ sparseImage: { imageSizeBytes: 128 * MIB, fileSizeBytes: 16 * MIB, passes: 3 } });
    assert.equal(error, undefined, error?.details);
    const passes = result!.sparseImage!.passes;
    assert.deepEqual(passes.map((p) => p.pass), [1, 2, 3]);
    assert.ok(passes.every((p) => p.writeBytesPerSecond > 0));
    assert.ok(passes[0]!.imageAllocatedBytes >= 16 * MIB, 'the first pass allocated at least the file');
    assert.ok(passes.every((p, i) => i === 0 || p.imageAllocatedBytes >= passes[i - 1]!.imageAllocatedBytes), 'a sparse image does not shrink when files are deleted');
    assert.ok(progress.some((p) => /pass 3/.test(p.message)));
    await noLeftovers();
  });

  it('progress arrives at least once a second, then one result', async () => {
    const { result, progress, error } = await run({ fio: { rw: 'randread', sizeBytes: 16 * MIB, runtimeS: 3 } });
    assert.equal(error, undefined, error?.details);
    assert.ok(result?.fio);
    assert.ok(progress.length >= 3, `${progress.length} progress messages in a 3 s run`);
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i]!.at - progress[i - 1]!.at < 1600, 'no gap over a second (and some slack)');
    assert.ok(progress.every((p, i) => i === 0 || p.elapsedMs >= progress[i - 1]!.elapsedMs));
    assert.ok(progress.at(-1)!.percent > 30, 'time-based runs estimate their percent');
  });

  it('a cancelled benchmark leaves no process and no file', async () => {
    const { result, error } = await run({ fio: { rw: 'randwrite', sizeBytes: 64 * MIB, runtimeS: 60 } }, true);
    assert.equal(result, undefined);
    assert.ok(error, 'the call ended with a status');
    await eventually('the benchmark to be cleaned', async () => {
      try {
        await noLeftovers();
        return true;
      } catch {
        return false;
      }
    }, 10_000);
  });

  it('refuses before starting: a directory not on a managed mount, or a size that does not fit', async () => {
    const outside = await new Promise<grpc.ServiceError | undefined>((resolve) => {
      const call = target.guest.RunBenchmark({ directory: target.guestMountDir, fio: { rw: 'write', sizeBytes: MIB } }, { deadline: Date.now() + 10_000 });
      call.on('data', () => undefined);
      call.on('error', resolve);
      call.on('end', () => resolve(undefined));
    });
    assert.match(outside?.details ?? '', /not on a filesystem this agent mounted/);
    const tooBig = await run({ bonnie: { fileSizeBytes: 4096 * MIB } });
    assert.match(tooBig.error?.details ?? '', /needs about .* bytes and .* free/);
    assert.equal(tooBig.progress.length, 0, 'nothing started');
  });
});
