import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunningAgent } from '../../common/agent.js';
import { makeClient, unary, type StorageClient, type Dom0Client, type GuestClient } from '../../common/clients.js';
import { stateDirOf } from '../../common/config.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';
import { capturingLogger, startTestAgent } from '../support/agents.js';

/**
 * CHAP secrets go where they must (tgtadm's and iscsiadm's argv, the storage agent's
 * 0600 record) and nowhere else: not in any log line at debug level, not in an error
 * message (also when a tool echoes its arguments), not in a response, not in any other
 * file the agents write. The secrets are distinctive so a grep cannot miss them.
 */

const SECRETS = {
  export: 'Qx7.export~Sec1',
  mutual: 'Mu7.mutual~Sec2',
  failing: 'Fx7.failing~Sec3',
  login: 'Lg7.login~Sec04',
  loginMutual: 'Lm7.mutual~Sec5',
};
const ALL = Object.values(SECRETS);
const T = { timeoutMs: 5000 };

/** Every file under `dir` with its mode and text. */
async function filesUnder(dir: string): Promise<Array<{ file: string; mode: number; text: string }>> {
  const out: Array<{ file: string; mode: number; text: string }> = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    out.push({ file, mode: (await stat(file)).mode & 0o777, text: await readFile(file, 'utf8') });
  }
  return out;
}

