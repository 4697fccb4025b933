import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { VcstorError } from '../../common/errors.js';
import type { ExportIscsiRequest__Output } from '../../common/generated/vcstor/v1/ExportIscsiRequest.js';
import { iscsiSessionParamsFromProto, parseLibiscsiLoginReplies } from '../../common/iscsi-params.js';
import { ExecaCommandRunner } from '../../common/runner.js';
import { FilePoolVolumes } from '../../agent-storage/drivers/filepool.js';
import { GaneshaNfsServer } from '../../agent-storage/drivers/ganesha.js';
import { parseTgtShow, parseTgtTargetParams, TGT_DEFAULT_SESSION_PARAMS, TgtIscsiTarget } from '../../agent-storage/drivers/tgt.js';
import { StorageRecordStore } from '../../agent-storage/state.js';
import { StorageServer } from '../../agent-storage/storage.js';

/**
 * The paper's Table 2 against a real tgtd: an export's session parameters reach the
 * target, and a real libiscsi login negotiates what the target was set to. The login is
 * iscsi-inq (libiscsi, the library qemu's iscsi driver uses; no FUSE or loop device
 * needed), with LIBISCSI_DEBUG=6 so that libiscsi logs the target's Login Response keys:
 * for OR/AND/minimum keys the responder's answer is the negotiated value.
 */

const runner = new ExecaCommandRunner();
const never = new AbortController().signal;
/** A private tgtd: a control port and loopback portal of its own (tgtd refuses -C above 32767). */
const PORT = 20_000 + ((process.pid * 7) % 9_000);
const HOST = `127.0.${(process.pid >> 8) % 250}.${2 + ((process.pid * 3) % 250)}`;
const PORTAL = `${HOST}:3260`;
const PREFIX = 'iqn.2026-11.org.vcstor.params';
const INITIATOR = 'iqn.2026-11.org.vcstor.params:initiator0';

const exists = (file: string) =>
  access(file).then(
    () => true,
    () => false,
  );
const haveTools = (await exists('/usr/sbin/tgtd')) && (await exists('/usr/bin/iscsi-inq'));
const skip = process.getuid?.() !== 0 ? 'tgtd needs root' : !haveTools ? 'tgtd or iscsi-inq is not installed (apt-get install tgt libiscsi-bin)' : false;

const tgtadm = async (...args: string[]) => (await runner.run('tgtadm', ['-C', String(PORT), '--lld', 'iscsi', ...args])).stdout;

const request = (volume: string, sessionParams: ExportIscsiRequest__Output['sessionParams']): ExportIscsiRequest__Output => ({
  volume,
  pool: '',
  targetIqn: '',
  lun: 0,
  allowedInitiators: [INITIATOR],
  allowedAddresses: [],
  allowAnyInitiator: false,
  chap: null,
  sessionParams,
});

/** Log in with libiscsi, read LUN 1's inquiry data, log out; the target's login reply keys. */
async function libiscsiLogin(targetIqn: string): Promise<string> {
  const result = await runner.run('iscsi-inq', ['-i', INITIATOR, `iscsi://${PORTAL}/${targetIqn}/1`], { env: { LIBISCSI_DEBUG: '6' }, timeoutMs: 30_000 });
  return result.stderr;
}

