import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CommandError } from '../../common/runner.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';
import { parseTgtAccounts, parseTgtShow, parseTgtTargetParams, TGT_DEFAULT_SESSION_PARAMS, TGT_NEGOTIATED_DETAIL, TgtIscsiTarget } from '../../agent-storage/drivers/tgt.js';

/** `tgtadm --mode target --op show` captured from tgtd here, with one initiator logged in. */
const SHOW = readFileSync(fileURLToPath(new URL('../../../test/fixtures/tgtadm-show-target.txt', import.meta.url)), 'utf8');
const IQN = 'iqn.2026-11.org.vcstor.lab:vol0';
/** `tgtadm --mode target --op show --tid N` of a new target (tgt's defaults), captured from tgtd 1.0.85. */
const PARAMS_DEFAULTS = readFileSync(fileURLToPath(new URL('../../../test/fixtures/iscsi/tgtadm-show-target-params-defaults.txt', import.meta.url)), 'utf8');
/** The same after InitialR2T=Yes ImmediateData=No MaxBurstLength=65536 FirstBurstLength=65536. */
const PARAMS_SET = readFileSync(fileURLToPath(new URL('../../../test/fixtures/iscsi/tgtadm-show-target-params.txt', import.meta.url)), 'utf8');
const showTid = (cmd: string, args: readonly string[]) => cmd === 'tgtadm' && args.includes('show') && args.includes('--tid');
const never = new AbortController().signal;