describe('CHAP secrets: only where they must be', () => {
  const storageLog = capturingLogger();
  const hostLog = capturingLogger();
  const recorder = new RecordingCommandRunner();
  const agents: RunningAgent[] = [];
  let storage: StorageClient;
  let dom0: Dom0Client;
  let guest: GuestClient;
  const seen: string[] = [];

  before(async () => {
    // tgtd that accepts everything, except an account whose password is SECRETS.failing:
    // then it fails, echoing its command line (tools do: targetcli prints passwords).
    recorder
      .on('losetup', [], { stdout: '{"loopdevices":[]}' })
      .when((cmd, args) => cmd === 'tgtadm' && args.includes(SECRETS.failing), (_cmd, args) => ({ exitCode: 22, stderr: `tgtadm: cannot add ${args.join(' ')}` }))
      .on('tgtadm', [], { stdout: '' })
      // iscsiadm: every step works until the login, which fails echoing its arguments.
      .when((cmd, args) => cmd === 'iscsiadm' && args.includes('--login'), (_cmd, args) => ({ exitCode: 24, stderr: `iscsiadm: login failed to authenticate with target: ${args.join(' ')}` }))
      .when((cmd, args) => cmd === 'iscsiadm' && args.includes('session'), { exitCode: 21, stderr: 'iscsiadm: No active sessions.' })
      .on('iscsiadm', [], { stdout: '' });
    const storageAgent = await startTestAgent('storage', { logLevel: 'debug' }, storageLog.log, recorder);
    const dom0Agent = await startTestAgent('dom0', { logLevel: 'debug', dom0: { iscsiInitiator: { driver: 'open-iscsi' } } }, hostLog.log, recorder);
    const guestAgent = await startTestAgent('guest', { logLevel: 'debug', guest: { iscsiInitiator: { driver: 'open-iscsi' } } }, hostLog.log, recorder);
    agents.push(storageAgent, dom0Agent, guestAgent);
    const credentials = grpc.credentials.createInsecure();
    storage = makeClient('storage', storageAgent.server.address, credentials);
    dom0 = makeClient('dom0', dom0Agent.server.address, credentials);
    guest = makeClient('guest', guestAgent.server.address, credentials);
  });
  after(async () => {
    for (const c of [storage, dom0, guest]) c?.close();
    await Promise.all(agents.map((a) => a.stop(100)));
  });

  /** Run a call; keep its response or error message for the grep. */
  const keep = async (call: Promise<unknown>): Promise<void> => {
    try {
      seen.push(JSON.stringify(await call));
    } catch (err) {
      seen.push(err instanceof Error ? err.message : String(err));
    }
  };

  it('exports, logins and their failures leave no secret in logs, messages, responses or files', async () => {
    await unary(storage, storage.CreateVolume, { name: 'v1', sizeBytes: 1 << 20, provisioning: 'PROVISIONING_SPARSE' }, T);
    await unary(storage, storage.CreateVolume, { name: 'v2', sizeBytes: 1 << 20, provisioning: 'PROVISIONING_SPARSE' }, T);
    const acl = { allowedInitiators: ['iqn.2026-11.org.vcstor:host0'] };
    await keep(unary(storage, storage.ExportIscsi, { volume: 'v1', ...acl, chap: { username: 'alice', password: SECRETS.export, mutualUsername: 'target1', mutualPassword: SECRETS.mutual } }, T));
    await keep(unary(storage, storage.ExportIscsi, { volume: 'v2', ...acl, chap: { username: 'bob', password: SECRETS.failing } }, T));
    await keep(unary(storage, storage.ListIscsiTargets, {}, T));
    await keep(unary(storage, storage.GetVolume, { name: 'v1' }, T));
    // Bad requests carrying secrets: the validation message names the field, not the value.
    await keep(unary(storage, storage.ExportIscsi, { volume: 'v1', ...acl, chap: { username: 'a b', password: SECRETS.export } }, T));
    await keep(unary(storage, storage.ExportIscsi, { volume: 'v1', ...acl, chap: { username: 'alice', password: `${SECRETS.export}; x` } }, T));
    for (const client of [dom0, guest] as const) {
      await keep(
        unary(client, client.IscsiLogin, {
          target: { portal: '127.0.0.1:3260', iqn: 'iqn.2026-11.org.vcstor:v1', lun: 1 },
          initiatorIqn: 'iqn.2026-11.org.vcstor:host0',
          chap: { username: 'alice', password: SECRETS.login, mutualUsername: 'target1', mutualPassword: SECRETS.loginMutual },
        }, T),
      );
      await keep(unary(client, client.ListIscsiSessions, {}, T));
    }

    // The calls got where the secrets are needed, so the grep below means something.
    const argv = recorder.calls.flatMap((c) => c.args);
    for (const secret of [SECRETS.export, SECRETS.mutual, SECRETS.failing, SECRETS.login, SECRETS.loginMutual]) {
      assert.ok(argv.includes(secret), `${secret} reached a tool's argv`);
    }
    assert.ok(seen.some((m) => /exited with 22/.test(m)), `the failing export failed in tgtadm: ${seen.join('\n')}`);
    assert.ok(seen.some((m) => /exited with 24|authenticate/.test(m)), `the logins failed in iscsiadm: ${seen.join('\n')}`);
    // The tools echoed the secrets; what reached the caller shows where they were masked.
    assert.ok(seen.some((m) => /exited with 22: .*\*\*\*/.test(m)), `tgtadm's echo was masked: ${seen.join('\n')}`);

    const places: Array<[string, string]> = [
      ['storage log', storageLog.lines.join('')],
      ['dom0/guest log', hostLog.lines.join('')],
      ['responses and error messages', seen.join('\n')],
      ['recorded command lines (as logged)', recorder.lines.join('\n')],
    ];
    assert.ok(storageLog.lines.length > 5 && hostLog.lines.length > 5, 'the agents logged at debug level');
    for (const [where, text] of places) {
      for (const secret of ALL) assert.ok(!text.includes(secret), `${secret} appears in the ${where}`);
    }

    // Files: the storage record holds the secrets it must re-apply, 0600; nothing else does.
    let recordHoldsThem = false;
    for (const agent of agents) {
      const dir = path.dirname(stateDirOf(agent.runtime.config));
      for (const { file, mode, text } of await filesUnder(dir)) {
        const held = ALL.filter((s) => text.includes(s));
        if (path.basename(file) === 'storage-record.json') {
          assert.equal(mode, 0o600, `${file} is 0600`);
          recordHoldsThem ||= held.includes(SECRETS.export) && held.includes(SECRETS.mutual);
          assert.ok(!held.includes(SECRETS.failing), 'a failed export is not kept in the record');
        } else {
          assert.deepEqual(held, [], `${file} holds no secret`);
        }
      }
    }
    assert.ok(recordHoldsThem, 'the storage record keeps the exported secrets (to re-apply them after a restart)');
  });
});
