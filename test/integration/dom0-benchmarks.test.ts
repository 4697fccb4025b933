import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { mkdir, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunningAgent } from '../../common/agent.js';
import { makeClient, type Dom0Client } from '../../common/clients.js';
import type { RunBenchmarkRequest } from '../../common/generated/vcstor/v1/RunBenchmarkRequest.js';
import type { RunBenchmarkResponse__Output } from '../../common/generated/vcstor/v1/RunBenchmarkResponse.js';
import { startTestAgent } from '../support/agents.js';

const insecure = grpc.credentials.createInsecure();

/** Run a benchmark on dom0 to its end: its messages, or the status it failed with. */
function runOnDom0(client: Dom0Client, request: RunBenchmarkRequest): Promise<{ messages: RunBenchmarkResponse__Output[]; error?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    const messages: RunBenchmarkResponse__Output[] = [];
    const call = client.RunBenchmark(request, { deadline: Date.now() + 120_000 });
    call.on('data', (m: RunBenchmarkResponse__Output) => messages.push(m));
    call.on('error', (error: grpc.ServiceError) => resolve({ messages, error }));
    call.on('end', () => resolve({ messages }));
  });
}

describe("dom0's baselines (Fig. 3, 5): dom0 runs the guest's benchmarks on its own local disk", () => {
  let dom0: RunningAgent;
  let client: Dom0Client;
  let imageRoot: string;
  before(async () => {
    dom0 = await startTestAgent('dom0');
    client = makeClient('dom0', dom0.server.address, insecure);
    imageRoot = dom0.runtime.config.role === 'dom0' ? dom0.runtime.config.dom0.imageRoots[0]! : '';
    // The agent made its image roots: the local-disk baseline needs no image first.
    assert.ok((await stat(imageRoot)).isDirectory());
  });
  after(async () => {
    client.close();
    await dom0.stop(100);
  });

  it('runs PostMark in a directory under an image root and leaves nothing behind, there or in its working directory', async () => {
    const cwdBefore = (await readdir(process.cwd())).sort();
    const { messages, error } = await runOnDom0(client, { directory: imageRoot, label: 'dom0-local', postmark: { transactions: 2000, files: 100, subdirectories: 4 } });
    assert.equal(error, undefined, error?.details);
    const result = messages.find((m) => m.result)?.result;
    assert.ok(result?.postmark, 'one result, a PostMark one');
    assert.equal(result.label, 'dom0-local');
    assert.ok(result.postmark.wallMs > 0 && result.postmark.transactionsPerWallSecond > 0, `timed by the agent: ${JSON.stringify(result.postmark)}`);
    assert.ok(
      Math.abs(result.postmark.transactionsPerWallSecond - (2000 * 1000) / result.postmark.wallMs) / result.postmark.transactionsPerWallSecond < 0.01,
      'the rate is transactions over the agent\'s own clock',
    );
    assert.deepEqual(await readdir(imageRoot), [], 'the private directory is gone');
    assert.deepEqual((await readdir(process.cwd())).sort(), cwdBefore, "nothing appeared in the agent's working directory");
  });

  it("runs fio with verify and reads back every byte it wrote; fio's state file stays in the private directory", async () => {
    const cwdBefore = (await readdir(process.cwd())).sort();
    const sub = path.join(imageRoot, 'baseline');
    await mkdir(sub, { recursive: true });
    const size = 8 * 1024 * 1024;
    const { messages, error } = await runOnDom0(client, { directory: sub, fio: { rw: 'randwrite', sizeBytes: size, blockSizeBytes: 8192, verify: true } });
    assert.equal(error, undefined, error?.details);
    const fio = messages.find((m) => m.result)?.result?.fio;
    assert.ok(fio, 'a fio result');
    assert.equal(fio.write?.ioBytes, size, 'wrote the whole file');
    assert.equal(fio.read?.ioBytes, size, 'and verified all of it');
    assert.deepEqual(await readdir(sub), []);
    assert.deepEqual((await readdir(process.cwd())).sort(), cwdBefore);
  });

  it('refuses directories that are neither under an image root nor on a filesystem it mounted', async () => {
    const outside = await runOnDom0(client, { directory: '/tmp', postmark: {} });
    assert.equal(outside.error?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(outside.error?.details ?? '', /directory: "\/tmp" is outside the agent's configured directories/);
    // Under the mount root but not on a mount: the mount root's own filesystem is not dom0's to fill.
    const mountRoot = dom0.runtime.config.role === 'dom0' ? dom0.runtime.config.dom0.mountRoot : '';
    await mkdir(mountRoot, { recursive: true });
    const unmounted = await runOnDom0(client, { directory: mountRoot, postmark: {} });
    assert.equal(unmounted.error?.code, grpc.status.FAILED_PRECONDITION);
    assert.match(unmounted.error?.details ?? '', /is not on a filesystem this agent mounted .* or a directory under /);
    const missing = await runOnDom0(client, { directory: path.join(imageRoot, 'missing'), postmark: {} });
    assert.equal(missing.error?.code, grpc.status.NOT_FOUND);
  });
});