describe('tgt driver', () => {
  it('parses targets, LUNs, sessions, accounts and ACLs from real output', () => {
    const [target] = parseTgtShow(SHOW);
    assert.ok(target);
    assert.equal(target.tid, 1);
    assert.equal(target.iqn, IQN);
    assert.deepEqual(target.luns, [
      { lun: 0, type: 'controller', backingPath: '' },
      { lun: 1, type: 'disk', backingPath: '/tmp/t/lun.img' },
    ]);
    assert.deepEqual(target.sessions, [{ initiatorIqn: 'iqn.2026-11.org.vcstor.lab:guest0', address: '203.0.113.6' }]);
    assert.deepEqual(target.accounts, [{ user: 'alice', outgoing: false }, { user: 'tgtmutual', outgoing: true }]);
    assert.deepEqual(target.acl, ['203.0.113.6', 'iqn.2026-11.org.vcstor.lab:guest0']);
    assert.deepEqual(parseTgtShow(''), []);
    assert.deepEqual(parseTgtAccounts('Account list:\n    tgtmutual\n    alice\n'), ['tgtmutual', 'alice']);
  });

  it('lists targets with ACLs split into names and addresses', async () => {
    const runner = new RecordingCommandRunner().on('tgtadm', ['-C', '7', '--lld', 'iscsi', '--mode', 'target', '--op', 'show'], { stdout: SHOW });
    const [state] = await new TgtIscsiTarget({ runner, controlPort: 7 }).listTargets(never);
    assert.deepEqual(state, {
      iqn: IQN,
      luns: [{ lun: 1, backingPath: '/tmp/t/lun.img' }],
      allowedInitiators: ['iqn.2026-11.org.vcstor.lab:guest0'],
      allowedAddresses: ['203.0.113.6'],
      allowAnyInitiator: false,
      chapUsers: ['alice'],
      mutualChapUser: 'tgtmutual',
      sessions: [{ initiatorIqn: 'iqn.2026-11.org.vcstor.lab:guest0', address: '203.0.113.6', negotiatedDetail: TGT_NEGOTIATED_DETAIL }],
    });
  });

  it("reads a target's parameters, defaults included, and nothing from a listing without them", () => {
    assert.deepEqual(parseTgtTargetParams(PARAMS_DEFAULTS), TGT_DEFAULT_SESSION_PARAMS);
    assert.deepEqual(parseTgtTargetParams(PARAMS_SET), { ...TGT_DEFAULT_SESSION_PARAMS, immediateData: false, maxBurstLength: 65_536 });
    assert.equal(parseTgtTargetParams(SHOW), undefined);
  });

  it('sets the session parameters a new target is asked for, and only those differing from tgt defaults', async () => {
    const runner = new RecordingCommandRunner()
      .on('tgtadm', ['-C', '7', '--lld', 'iscsi', '--mode', 'target', '--op', 'show'], { stdout: '' })
      .on('tgtadm', ['-C', '7', '--lld', 'iscsi', '--mode', 'account', '--op', 'show'], { stdout: 'Account list:\n' })
      .when((cmd) => cmd === 'tgtadm', {});
    await new TgtIscsiTarget({ runner, controlPort: 7, backingStoreType: 'rdwr' }).ensureExport(
      {
        iqn: 'iqn.2026-11.org.vcstor.lab:vol1',
        lun: 1,
        backingPath: '/srv/pool/vol1.img',
        allowedInitiators: [],
        allowedAddresses: ['192.0.2.0/24'],
        allowAnyInitiator: false,
        // InitialR2T=Yes is tgt's default already: no command for it.
        sessionParams: { initialR2T: true, immediateData: false, maxRecvDataSegmentLength: 65_536, maxBurstLength: 65_536, firstBurstLength: 32_768, maxOutstandingR2T: 4 },
      },
      never,
    );
    const T = 'tgtadm -C 7 --lld iscsi --mode target --op update --tid 1';
    assert.deepEqual(runner.lines.filter((l) => l.includes('--op update')), [
      `${T} --name ImmediateData --value No`,
      `${T} --name MaxRecvDataSegmentLength --value 65536`,
      `${T} --name MaxBurstLength --value 65536`,
      `${T} --name FirstBurstLength --value 32768`,
      `${T} --name MaxOutstandingR2T --value 4`,
    ]);
    assert.ok(!runner.lines.some((l) => / --op show --tid /.test(l)), 'a new target is not read back by the driver');
  });

  it('an existing target: reads its parameters, changes what differs, and puts keys the request leaves out back to tgt defaults', async () => {
    const make = () =>
      new RecordingCommandRunner()
        .when(showTid, { stdout: PARAMS_SET })
        .on('tgtadm', ['-C', '7', '--lld', 'iscsi', '--mode', 'target', '--op', 'show'], { stdout: SHOW })
        .on('tgtadm', ['-C', '7', '--lld', 'iscsi', '--mode', 'account', '--op', 'show'], { stdout: 'Account list:\n    tgtmutual\n    alice\n' })
        .when((cmd) => cmd === 'tgtadm', {});
    const spec = {
      iqn: IQN,
      lun: 1,
      backingPath: '/tmp/t/lun.img',
      allowedInitiators: ['iqn.2026-11.org.vcstor.lab:guest0'],
      allowedAddresses: ['203.0.113.6'],
      allowAnyInitiator: false,
      chap: { username: 'alice', password: 'secretpass12', mutualUsername: 'tgtmutual', mutualPassword: 'mutualpass123' },
    };
    const same = make();
    await new TgtIscsiTarget({ runner: same, controlPort: 7 }).ensureExport({ ...spec, sessionParams: { immediateData: false, maxBurstLength: 65_536, firstBurstLength: 65_536 } }, never);
    assert.deepEqual(same.lines.filter((l) => !/--op show/.test(l)), [], 'what tgtd holds already: nothing to do');
    assert.ok(same.lines.includes(`tgtadm -C 7 --lld iscsi --mode target --op show --tid 1`), 'the target was read');

    const other = make();
    await new TgtIscsiTarget({ runner: other, controlPort: 7 }).ensureExport({ ...spec, sessionParams: { maxBurstLength: 131_072 } }, never);
    const T = 'tgtadm -C 7 --lld iscsi --mode target --op update --tid 1';
    assert.deepEqual(other.lines.filter((l) => !/--op show/.test(l)), [`${T} --name ImmediateData --value Yes`, `${T} --name MaxBurstLength --value 131072`]);
  });

  it('reads the parameters of a listed target; none for a target tgtd does not have', async () => {
    const runner = new RecordingCommandRunner()
      .when(showTid, { stdout: PARAMS_SET })
      .on('tgtadm', ['-C', '7', '--lld', 'iscsi', '--mode', 'target', '--op', 'show'], { stdout: SHOW });
    const driver = new TgtIscsiTarget({ runner, controlPort: 7 });
    assert.deepEqual(await driver.readSessionParams(IQN, never), { ...TGT_DEFAULT_SESSION_PARAMS, immediateData: false, maxBurstLength: 65_536 });
    assert.equal(await driver.readSessionParams('iqn.2026-11.org.vcstor.lab:gone', never), undefined);
  });

  it('creates a target with its LUN, ACL and mutual CHAP: the exact commands, secrets masked', async () => {
    const runner = new RecordingCommandRunner()
      .on('tgtadm', ['-C', '7', '--lld', 'iscsi', '--mode', 'target', '--op', 'show'], { stdout: SHOW })
      .on('tgtadm', ['-C', '7', '--lld', 'iscsi', '--mode', 'account', '--op', 'show'], { stdout: 'Account list:\n    alice\n    tgtmutual\n' })
      .when((cmd) => cmd === 'tgtadm', {});
    await new TgtIscsiTarget({ runner, controlPort: 7 }).ensureExport(
      {
        iqn: 'iqn.2026-11.org.vcstor.lab:vol1',
        lun: 1,
        backingPath: '/srv/pool/vol1.img',
        allowedInitiators: ['iqn.2026-11.org.vcstor.lab:guest1'],
        allowedAddresses: [],
        allowAnyInitiator: false,
        chap: { username: 'bob', password: 'bobsecret123', mutualUsername: 'storage0', mutualPassword: 'targetsecret9' },
      },
      never,
    );
    const T = 'tgtadm -C 7 --lld iscsi';
    assert.deepEqual(runner.lines, [
      `${T} --mode target --op show`,
      `${T} --mode target --op new --tid 2 --targetname iqn.2026-11.org.vcstor.lab:vol1`,
      `${T} --mode logicalunit --op new --tid 2 --lun 1 --backing-store /srv/pool/vol1.img --bstype aio`,
      `${T} --mode target --op bind --tid 2 --initiator-name iqn.2026-11.org.vcstor.lab:guest1`,
      `${T} --mode account --op show`,
      `${T} --mode account --op new --user bob --password ***`,
      `${T} --mode account --op new --user storage0 --password ***`,
      `${T} --mode account --op bind --tid 2 --user bob`,
      `${T} --mode account --op bind --tid 2 --user storage0 --outgoing`,
    ]);
    assert.doesNotMatch(runner.lines.join('\n'), /bobsecret123|targetsecret9/);
  });

  it('changes nothing on a target that already matches (idempotent)', async () => {
    const runner = new RecordingCommandRunner()
      .when(showTid, { stdout: PARAMS_DEFAULTS })
      .on('tgtadm', ['-C', '7', '--lld', 'iscsi', '--mode', 'target', '--op', 'show'], { stdout: SHOW })
      .on('tgtadm', ['-C', '7', '--lld', 'iscsi', '--mode', 'account', '--op', 'show'], { stdout: 'Account list:\n    tgtmutual\n    alice\n' });
    await new TgtIscsiTarget({ runner, controlPort: 7 }).ensureExport(
      {
        iqn: IQN,
        lun: 1,
        backingPath: '/tmp/t/lun.img',
        allowedInitiators: ['iqn.2026-11.org.vcstor.lab:guest0'],
        allowedAddresses: ['203.0.113.6'],
        allowAnyInitiator: false,
        chap: { username: 'alice', password: 'secretpass12', mutualUsername: 'tgtmutual', mutualPassword: 'mutualpass123' },
      },
      never,
    );
    assert.deepEqual(runner.lines.filter((l) => !/--op show/.test(l)), []);
  });

  it('refuses to remove a target with sessions unless forced, then drops its unused accounts', async () => {
    const make = () =>
      new RecordingCommandRunner().on('tgtadm', ['-C', '7', '--lld', 'iscsi', '--mode', 'target', '--op', 'show'], { stdout: SHOW }).when((cmd) => cmd === 'tgtadm', {});
    const polite = make();
    await assert.rejects(new TgtIscsiTarget({ runner: polite, controlPort: 7 }).removeTarget(IQN, false, never), /initiators logged in: iqn.2026-11.org.vcstor.lab:guest0 \(203.0.113.6\)/);
    const forced = make();
    assert.equal(await new TgtIscsiTarget({ runner: forced, controlPort: 7 }).removeTarget(IQN, true, never), true);
    // Before deleting an account the driver re-reads tgtd (a bind made meanwhile must not be missed).
    assert.deepEqual(forced.lines.slice(1).filter((l) => !l.endsWith('--mode target --op show')), [
      'tgtadm -C 7 --lld iscsi --mode target --op delete --force --tid 1',
      'tgtadm -C 7 --lld iscsi --mode account --op delete --user alice',
      'tgtadm -C 7 --lld iscsi --mode account --op delete --user tgtmutual',
    ]);
    assert.equal(await new TgtIscsiTarget({ runner: make(), controlPort: 7 }).removeTarget('iqn.2026-11.org.vcstor.lab:gone', false, never), false);
  });

  it('takes "tgtd closed the socket" with exit 0 as a failure, not a success', async () => {
    // tgtd 1.0.85 after a failed io_setup: requests are dropped, tgtadm still exits 0.
    const runner = new RecordingCommandRunner()
      .on('tgtadm', ['-C', '7', '--lld', 'iscsi', '--mode', 'target', '--op', 'show'], { stdout: '' })
      .when((cmd) => cmd === 'tgtadm', { stdout: 'tgtadm: tgtd closed the socket\n' });
    const driver = new TgtIscsiTarget({ runner, controlPort: 7, aioBudget: async () => ({ inUse: 0, max: 65536 }) });
    await assert.rejects(
      driver.ensureExport({ iqn: 'iqn.2026-11.org.vcstor.lab:vol2', lun: 1, backingPath: '/srv/pool/vol2.img', allowedInitiators: [], allowedAddresses: [], allowAnyInitiator: true }, never),
      { code: 'UNAVAILABLE', message: /closed the control connection without answering `--mode target --op new --tid 1 .*restart tgtd/ },
    );
  });

  it('refuses an aio LUN the AIO budget cannot hold, before asking tgtd', async () => {
    const runner = new RecordingCommandRunner().on('tgtadm', ['-C', '7', '--lld', 'iscsi', '--mode', 'target', '--op', 'show'], { stdout: '' }).when((cmd) => cmd === 'tgtadm', {});
    const driver = new TgtIscsiTarget({ runner, controlPort: 7, aioBudget: async () => ({ inUse: 65_472, max: 65_536 }) });
    await assert.rejects(
      driver.ensureExport({ iqn: 'iqn.2026-11.org.vcstor.lab:vol2', lun: 1, backingPath: '/srv/pool/vol2.img', allowedInitiators: [], allowedAddresses: [], allowAnyInitiator: true }, never),
      { code: 'RESOURCE_EXHAUSTED', message: /fs\.aio-nr is 65472 of fs\.aio-max-nr 65536 .*sysctl -w fs\.aio-max-nr=1048576.*backingStoreType: rdwr/ },
    );
    assert.deepEqual(runner.lines, ['tgtadm -C 7 --lld iscsi --mode target --op show'], 'no target made');
    // rdwr LUNs take no AIO context: the same budget does not stop them.
    const rdwr = new TgtIscsiTarget({ runner: new RecordingCommandRunner().when((cmd) => cmd === 'tgtadm', {}), controlPort: 7, backingStoreType: 'rdwr', aioBudget: async () => ({ inUse: 65_536, max: 65_536 }) });
    await rdwr.ensureExport({ iqn: 'iqn.2026-11.org.vcstor.lab:vol2', lun: 1, backingPath: '/srv/pool/vol2.img', allowedInitiators: [], allowedAddresses: [], allowAnyInitiator: true }, never);
  });

  it('picks tids from what it knows, one target at a time, and re-reads tgtd on a clash', async () => {
    let shows = 0;
    const runner = new RecordingCommandRunner()
      .when((cmd, args) => cmd === 'tgtadm' && args.includes('show') && args.includes('target'), () => ({ stdout: shows++ === 0 ? '' : 'Target 1: iqn.2026-11.other:x\n' }))
      // Another tool made tid 1 behind the driver's back: the first `new --tid 1` clashes.
      .when((cmd, args) => cmd === 'tgtadm' && args.join(' ').includes('--op new --tid 1 '), { exitCode: 22, stderr: 'tgtadm: this target already exists\n' })
      .when((cmd) => cmd === 'tgtadm', {});
    const driver = new TgtIscsiTarget({ runner, controlPort: 7, aioBudget: async () => ({ inUse: 0, max: 65536 }) });
    const spec = (k: number) => ({ iqn: `iqn.2026-11.org.vcstor.lab:v${k}`, lun: 1, backingPath: `/srv/pool/v${k}.img`, allowedInitiators: [], allowedAddresses: [], allowAnyInitiator: true });
    await Promise.all([1, 2, 3].map((k) => driver.ensureExport(spec(k), never)));
    const news = runner.lines.filter((l) => l.includes('--mode target --op new'));
    assert.deepEqual(news.map((l) => /--tid (\d+) --targetname (\S+)/.exec(l)!.slice(1).join(' ')), [
      '1 iqn.2026-11.org.vcstor.lab:v1',
      '2 iqn.2026-11.org.vcstor.lab:v1',
      '3 iqn.2026-11.org.vcstor.lab:v2',
      '4 iqn.2026-11.org.vcstor.lab:v3',
    ]);
    assert.equal(runner.lines.filter((l) => l.endsWith('--mode target --op show')).length, 2, 'tgtd read at the start and after the clash, not per export');
  });

  it('adopts a target another tool made under the same name instead of failing', async () => {
    let shows = 0;
    const runner = new RecordingCommandRunner()
      .when(showTid, { stdout: PARAMS_DEFAULTS })
      .when((cmd, args) => cmd === 'tgtadm' && args.includes('show') && args.includes('target'), () => ({ stdout: shows++ === 0 ? '' : 'Target 5: iqn.2026-11.org.vcstor.lab:v1\n' }))
      .when((cmd, args) => cmd === 'tgtadm' && args.join(' ').includes('--op new --tid 1 '), { exitCode: 22, stderr: 'tgtadm: this target already exists\n' })
      .when((cmd) => cmd === 'tgtadm', {});
    const driver = new TgtIscsiTarget({ runner, controlPort: 7, aioBudget: async () => ({ inUse: 0, max: 65536 }) });
    await driver.ensureExport({ iqn: 'iqn.2026-11.org.vcstor.lab:v1', lun: 1, backingPath: '/srv/pool/v1.img', allowedInitiators: [], allowedAddresses: [], allowAnyInitiator: true }, never);
    assert.deepEqual(runner.lines.filter((l) => !l.endsWith('--op show')).slice(1), [
      'tgtadm -C 7 --lld iscsi --mode logicalunit --op new --tid 5 --lun 1 --backing-store /srv/pool/v1.img --bstype aio',
      'tgtadm -C 7 --lld iscsi --mode target --op bind --tid 5 --initiator-address ALL',
      // An adopted target may hold any parameters: read, and found at tgt's defaults.
      'tgtadm -C 7 --lld iscsi --mode target --op show --tid 5',
    ]);
  });

  it('says tgtd is not running when its control port does not answer', async () => {
    const runner = new RecordingCommandRunner().when(() => true, {
      exitCode: 107,
      stderr: 'tgtadm: failed to send request hdr to tgt daemon, Transport endpoint is not connected',
    });
    await assert.rejects(new TgtIscsiTarget({ runner, controlPort: 9 }).listTargets(never), (err: unknown) => {
      assert.ok(err instanceof CommandError || (err instanceof Error && 'code' in err));
      assert.equal((err as { code: string }).code, 'UNAVAILABLE');
      assert.match((err as Error).message, /tgtd is not running on control port 9/);
      return true;
    });
  });
});