describe('iSCSI session parameters on a real tgtd, negotiated by a real libiscsi login', { skip }, () => {
  let dir: string;
  let tgtd: ChildProcess;
  let storage: StorageServer;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-tgt-params-'));
    await writeFile(path.join(dir, 'ganesha.conf'), '# unused\n');
    tgtd = spawn('tgtd', ['-f', '-C', String(PORT), '--iscsi', `portal=${PORTAL}`], { stdio: 'ignore' });
    for (let i = 0; ; i++) {
      if (await tgtadm('--mode', 'target', '--op', 'show').then(() => true, () => false)) break;
      if (i > 50) throw new Error(`tgtd on control port ${PORT} did not answer`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    storage = new StorageServer({
      volumes: new FilePoolVolumes({ runner, poolDir: path.join(dir, 'pool') }),
      target: new TgtIscsiTarget({ runner, controlPort: PORT, portal: PORTAL, backingStoreType: 'rdwr' }),
      nfs: new GaneshaNfsServer({ configFile: path.join(dir, 'ganesha.conf'), pidFile: path.join(dir, 'none.pid') }),
      record: new StorageRecordStore(path.join(dir, 'state')),
      runner,
      log: pino({ level: 'silent' }),
      iqnPrefix: PREFIX,
      exportRoot: path.join(dir, 'exports'),
    });
  });

  after(async () => {
    // tgtd ignores SIGTERM: delete its targets and itself, then make sure it is gone.
    for (const t of parseTgtShow(await tgtadm('--mode', 'target', '--op', 'show').catch(() => ''))) {
      await tgtadm('--mode', 'target', '--op', 'delete', '--force', '--tid', String(t.tid)).catch(() => undefined);
    }
    await runner.run('tgtadm', ['-C', String(PORT), '--mode', 'system', '--op', 'delete']).catch(() => undefined);
    const exited = new Promise((resolve) => tgtd.once('exit', resolve));
    if (tgtd.exitCode === null && (await Promise.race([exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 2000))])) === false) tgtd.kill('SIGKILL');
    for (const f of [`/var/run/tgtd/socket.${PORT}`, `/var/run/tgtd/socket.${PORT}.lock`]) await rm(f, { force: true });
    await rm(dir, { recursive: true, force: true });
  });

  it('an export with InitialR2T=Yes ImmediateData=No and 64 KiB bursts: tgtd holds them, and a libiscsi session negotiates them', async () => {
    await storage.createVolume({ name: 'p1', pool: '', sizeBytes: 8 << 20, provisioning: 'PROVISIONING_SPARSE' }, never);
    const asked = { initialR2t: true, immediateData: false, maxBurstLength: 65_536, firstBurstLength: 65_536, maxRecvDataSegmentLength: 0, maxOutstandingR2t: 0 };
    const made = await storage.exportIscsi(request('p1', asked), never);
    const iqn = `${PREFIX}:p1`;
    assert.equal(made.created, true);
    const expected = { ...TGT_DEFAULT_SESSION_PARAMS, initialR2T: true, immediateData: false, maxBurstLength: 65_536, firstBurstLength: 65_536 };
    assert.deepEqual(iscsiSessionParamsFromProto(made.target.sessionParams), expected, 'the export answers with what tgtd offers, read back');

    const [target] = parseTgtShow(await tgtadm('--mode', 'target', '--op', 'show'));
    assert.ok(target);
    assert.deepEqual(parseTgtTargetParams(await tgtadm('--mode', 'target', '--op', 'show', '--tid', String(target.tid))), expected, 'tgtd itself');

    // libiscsi proposes InitialR2T=No, ImmediateData=Yes and bursts of 256 KiB and more:
    // the target's settings win (OR, AND, minimum).
    const negotiated = parseLibiscsiLoginReplies(await libiscsiLogin(iqn));
    assert.equal(negotiated.initialR2T, true, 'InitialR2T (OR)');
    assert.equal(negotiated.immediateData, false, 'ImmediateData (AND)');
    assert.equal(negotiated.maxBurstLength, 65_536, 'MaxBurstLength (minimum)');
    assert.equal(negotiated.firstBurstLength, 65_536, 'FirstBurstLength (minimum)');
    assert.equal(negotiated.maxOutstandingR2T, 1, 'MaxOutstandingR2T at tgt default');

    // Idempotent: the same request changes nothing; other parameters are another spec.
    const again = await storage.exportIscsi(request('p1', asked), never);
    assert.equal(again.created, false);
    assert.deepEqual(iscsiSessionParamsFromProto(again.target.sessionParams), expected);
    await assert.rejects(storage.exportIscsi(request('p1', { ...asked, maxBurstLength: 131_072 }), never), (err: unknown) => {
      assert.ok(err instanceof VcstorError);
      assert.equal(err.code, 'ALREADY_EXISTS');
      assert.match(err.message, /other session_params \(InitialR2T=Yes ImmediateData=No MaxBurstLength=65536 FirstBurstLength=65536 now, .*MaxBurstLength=131072 .*asked\)/);
      return true;
    });

    // The listing shows the target's offer and says why tgt gives no per-session values.
    const [listed] = await storage.listIscsiTargets(never);
    assert.deepEqual(iscsiSessionParamsFromProto(listed?.sessionParams), expected);

    await storage.unexportIscsi({ volume: 'p1', pool: '', targetIqn: '', force: true }, never);
    await storage.deleteVolume({ name: 'p1', pool: '', force: true }, never);
  });

  it('an export without session parameters: tgt defaults, and libiscsi negotiates its own proposals within them', async () => {
    await storage.createVolume({ name: 'p2', pool: '', sizeBytes: 8 << 20, provisioning: 'PROVISIONING_SPARSE' }, never);
    const made = await storage.exportIscsi(request('p2', null), never);
    assert.deepEqual(iscsiSessionParamsFromProto(made.target.sessionParams), TGT_DEFAULT_SESSION_PARAMS);
    const negotiated = parseLibiscsiLoginReplies(await libiscsiLogin(`${PREFIX}:p2`));
    // The keys that differ from the first test: this is a measurement, not an echo.
    assert.equal(negotiated.immediateData, true, 'ImmediateData: both sides say Yes');
    assert.ok(negotiated.maxBurstLength !== undefined && negotiated.maxBurstLength <= TGT_DEFAULT_SESSION_PARAMS.maxBurstLength && negotiated.maxBurstLength > 65_536, `MaxBurstLength ${negotiated.maxBurstLength}`);
    await storage.unexportIscsi({ volume: 'p2', pool: '', targetIqn: '', force: true }, never);
    await storage.deleteVolume({ name: 'p2', pool: '', force: true }, never);
  });
});
