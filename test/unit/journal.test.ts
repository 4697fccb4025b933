import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import { UndoJournal } from '../../coordinator/journal.js';
import type { UndoStep } from '../../coordinator/methods.js';
import { RunStore } from '../../coordinator/store.js';

/** A client double: each unary call is recorded, and fails for the rpcs in `failing`. */
function recordingClient(calls: string[], failing: ReadonlySet<string> = new Set()): grpc.Client {
  const handler = (rpc: string) => (request: unknown, _metadata: unknown, _options: unknown, callback: (err: unknown, response?: unknown) => void) => {
    calls.push(`${rpc} ${JSON.stringify(request)}`);
    setImmediate(() => (failing.has(rpc) ? callback(Object.assign(new Error('refused'), { code: 9, details: 'refused', metadata: undefined })) : callback(null, {})));
    return { cancel: () => undefined };
  };
  // Calls kept as data go through makeUnaryRequest with the method's path ("/vcstor.v1.StorageAgent/DeleteVolume").
  const makeUnaryRequest = (method: string, _serialize: unknown, _deserialize: unknown, request: unknown, metadata: unknown, options: unknown, callback: (err: unknown, response?: unknown) => void) =>
    handler(method.split('/').pop()!)(request, metadata, options, callback);
  return new Proxy({ getChannel: () => ({ getTarget: () => 'dns:double' }), makeUnaryRequest } as unknown as grpc.Client, {
    get: (target, name) => (name in target ? (target as unknown as Record<string | symbol, unknown>)[name] : handler(String(name))),
  });
}

const volume = (name: string): UndoStep => ({ step: 'delete volume', agent: 'storage', rpc: 'DeleteVolume', request: { name, force: true }, data: true });
const unexport = (name: string): UndoStep => ({ step: 'unexport iscsi', agent: 'storage', rpc: 'UnexportIscsi', request: { volume: name, force: true } });
const loadSet = (setId: string, agentIndex: number): UndoStep => ({ step: 'stop load sessions', agent: 'guest', agentIndex, rpc: 'StopLoadSessions', request: { setId } });

describe('the undo journal every kind of run keeps', () => {
  let dir: string;
  let store: RunStore;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-journal-'));
    store = new RunStore(dir);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('is kept in the store (undo.json) by group, each step once, and a done step leaves it', async () => {
    const journal = await UndoJournal.open(store, 'r-1');
    await Promise.all([journal.add('volume a', volume('a')), journal.add('volume a', unexport('a')), journal.add('volume a', unexport('a')), journal.set('iscsi/rep1', [volume('b')])]);
    assert.deepEqual(await store.undo('r-1'), { 'volume a': [volume('a'), unexport('a')], 'iscsi/rep1': [volume('b')] });
    await journal.done('volume a', unexport('a'));
    await journal.set('iscsi/rep1', []);
    assert.deepEqual(await store.undo('r-1'), { 'volume a': [volume('a')] });
    assert.deepEqual((await UndoJournal.open(store, 'r-1')).pending(), { 'volume a': [volume('a')] }, 'another process reads what this one journaled');
  });

  it('replays groups in phases, each group in reverse, and leaves what failed (and the steps below it)', async () => {
    const journal = await UndoJournal.open(store, 'r-2');
    await journal.add('volume a', volume('a'));
    await journal.add('volume a', unexport('a'));
    await journal.add('load-set s on g (1)', loadSet('s', 1));
    await journal.add('volume b', volume('b'));
    const calls: string[] = [];
    const storage = recordingClient(calls);
    const initiator = recordingClient(calls);
    const report = await journal.replay((step) => (step.agent === 'storage' ? storage : step.agentIndex === 1 ? initiator : undefined), {
      timeoutMs: 1000,
      concurrency: 4,
      phases: (groups) => [groups.filter((g) => g.startsWith('load-set')), groups.filter((g) => !g.startsWith('load-set'))],
    });
    assert.equal(calls[0], 'StopLoadSessions {"setId":"s"}', 'the load set before any volume');
    assert.deepEqual(calls.filter((c) => c.includes('"a"')), ['UnexportIscsi {"volume":"a","force":true}', 'DeleteVolume {"name":"a","force":true}']);
    assert.deepEqual(report.leftBehind, []);
    assert.equal(report.removed.length, 4);
    assert.deepEqual(await store.undo('r-2'), {});

    const failing = await UndoJournal.open(store, 'r-3');
    await failing.set('iscsi/rep1', [volume('c'), unexport('c')]);
    const left = await failing.replay({ storage: recordingClient([], new Set(['UnexportIscsi'])) } as never, { timeoutMs: 1000 });
    assert.equal(left.leftBehind.length, 1);
    assert.match(left.leftBehind[0]!, /^iscsi\/rep1: teardown stopped at unexport iscsi: .*not attempted, to keep the layers below it intact: delete volume/);
    assert.deepEqual(await store.undo('r-3'), { 'iscsi/rep1': [volume('c'), unexport('c')] });
  });
});
