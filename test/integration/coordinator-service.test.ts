import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { makeClient, unary } from '../../common/clients.js';
import { VcstorError } from '../../common/errors.js';
import type { CoordinatorClient } from '../../common/generated/vcstor/v1/Coordinator.js';
import type { RunEvent__Output } from '../../common/generated/vcstor/v1/RunEvent.js';
import { makeHandlers } from '../../common/handlers.js';
import { loadVcstorProto, SERVICE_NAMES } from '../../common/proto.js';
import { startGrpcServer, type RunningServer } from '../../common/server.js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { coordinatorOperations } from '../../coordinator/service.js';

describe('the Coordinator gRPC service', () => {
  let dir: string;
  let server: RunningServer;
  let client: CoordinatorClient;
  let planText: string;
  const T = { timeoutMs: 30_000 };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-coordinator-'));
    await writeFile(path.join(dir, 'chap'), 'secretpass12');
    // Agents on ports nothing listens on: the run fails fast, before provisioning.
    planText = JSON.stringify({
      name: 'svc',
      agents: {
        storage: { address: '127.0.0.1:9', host: '127.0.0.1' },
        dom0: { address: '127.0.0.1:9', initiatorIqn: 'iqn.2026-11.org.vcstor:d', imageDir: '/var/lib/i', mountDir: '/var/lib/m' },
        guest: { address: '127.0.0.1:9', initiatorIqn: 'iqn.2026-11.org.vcstor:g', mountDir: '/var/lib/g', domain: 'guest0' },
      },
      tls: { insecure: true },
      nfsClients: '127.0.0.0/8',
      chap: { username: 'vcstor', passwordFile: path.join(dir, 'chap') },
      campaign: { methods: ['iscsi'], repetitions: 1, volumeSize: '128MiB', benchmarks: { bonnie: { fileSize: '64MiB' } } },
    });
    const log = pino({ level: 'silent' });
    const coordinator = new Coordinator({ runsDir: path.join(dir, 'runs'), log });
    const definition = loadVcstorProto().grpcObject.vcstor.v1.Coordinator.service;
    server = await startGrpcServer({
      listen: '127.0.0.1:0',
      tls: { insecure: true },
      services: [{ name: SERVICE_NAMES.coordinator, definition, implementation: makeHandlers(definition, coordinatorOperations(coordinator, Date.now()), { log, maxCallMs: 60_000 }) }],
      log,
    });
    client = makeClient('coordinator', server.address, grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await server.shutdown(100);
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a bad plan, naming the field; a dry run starts nothing', async () => {
    await assert.rejects(unary(client, client.SubmitPlan, { plan: planText.replace('"iscsi"]', '"ftp"]') }, T), (err: unknown) => {
      assert.ok(err instanceof VcstorError);
      assert.equal(err.code, 'INVALID_ARGUMENT');
      assert.match(err.message, /campaign\.methods\.0/);
      return true;
    });
    const dry = await unary(client, client.SubmitPlan, { plan: planText, dryRun: true }, T);
    assert.equal(dry.created, false);
    assert.deepEqual((await unary(client, client.ListRuns, {}, T)).runs, []);
    await assert.rejects(unary(client, client.GetRun, { runId: 'r-none' }, T), /NOT_FOUND|no run r-none/);
    await assert.rejects(unary(client, client.GetRun, { runId: '../etc' }, T), /run_id: /);
  });

  it('runs a plan, streams its events to the last, keeps it; a repeated request id returns the same run', async () => {
    const first = await unary(client, client.SubmitPlan, { plan: planText, requestId: 'job-1' }, T);
    assert.equal(first.created, true);
    const again = await unary(client, client.SubmitPlan, { plan: planText, requestId: 'job-1' }, T);
    assert.equal(again.created, false);
    assert.equal(again.run!.runId, first.run!.runId);
    const events = await new Promise<RunEvent__Output[]>((resolve, reject) => {
      const out: RunEvent__Output[] = [];
      const call = client.WatchRun({ runId: first.run!.runId }, { deadline: Date.now() + 60_000 });
      call.on('data', (e: RunEvent__Output) => out.push(e));
      call.on('error', reject);
      call.on('end', () => resolve(out));
    });
    const last = events.at(-1)!;
    assert.equal(last.runState, 'RUN_STATE_FAILED');
    assert.match(last.message, /the storage agent at 127\.0\.0\.1:9 does not answer/);
    assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1));
    const { run, measurements } = await unary(client, client.GetResults, { runId: first.run!.runId }, T);
    assert.equal(run!.state, 'RUN_STATE_FAILED');
    assert.deepEqual(measurements, [], 'nothing ran');
    assert.equal((await unary(client, client.ListRuns, {}, T)).runs.length, 1);
    const cleanup = await unary(client, client.CleanupRun, { runId: first.run!.runId }, T);
    assert.deepEqual([cleanup.removed, cleanup.leftBehind], [[], []], 'nothing was provisioned');
  });
});
