import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { startAgent, type RunningAgent } from '../../common/agent.js';
import { makeClient, unary, type StorageClient } from '../../common/clients.js';
import { storageConfigSchema } from '../../common/config.js';
import { VcstorError } from '../../common/errors.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';
import { storageAgent } from '../../agent-storage/service.js';

describe('agent-storage edge: bad input is refused before any command runs', () => {
  let dir: string;
  let agent: RunningAgent;
  let client: StorageClient;
  const recorder = new RecordingCommandRunner();
  const T = { timeoutMs: 5000 };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-edge-'));
    await writeFile(path.join(dir, 'ganesha.conf'), '# base\n');
    const config = storageConfigSchema.parse({
      role: 'storage',
      name: 'edge',
      listen: '127.0.0.1:0',
      tls: { insecure: true },
      stateDir: path.join(dir, 'state'),
      storage: {
        volumes: { driver: 'filepool', poolDir: path.join(dir, 'pool') },
        nfsServer: { driver: 'ganesha', exportRoot: path.join(dir, 'exports'), ganeshaConfig: path.join(dir, 'ganesha.conf'), ganeshaPidFile: path.join(dir, 'none.pid') },
        reconcileIntervalMs: 3_600_000,
      },
    });
    agent = await startAgent(config, storageAgent, { runner: recorder, log: pino({ level: 'silent' }) });
    client = makeClient('storage', agent.server.address, grpc.credentials.createInsecure());
    recorder.calls.length = 0; // what start-up ran (tgtadm show) is not under test
  });
  after(async () => {
    client.close();
    await agent.stop(100);
    await rm(dir, { recursive: true, force: true });
  });

  const refused = async (what: string, call: Promise<unknown>, code: string, pattern: RegExp) => {
    await assert.rejects(call, (err: unknown) => {
      assert.ok(err instanceof VcstorError, `${what}: ${String(err)}`);
      assert.equal(err.code, code, `${what}: ${err.message}`);
      assert.match(err.message, pattern, what);
      return true;
    });
    assert.deepEqual(recorder.lines, [], `${what} ran no command`);
  };

  it('CreateVolume, DeleteVolume, GetVolume', async () => {
    const create = (name: string, sizeBytes: number, pool = '') => unary(client, client.CreateVolume, { name, sizeBytes, pool }, T);
    for (const name of ['v;reboot', '$(id)', '../../etc/passwd', '/etc/passwd', 'a b', 'V0', '']) {
      await refused(`name ${name}`, create(name, 1 << 30), 'INVALID_ARGUMENT', /^.*name: /);
    }
    await refused('zero size', create('v0', 0), 'INVALID_ARGUMENT', /size_bytes: 0 bytes is too small/);
    await refused('negative size', create('v0', -4096), 'INVALID_ARGUMENT', /too small/);
    await refused('tiny size', create('v0', 512), 'INVALID_ARGUMENT', /too small/);
    await refused('impossible size', create('v0', 2 ** 53), 'INVALID_ARGUMENT', /too large/);
    await refused('over capacity', create('v0', 32 * 2 ** 40), 'INVALID_ARGUMENT', /more than pool default holds/);
    await refused('bad pool', create('v0', 1 << 30, 'p;x'), 'INVALID_ARGUMENT', /pool: /);
    await refused('unknown pool', create('v0', 1 << 30, 'other'), 'NOT_FOUND', /no pool other/);
    await refused('delete bad name', unary(client, client.DeleteVolume, { name: 'x|y' }, T), 'INVALID_ARGUMENT', /name: /);
    await refused('get unknown', unary(client, client.GetVolume, { name: 'ghost' }, T), 'NOT_FOUND', /no volume ghost/);
  });

  it('ExportIscsi and UnexportIscsi', async () => {
    const chap = { username: 'alice', password: 'secretpass12' };
    const ok = { volume: 'v0', allowedInitiators: ['iqn.2026-11.org.vcstor:init0'], chap };
    const exportIscsi = (request: Record<string, unknown>) => unary(client, client.ExportIscsi, { ...ok, ...request }, T);
    await refused('volume name', exportIscsi({ volume: 'v0;rm' }), 'INVALID_ARGUMENT', /volume: /);
    await refused('target iqn', exportIscsi({ targetIqn: 'iqn.2026-11.org.vcstor:v0 ; reboot' }), 'INVALID_ARGUMENT', /target_iqn: /);
    await refused('initiator iqn', exportIscsi({ allowedInitiators: ['iqn.2026-11.org.vcstor:a', '`id`'] }), 'INVALID_ARGUMENT', /allowed_initiators\[1\]: /);
    await refused('address', exportIscsi({ allowedAddresses: ['198.51.100.7;x'] }), 'INVALID_ARGUMENT', /allowed_addresses\[0\]: /);
    await refused('no acl', exportIscsi({ allowedInitiators: [] }), 'INVALID_ARGUMENT', /allow_any_initiator/);
    await refused('burst out of range', exportIscsi({ sessionParams: { maxBurstLength: 16_777_216 } }), 'INVALID_ARGUMENT', /session_params\.max_burst_length: 16777216 /);
    await refused('first burst above max', exportIscsi({ sessionParams: { firstBurstLength: 131_072, maxBurstLength: 65_536 } }), 'INVALID_ARGUMENT', /session_params\.first_burst_length: /);
    await refused('no R2T', exportIscsi({ sessionParams: { maxOutstandingR2t: 70_000 } }), 'INVALID_ARGUMENT', /session_params\.max_outstanding_r2t: /);
    await refused('chap user', exportIscsi({ chap: { username: 'al ice', password: 'secretpass12' } }), 'INVALID_ARGUMENT', /chap.username: /);
    await refused('chap secret', exportIscsi({ chap: { username: 'alice', password: "pass'; reboot" } }), 'INVALID_ARGUMENT', /chap.password: /);
    await refused('mutual secret equal', exportIscsi({ chap: { ...chap, mutualUsername: 'tgt', mutualPassword: 'secretpass12' } }), 'INVALID_ARGUMENT', /mutual_password: must differ/);
    await refused('no chap', exportIscsi({ chap: null }), 'INVALID_ARGUMENT', /requires CHAP/);
    await refused('lun', exportIscsi({ lun: 70_000 }), 'INVALID_ARGUMENT', /lun: /);
    await refused('unknown volume', exportIscsi({}), 'NOT_FOUND', /no volume v0/);
    await refused('unexport bad iqn', unary(client, client.UnexportIscsi, { targetIqn: 'iqn.x' }, T), 'INVALID_ARGUMENT', /target_iqn: /);
    await refused('unexport nothing', unary(client, client.UnexportIscsi, {}, T), 'INVALID_ARGUMENT', /give target_iqn or volume/);
  });

  it('ExportNfs and UnexportNfs', async () => {
    const exportsDir = path.join(dir, 'exports');
    const clients = [{ match: '198.51.100.0/24' }];
    const exportNfs = (request: Record<string, unknown>) => unary(client, client.ExportNfs, { clients, ...request }, T);
    await refused('outside root', exportNfs({ directory: '/etc' }), 'INVALID_ARGUMENT', /directory: "\/etc" is outside/);
    await refused('dot-dot', exportNfs({ directory: `${exportsDir}/../../etc` }), 'INVALID_ARGUMENT', /'\.' or '\.\.' segments/);
    await refused('relative', exportNfs({ directory: 'exports/a' }), 'INVALID_ARGUMENT', /not an absolute path/);
    await refused('no source', exportNfs({}), 'INVALID_ARGUMENT', /give a volume or a directory/);
    await refused('no clients', exportNfs({ directory: `${exportsDir}/a`, clients: [] }), 'INVALID_ARGUMENT', /at least one client/);
    await refused('bad client', exportNfs({ directory: `${exportsDir}/a`, clients: [{ match: '1.2.3.4); rm -rf /' }] }), 'INVALID_ARGUMENT', /clients\[0\].match: /);
    await refused('bad fs', exportNfs({ volume: 'v0', makeFilesystem: 'zfs' }), 'INVALID_ARGUMENT', /make_filesystem: "zfs" is not supported/);
    await refused('bad pseudo', exportNfs({ directory: `${exportsDir}/a`, pseudoPath: 'x' }), 'INVALID_ARGUMENT', /pseudo_path: /);
    await refused('unknown volume', exportNfs({ volume: 'v0' }), 'NOT_FOUND', /no volume v0/);
    await refused('unexport outside', unary(client, client.UnexportNfs, { exportPath: '/srv/other' }, T), 'INVALID_ARGUMENT', /export_path: /);
  });

  it('idempotent no-ops need no command either', async () => {
    assert.equal((await unary(client, client.DeleteVolume, { name: 'ghost' }, T)).deleted, false);
    assert.equal((await unary(client, client.UnexportIscsi, { volume: 'ghost' }, T)).removed, false);
    assert.equal((await unary(client, client.UnexportNfs, { volume: 'ghost' }, T)).removed, false);
    assert.deepEqual(recorder.lines, []);
  });
});
