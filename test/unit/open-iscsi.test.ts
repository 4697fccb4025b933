import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VcstorError } from '../../common/errors.js';
import { OpenIscsiInitiator, byPathName, ifaceNameFor, lunOf, parseIscsiSessionTree } from '../../host-storage/open-iscsi.js';
import type { IscsiLoginSpec } from '../../host-storage/types.js';
import { RecordingCommandRunner, type ScriptedOutput } from '../support/runner-recording.js';
import { rejects } from '../support/errors.js';

// ---------------------------------------------------------------------------------------
// Captured `iscsiadm -m session -P 3` outputs, pasted as they were published.

/**
 * oVirt's hosted-engine role README (oVirt/ovirt-ansible-collection,
 * roles/hosted_engine_setup/README.md, "Test iSCSI connectivity and get LUN WWID before
 * deploying"): open-iscsi 6.2.0.874-7 on CentOS 7, two targets on one portal, two LUNs
 * each, tab-indented as iscsiadm prints.
 */
const OVIRT_TWO_TARGETS = `iSCSI Transport Class version 2.0-870
version 6.2.0.874-7
Target: iqn.2017-10.com.redhat.stirabos:data (non-flash)
\tCurrent Portal: 192.168.1.125:3260,1
\tPersistent Portal: 192.168.1.125:3260,1
\t\t**********
\t\tInterface:
\t\t**********
\t\tIface Name: default
\t\tIface Transport: tcp
\t\tIface Initiatorname: iqn.1994-05.com.redhat:6a4517b3773a
\t\tIface IPaddress: 192.168.1.14
\t\tIface HWaddress: <empty>
\t\tIface Netdev: <empty>
\t\tSID: 1
\t\tiSCSI Connection State: LOGGED IN
\t\tiSCSI Session State: LOGGED_IN
\t\tInternal iscsid Session State: NO CHANGE
\t\t*********
\t\tTimeouts:
\t\t*********
\t\tRecovery Timeout: 5
\t\tTarget Reset Timeout: 30
\t\tLUN Reset Timeout: 30
\t\tAbort Timeout: 15
\t\t*****
\t\tCHAP:
\t\t*****
\t\tusername: <empty>
\t\tpassword: ********
\t\tusername_in: <empty>
\t\tpassword_in: ********
\t\t************************
\t\tNegotiated iSCSI params:
\t\t************************
\t\tHeaderDigest: None
\t\tDataDigest: None
\t\tMaxRecvDataSegmentLength: 262144
\t\tMaxXmitDataSegmentLength: 131072
\t\tFirstBurstLength: 131072
\t\tMaxBurstLength: 16776192
\t\tImmediateData: Yes
\t\tInitialR2T: Yes
\t\tMaxOutstandingR2T: 1
\t\t************************
\t\tAttached SCSI devices:
\t\t************************
\t\tHost Number: 3\tState: running
\t\tscsi3 Channel 00 Id 0 Lun: 2
\t\t\tAttached scsi disk sdb\t\tState: running
\t\tscsi3 Channel 00 Id 0 Lun: 3
\t\t\tAttached scsi disk sdc\t\tState: running
Target: iqn.2017-10.com.redhat.stirabos:he (non-flash)
\tCurrent Portal: 192.168.1.125:3260,1
\tPersistent Portal: 192.168.1.125:3260,1
\t\t**********
\t\tInterface:
\t\t**********
\t\tIface Name: default
\t\tIface Transport: tcp
\t\tIface Initiatorname: iqn.1994-05.com.redhat:6a4517b3773a
\t\tIface IPaddress: 192.168.1.14
\t\tIface HWaddress: <empty>
\t\tIface Netdev: <empty>
\t\tSID: 4
\t\tiSCSI Connection State: LOGGED IN
\t\tiSCSI Session State: LOGGED_IN
\t\tInternal iscsid Session State: NO CHANGE
\t\t*********
\t\tTimeouts:
\t\t*********
\t\tRecovery Timeout: 5
\t\tTarget Reset Timeout: 30
\t\tLUN Reset Timeout: 30
\t\tAbort Timeout: 15
\t\t*****
\t\tCHAP:
\t\t*****
\t\tusername: <empty>
\t\tpassword: ********
\t\tusername_in: <empty>
\t\tpassword_in: ********
\t\t************************
\t\tNegotiated iSCSI params:
\t\t************************
\t\tHeaderDigest: None
\t\tDataDigest: None
\t\tMaxRecvDataSegmentLength: 262144
\t\tMaxXmitDataSegmentLength: 131072
\t\tFirstBurstLength: 131072
\t\tMaxBurstLength: 16776192
\t\tImmediateData: Yes
\t\tInitialR2T: Yes
\t\tMaxOutstandingR2T: 1
\t\t************************
\t\tAttached SCSI devices:
\t\t************************
\t\tHost Number: 6\tState: running
\t\tscsi6 Channel 00 Id 0 Lun: 0
\t\t\tAttached scsi disk sdd\t\tState: running
\t\tscsi6 Channel 00 Id 0 Lun: 1
\t\t\tAttached scsi disk sde\t\tState: running
`;

/**
 * Rocks' img-storage roll (rocksclusters/img-storage-roll, tests/vm_tests.py,
 * `iscsiadm_response`): open-iscsi 6.2.0-873.10.el6, indented with spaces as stored
 * there, its two %s filled with the values that test uses (target
 * iqn.2001-04.com.nas-0-1-vol2, disk sdc). The first target is tgt's: LUN 0 is its
 * controller and has no disk. The second session lost its target: FREE, TRANSPORT
 * WAIT, REOPEN, disk transport-offline.
 */
const ROCKS_TRANSPORT_OFFLINE = `
iSCSI Transport Class version 2.0-870
version 6.2.0-873.10.el6
Target: iqn.2001-04.com.zfs-0-0-compute-0-2-0-vol
    Current Portal: 10.2.20.254:3260,1
    Persistent Portal: 10.2.20.254:3260,1
        **********
        Interface:
        **********
        Iface Name: default
        Iface Transport: tcp
        Iface Initiatorname: iqn.1994-05.com.redhat:6453f1cc15cf
        Iface IPaddress: 10.2.20.252
        Iface HWaddress: <empty>
        Iface Netdev: <empty>
        SID: 49
        iSCSI Connection State: LOGGED IN
        iSCSI Session State: LOGGED_IN
        Internal iscsid Session State: NO CHANGE
        *********
        Timeouts:
        *********
        Recovery Timeout: 120
        Target Reset Timeout: 30
        LUN Reset Timeout: 30
        Abort Timeout: 15
        *****
        CHAP:
        *****
        username: <empty>
        password: ********
        username_in: <empty>
        password_in: ********
        ************************
        Negotiated iSCSI params:
        ************************
        HeaderDigest: None
        DataDigest: None
        MaxRecvDataSegmentLength: 262144
        MaxXmitDataSegmentLength: 8192
        FirstBurstLength: 65536
        MaxBurstLength: 262144
        ImmediateData: Yes
        InitialR2T: Yes
        MaxOutstandingR2T: 1
        ************************
        Attached SCSI devices:
        ************************
        Host Number: 54 State: running
        scsi54 Channel 00 Id 0 Lun: 0
        scsi54 Channel 00 Id 0 Lun: 1
            Attached scsi disk sdb      State: running
Target: iqn.2001-04.com.nas-0-1-vol2
    Current Portal: 10.2.20.247:3260,1
    Persistent Portal: 10.2.20.247:3260,1
        **********
        Interface:
        **********
        Iface Name: default
        Iface Transport: tcp
        Iface Initiatorname: iqn.1994-05.com.redhat:6453f1cc15cf
        Iface IPaddress: <empty>
        Iface HWaddress: <empty>
        Iface Netdev: <empty>
        SID: 69
        iSCSI Connection State: TRANSPORT WAIT
        iSCSI Session State: FREE
        Internal iscsid Session State: REOPEN
        *********
        Timeouts:
        *********
        Recovery Timeout: 120
        Target Reset Timeout: 30
        LUN Reset Timeout: 30
        Abort Timeout: 15
        *****
        CHAP:
        *****
        username: <empty>
        password: ********
        username_in: <empty>
        password_in: ********
        ************************
        Negotiated iSCSI params:
        ************************
        HeaderDigest: None
        DataDigest: None
        MaxRecvDataSegmentLength: 262144
        MaxXmitDataSegmentLength: 8192
        FirstBurstLength: 65536
        MaxBurstLength: 262144
        ImmediateData: Yes
        InitialR2T: Yes
        MaxOutstandingR2T: 1
        ************************
        Attached SCSI devices:
        ************************
        Host Number: 74 State: running
        scsi74 Channel 00 Id 0 Lun: 0
        scsi74 Channel 00 Id 0 Lun: 1
            Attached scsi disk sdc      State: transport-offline`;

/**
 * open-iscsi issue #228 ("iscsid: lost sessions and unable to logout"), as the reporter
 * pasted it: from the first Current Portal on (the Target line is not in the paste),
 * up to the last complete line. Two sessions to one portal: the second has no portal
 * lines, only the empty line iscsiadm prints instead, and the first has no disk.
 */
const ISSUE_228_SAME_PORTAL = `\tCurrent Portal: 10.8.100.6:3260,1
\tPersistent Portal: 10.8.100.6:3260,1
\t\t**********
\t\tInterface:
\t\t**********
\t\tIface Name: default
\t\tIface Transport: tcp
\t\tIface Initiatorname: iqn.2017-01.at.cf-it.kubernetes.db-1
\t\tIface IPaddress: <empty>
\t\tIface HWaddress: <empty>
\t\tIface Netdev: <empty>
\t\tSID: 806
\t\tiSCSI Connection State: TRANSPORT WAIT
\t\tiSCSI Session State: FREE
\t\tInternal iscsid Session State: REOPEN
\t\t*********
\t\tTimeouts:
\t\t*********
\t\tRecovery Timeout: 5
\t\tTarget Reset Timeout: 30
\t\tLUN Reset Timeout: 30
\t\tAbort Timeout: 15
\t\t*****
\t\tCHAP:
\t\t*****
\t\tusername: <empty>
\t\tpassword: ********
\t\tusername_in: <empty>
\t\tpassword_in: ********
\t\t************************
\t\tNegotiated iSCSI params:
\t\t************************
\t\tHeaderDigest: None
\t\tDataDigest: None
\t\tMaxRecvDataSegmentLength: 262144
\t\tMaxXmitDataSegmentLength: 262144
\t\tFirstBurstLength: 65536
\t\tMaxBurstLength: 262144
\t\tImmediateData: Yes
\t\tInitialR2T: Yes
\t\tMaxOutstandingR2T: 1
\t\t************************
\t\tAttached SCSI devices:
\t\t************************
\t\tHost Number: 14\tState: running

\t\t**********
\t\tInterface:
\t\t**********
\t\tIface Name: default
\t\tIface Transport: tcp
`;

/**
 * No published capture with a FAILED session was found, so this one is EDITED: the oVirt
 * capture above with the "he" session put in the state a session is in while iscsid
 * reconnects after its portal went away: the connection, session and iscsid lines take
 * the values usr/session_info.c prints for it (TRANSPORT WAIT, the kernel's FAILED,
 * REOPEN) and its disks are blocked, as the SCSI layer blocks them during recovery.
 */
const OVIRT_HE_FAILED_EDITED = OVIRT_TWO_TARGETS.replace(
  /(SID: 4\n\t\tiSCSI Connection State: )LOGGED IN\n(\t\tiSCSI Session State: )LOGGED_IN\n(\t\tInternal iscsid Session State: )NO CHANGE/,
  '$1TRANSPORT WAIT\n$2FAILED\n$3REOPEN',
)
  .replace('Attached scsi disk sdd\t\tState: running', 'Attached scsi disk sdd\t\tState: blocked')
  .replace('Attached scsi disk sde\t\tState: running', 'Attached scsi disk sde\t\tState: blocked');

// ---------------------------------------------------------------------------------------
// Sessions of vcstor's own iface records, printed in the layout of the captures above
// (usr/session_info.c): what a host shows after this driver logged in.

const TARGET = 'iqn.2025-01.io.vcstor:pool1.vol1';
const NODE1 = 'iqn.2025-01.io.vcstor:node1';
const NODE2 = 'iqn.2025-01.io.vcstor:node2';
const HOST = '192.0.2.10';
const PORTAL = '192.0.2.10:3260';
const IFACE1 = ifaceNameFor(NODE1);
const IFACE2 = ifaceNameFor(NODE2);
const PASSWORD = 'Secret-One_123';
const MUTUAL_PASSWORD = 'Target-Pass_456';

interface SessionShape {
  iface: string;
  initiator: string;
  sid: number;
  connection?: string;
  state?: string;
  internal?: string;
  /** [lun, disk or '' for none, disk state]. */
  luns: Array<[number, string, string?]>;
}

function sessionBlock(shape: SessionShape): string {
  const lines = [
    '\t\t**********',
    '\t\tInterface:',
    '\t\t**********',
    `\t\tIface Name: ${shape.iface}`,
    '\t\tIface Transport: tcp',
    `\t\tIface Initiatorname: ${shape.initiator}`,
    '\t\tIface IPaddress: 192.0.2.20',
    '\t\tIface HWaddress: default',
    '\t\tIface Netdev: default',
    `\t\tSID: ${shape.sid}`,
    `\t\tiSCSI Connection State: ${shape.connection ?? 'LOGGED IN'}`,
    `\t\tiSCSI Session State: ${shape.state ?? 'LOGGED_IN'}`,
    `\t\tInternal iscsid Session State: ${shape.internal ?? 'NO CHANGE'}`,
    '\t\t************************',
    '\t\tAttached SCSI devices:',
    '\t\t************************',
    `\t\tHost Number: ${shape.sid + 2}\tState: running`,
  ];
  for (const [lun, disk, diskState] of shape.luns) {
    lines.push(`\t\tscsi${shape.sid + 2} Channel 00 Id 0 Lun: ${lun}`);
    if (disk !== '') lines.push(`\t\t\tAttached scsi disk ${disk}\t\tState: ${diskState ?? 'running'}`);
  }
  return `${lines.join('\n')}\n`;
}

/** One target and portal; further sessions there get the empty line iscsiadm prints. */
function sessionTree(sessions: SessionShape[], target = TARGET, portal = PORTAL): string {
  return (
    'iSCSI Transport Class version 2.0-870\nversion 2.1.8\n' +
    `Target: ${target} (non-flash)\n\tCurrent Portal: ${portal},1\n\tPersistent Portal: ${portal},1\n` +
    sessions.map(sessionBlock).join('\n')
  );
}

// ---------------------------------------------------------------------------------------

const NO_SESSIONS: ScriptedOutput = { exitCode: 21, stderr: 'iscsiadm: No active sessions.\n' };

let workDir = '';
let caseNumber = 0;

before(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'vcstor-open-iscsi-'));
});

after(async () => {
  await rm(workDir, { recursive: true, force: true });
});

/** A host as the driver sees it: /dev, /sys and what `iscsiadm -m session -P 3` prints. */
class FakeHost {
  readonly devDir: string;
  readonly sysDir: string;
  /** '' when there is no session (iscsiadm exits 21). */
  sessions = '';

  constructor() {
    caseNumber += 1;
    const root = path.join(workDir, `case-${caseNumber}`);
    this.devDir = path.join(root, 'dev');
    this.sysDir = path.join(root, 'sys');
    mkdirSync(path.join(this.devDir, 'disk', 'by-path'), { recursive: true });
    mkdirSync(path.join(this.sysDir, 'class', 'block'), { recursive: true });
  }

  /** A disk: its device node and /sys/class/block/<disk>/size in 512-byte sectors. */
  addDisk(disk: string, sectors: number): void {
    writeFileSync(path.join(this.devDir, disk), '');
    mkdirSync(path.join(this.sysDir, 'class', 'block', disk), { recursive: true });
    writeFileSync(path.join(this.sysDir, 'class', 'block', disk, 'size'), `${sectors}\n`);
  }

  /** udev's by-path link, relative as udev makes it. */
  linkByPath(lun: number, disk: string, host = HOST, port = 3260, target = TARGET): void {
    symlinkSync(`../../${disk}`, path.join(this.devDir, 'disk', 'by-path', byPathName(host, port, target, lun)));
  }

  runner(): RecordingCommandRunner {
    return new RecordingCommandRunner().on('iscsiadm', ['-m', 'session', '-P', '3'], () =>
      this.sessions === '' ? NO_SESSIONS : { stdout: this.sessions },
    );
  }

  driver(runner: RecordingCommandRunner): OpenIscsiInitiator {
    return new OpenIscsiInitiator({ runner, devDir: this.devDir, sysDir: this.sysDir });
  }
}

const isLogin = (_command: string, args: readonly string[]) => args.includes('--login');
const isLogout = (_command: string, args: readonly string[]) => args.includes('--logout');

/** The iface and node commands, answered as iscsiadm does when all goes well. */
function scriptRecords(runner: RecordingCommandRunner): RecordingCommandRunner {
  return runner
    .on('iscsiadm', ['-m', 'iface'], (_command, args) => ({ stdout: args.includes('new') ? `New interface ${args[3]} added\n` : `${args[3]} updated.\n` }))
    .when(isLogout, { exitCode: 21, stderr: 'iscsiadm: No matching sessions found\n' })
    .on('iscsiadm', ['-m', 'node'], {});
}

function spec(overrides: Partial<IscsiLoginSpec> = {}): IscsiLoginSpec {
  return { host: HOST, port: 3260, targetIqn: TARGET, lun: 1, initiatorIqn: NODE1, headerDigest: true, timeoutMs: 5_000, ...overrides };
}

const signal = new AbortController().signal;
const node = (iface = IFACE1) => `iscsiadm -m node -T ${TARGET} -p ${PORTAL} -I ${iface}`;

/** A login that makes the session of NODE1 with LUN 1 on sdb, as the kernel and udev would. */
function loginSucceeds(host: FakeHost): () => ScriptedOutput {
  return () => {
    host.sessions = sessionTree([{ iface: IFACE1, initiator: NODE1, sid: 3, luns: [[1, 'sdb']] }]);
    host.addDisk('sdb', 2_097_152);
    host.linkByPath(1, 'sdb');
    return {
      stdout:
        `Logging in to [iface: ${IFACE1}, target: ${TARGET}, portal: ${HOST},3260]\n` +
        `Login to [iface: ${IFACE1}, target: ${TARGET}, portal: ${HOST},3260] successful.\n`,
    };
  };
}

describe('lunOf: which LUN of a session a request means', () => {
  const tgt = { luns: [{ lun: 0, disk: '', diskState: '' }, { lun: 1, disk: 'sdb', diskState: 'running' }, { lun: 2, disk: 'sdc', diskState: 'running' }] };
  const lio = { luns: [{ lun: 1, disk: 'sdd', diskState: 'running' }, { lun: 0, disk: 'sdc', diskState: 'running' }] };
  it('0 is the first data LUN: 1 on tgt (LUN 0 is its controller, no disk), 0 on LIO', () => {
    assert.equal(lunOf(tgt, 0)?.disk, 'sdb');
    assert.equal(lunOf(lio, 0)?.disk, 'sdc');
  });
  it('any other number is that LUN, when it has a disk', () => {
    assert.equal(lunOf(tgt, 2)?.disk, 'sdc');
    assert.equal(lunOf(lio, 1)?.disk, 'sdd');
    assert.equal(lunOf(tgt, 3), undefined);
    assert.equal(lunOf({ luns: [{ lun: 0, disk: '', diskState: '' }] }, 0), undefined);
  });
});

describe('OpenIscsiInitiator.login', () => {
  it('makes the iface and node records with one-way CHAP, logs in and returns the disk', async () => {
    const host = new FakeHost();
    const runner = scriptRecords(host.runner().when(isLogin, loginSucceeds(host)));
    const result = await host.driver(runner).login(spec({ chap: { username: 'node1-user', password: PASSWORD } }), signal);

    assert.deepEqual(runner.lines, [
      'iscsiadm -m session -P 3',
      `iscsiadm -m iface -I ${IFACE1} -o new`,
      `iscsiadm -m iface -I ${IFACE1} -o update -n iface.initiatorname -v ${NODE1}`,
      `${node()} -o new`,
      `${node()} -o update -n node.session.auth.authmethod -v CHAP`,
      `${node()} -o update -n node.session.auth.username -v node1-user`,
      `${node()} -o update -n node.session.auth.password -v ***`,
      `${node()} -o update -n 'node.conn[0].iscsi.HeaderDigest' -v CRC32C`,
      `${node()} --login`,
      'iscsiadm -m session -P 3',
    ]);
    assert.equal(result.alreadyLoggedIn, false);
    assert.deepEqual(result.session, {
      host: HOST,
      port: 3260,
      targetIqn: TARGET,
      lun: 1,
      initiatorIqn: NODE1,
      devicePath: path.join(host.devDir, 'sdb'),
      sizeBytes: 2_097_152 * 512,
      state: 'logged-in',
      detail: '',
      negotiatedDetail: 'iscsiadm printed no "Negotiated iSCSI params" for this session',
    });
    assert.deepEqual(result.sessionParamsApplied, {});
    assert.equal(result.sessionParamsDetail, '');
    // The password reaches iscsiadm, masked everywhere it is recorded.
    const passwordCall = runner.calls.find((call) => call.args.includes('node.session.auth.password'));
    assert.equal(passwordCall?.args.at(-1), PASSWORD);
    assert.deepEqual(passwordCall?.options.sensitive, [PASSWORD]);
    assert.ok(runner.lines.every((line) => !line.includes(PASSWORD)));
  });

  it('sets mutual CHAP and no header digest, with both passwords masked', async () => {
    const host = new FakeHost();
    const runner = scriptRecords(host.runner().when(isLogin, loginSucceeds(host)));
    const chap = { username: 'node1-user', password: PASSWORD, mutualUsername: 'target-user', mutualPassword: MUTUAL_PASSWORD };
    await host.driver(runner).login(spec({ chap, headerDigest: false }), signal);

    const updates = runner.lines.filter((line) => line.includes('-o update') && line.startsWith(node()));
    assert.deepEqual(updates, [
      `${node()} -o update -n node.session.auth.authmethod -v CHAP`,
      `${node()} -o update -n node.session.auth.username -v node1-user`,
      `${node()} -o update -n node.session.auth.password -v ***`,
      `${node()} -o update -n node.session.auth.username_in -v target-user`,
      `${node()} -o update -n node.session.auth.password_in -v ***`,
      `${node()} -o update -n 'node.conn[0].iscsi.HeaderDigest' -v None`,
    ]);
    const mutualCall = runner.calls.find((call) => call.args.includes('node.session.auth.password_in'));
    assert.deepEqual(mutualCall?.options.sensitive, [MUTUAL_PASSWORD]);
    assert.ok(runner.lines.every((line) => !line.includes(PASSWORD) && !line.includes(MUTUAL_PASSWORD)));
  });

  it('sets the requested session parameters in the node record before the login, exactly, and only those', async () => {
    const host = new FakeHost();
    const runner = scriptRecords(host.runner().when(isLogin, loginSucceeds(host)));
    const sessionParams = { initialR2T: true, immediateData: false, maxRecvDataSegmentLength: 65_536, maxBurstLength: 65_536, firstBurstLength: 32_768, maxOutstandingR2T: 4 };
    const result = await host.driver(runner).login(spec({ headerDigest: false, sessionParams }), signal);
    const updates = runner.lines.filter((line) => line.includes('-o update') && line.startsWith(node()));
    assert.deepEqual(updates, [
      `${node()} -o update -n node.session.auth.authmethod -v None`,
      `${node()} -o update -n 'node.conn[0].iscsi.HeaderDigest' -v None`,
      `${node()} -o update -n node.session.iscsi.InitialR2T -v Yes`,
      `${node()} -o update -n node.session.iscsi.ImmediateData -v No`,
      `${node()} -o update -n 'node.conn[0].iscsi.MaxRecvDataSegmentLength' -v 65536`,
      `${node()} -o update -n node.session.iscsi.MaxBurstLength -v 65536`,
      `${node()} -o update -n node.session.iscsi.FirstBurstLength -v 32768`,
      `${node()} -o update -n node.session.iscsi.MaxOutstandingR2T -v 4`,
    ]);
    assert.ok(runner.lines.indexOf(`${node()} -o update -n node.session.iscsi.MaxOutstandingR2T -v 4`) < runner.lines.indexOf(`${node()} --login`), 'set before the login');
    assert.deepEqual(result.sessionParamsApplied, sessionParams);
    assert.equal(result.sessionParamsDetail, '');

    const partial = new FakeHost();
    const partialRunner = scriptRecords(partial.runner().when(isLogin, loginSucceeds(partial)));
    await partial.driver(partialRunner).login(spec({ headerDigest: false, sessionParams: { immediateData: true } }), signal);
    assert.deepEqual(partialRunner.lines.filter((line) => line.includes('node.session.iscsi.') || line.includes('iscsi.MaxRecv')), [`${node()} -o update -n node.session.iscsi.ImmediateData -v Yes`]);
  });

  it('sets authmethod None without CHAP, so CHAP from iscsid.conf does not apply', async () => {
    const host = new FakeHost();
    const runner = scriptRecords(host.runner().when(isLogin, loginSucceeds(host)));
    await host.driver(runner).login(spec(), signal);
    assert.ok(runner.lines.includes(`${node()} -o update -n node.session.auth.authmethod -v None`));
    assert.ok(!runner.lines.some((line) => line.includes('auth.username')));
  });

  it('returns a logged-in session of the same initiator as it is, without logging in', async () => {
    const host = new FakeHost();
    host.sessions = sessionTree([{ iface: IFACE1, initiator: NODE1, sid: 3, luns: [[1, 'sdb']] }]);
    host.addDisk('sdb', 4_194_304);
    const runner = host.runner();
    const result = await host.driver(runner).login(spec({ chap: { username: 'node1-user', password: PASSWORD } }), signal);

    assert.deepEqual(runner.lines, ['iscsiadm -m session -P 3']);
    assert.equal(result.alreadyLoggedIn, true);
    assert.equal(result.session.devicePath, path.join(host.devDir, 'sdb'));
    assert.equal(result.session.sizeBytes, 4_194_304 * 512);
  });

  it("logs in anew when only another initiator's session to that LUN exists, and returns its own disk, not the by-path one", async () => {
    const host = new FakeHost();
    // NODE2 is logged in already; udev points the shared by-path name at its disk.
    host.sessions = sessionTree([{ iface: IFACE2, initiator: NODE2, sid: 2, luns: [[1, 'sdd']] }]);
    host.addDisk('sdd', 2_048);
    host.linkByPath(1, 'sdd');
    const runner = scriptRecords(
      host.runner().when(isLogin, () => {
        host.sessions = sessionTree([
          { iface: IFACE2, initiator: NODE2, sid: 2, luns: [[1, 'sdd']] },
          { iface: IFACE1, initiator: NODE1, sid: 5, luns: [[1, 'sde']] },
        ]);
        host.addDisk('sde', 2_048);
        return { stdout: '' };
      }),
    );
    const result = await host.driver(runner).login(spec(), signal);

    assert.ok(runner.lines.includes(`${node()} --login`));
    assert.equal(result.alreadyLoggedIn, false);
    assert.equal(result.session.devicePath, path.join(host.devDir, 'sde'));
  });

  it("does not take a session of another iface as its own, even with the same initiator name (logout could not reach it)", async () => {
    const host = new FakeHost();
    host.sessions = sessionTree([{ iface: 'default', initiator: NODE1, sid: 2, luns: [[1, 'sdd']] }]);
    host.addDisk('sdd', 2_048);
    const runner = scriptRecords(
      host.runner().when(isLogin, () => {
        host.sessions = sessionTree([
          { iface: 'default', initiator: NODE1, sid: 2, luns: [[1, 'sdd']] },
          { iface: IFACE1, initiator: NODE1, sid: 5, luns: [[1, 'sde']] },
        ]);
        host.addDisk('sde', 2_048);
        host.linkByPath(1, 'sde');
        return { stdout: '' };
      }),
    );
    const result = await host.driver(runner).login(spec(), signal);

    assert.equal(result.alreadyLoggedIn, false);
    assert.ok(runner.lines.includes(`${node()} --login`));
    assert.equal(result.session.devicePath, path.join(host.devDir, 'sde'));
  });

  it('reads exit 15 of iface new, iface update and login as already done', async () => {
    const host = new FakeHost();
    const sessionExists: ScriptedOutput = { exitCode: 15, stderr: `iscsiadm: Could not create new interface ${IFACE1}.\n` };
    const runner = host
      .runner()
      .on('iscsiadm', ['-m', 'iface'], sessionExists)
      .when(isLogin, () => {
        loginSucceeds(host)();
        return { exitCode: 15, stderr: 'iscsiadm: initiator reported error (15 - session exists)\n' };
      })
      .when(isLogout, () => assert.fail('a session someone else made must not be logged out'))
      .on('iscsiadm', ['-m', 'node'], {});
    const result = await host.driver(runner).login(spec(), signal);

    assert.equal(result.alreadyLoggedIn, true);
    assert.equal(result.session.devicePath, path.join(host.devDir, 'sdb'));
  });

  it('rescans a logged-in session that lacks the LUN, without logging in again', async () => {
    const host = new FakeHost();
    host.sessions = sessionTree([{ iface: IFACE1, initiator: NODE1, sid: 7, luns: [[0, 'sdb']] }]);
    host.addDisk('sdb', 2_048);
    const runner = host.runner().on('iscsiadm', ['-m', 'session', '-r', '7', '--rescan'], () => {
      host.sessions = sessionTree([{ iface: IFACE1, initiator: NODE1, sid: 7, luns: [[0, 'sdb'], [1, 'sdc']] }]);
      host.addDisk('sdc', 8_192);
      host.linkByPath(1, 'sdc');
      return { stdout: 'Rescanning session [sid: 7, target: ..., portal: 192.0.2.10,3260]\n' };
    });
    const result = await host.driver(runner).login(spec(), signal);

    assert.deepEqual(runner.lines, ['iscsiadm -m session -P 3', 'iscsiadm -m session -r 7 --rescan', 'iscsiadm -m session -P 3']);
    assert.equal(result.alreadyLoggedIn, true);
    assert.equal(result.session.devicePath, path.join(host.devDir, 'sdc'));
    assert.equal(result.session.sizeBytes, 8_192 * 512);
  });

  it('refuses, without touching it, a session of the initiator that iscsid is recovering', async () => {
    const host = new FakeHost();
    host.sessions = sessionTree([
      { iface: IFACE1, initiator: NODE1, sid: 3, connection: 'TRANSPORT WAIT', state: 'FAILED', internal: 'REOPEN', luns: [[1, 'sdb', 'blocked']] },
    ]);
    const runner = host.runner();
    const err = await rejects(host.driver(runner).login(spec(), signal));

    assert.equal(err.code, 'UNAVAILABLE');
    assert.match(err.message, /session 3 .* is FAILED \(connection TRANSPORT WAIT, iscsid REOPEN\)/);
    assert.deepEqual(runner.lines, ['iscsiadm -m session -P 3']);
  });

  it('refuses an existing session whose disk for the LUN is offline, without logging in', async () => {
    const host = new FakeHost();
    host.sessions = sessionTree([{ iface: IFACE1, initiator: NODE1, sid: 3, luns: [[1, 'sdb', 'offline']] }]);
    host.addDisk('sdb', 2_048);
    const runner = host.runner();
    const err = await rejects(host.driver(runner).login(spec(), signal));

    assert.equal(err.code, 'UNAVAILABLE');
    assert.match(err.message, /disk sdb is offline/);
    assert.deepEqual(runner.lines, ['iscsiadm -m session -P 3']);
  });

  it('turns a CHAP refusal (exit 24) into PERMISSION_DENIED and cleans up fully', async () => {
    const host = new FakeHost();
    const runner = scriptRecords(
      host.runner().when(isLogin, {
        exitCode: 24,
        stdout: `Logging in to [iface: ${IFACE1}, target: ${TARGET}, portal: ${HOST},3260]\n`,
        stderr:
          `iscsiadm: Could not login to [iface: ${IFACE1}, target: ${TARGET}, portal: ${HOST},3260].\n` +
          'iscsiadm: initiator reported error (24 - iSCSI login failed due to authorization failure)\n' +
          'iscsiadm: Could not log into all portals\n',
      }),
    );
    const err = await rejects(host.driver(runner).login(spec({ chap: { username: 'node1-user', password: PASSWORD } }), signal));

    assert.equal(err.code, 'PERMISSION_DENIED');
    assert.equal(err.retryable, false);
    assert.match(err.message, /CHAP credentials wrong or this initiator is not in its ACL \(iscsiadm exit 24: .*authorization failure/);
    assert.ok(!err.message.includes(PASSWORD));
    assert.deepEqual(runner.lines.slice(-3), [`${node()} --login`, `${node()} --logout`, `${node()} -o delete`]);
  });

  it('turns a connection timeout (exit 8) into a retryable UNAVAILABLE and cleans up', async () => {
    const host = new FakeHost();
    const runner = scriptRecords(
      host.runner().when(isLogin, {
        exitCode: 8,
        stderr:
          `iscsiadm: Could not login to [iface: ${IFACE1}, target: ${TARGET}, portal: ${HOST},3260].\n` +
          'iscsiadm: initiator reported error (8 - connection timed out)\n' +
          'iscsiadm: Could not log into all portals\n',
      }),
    );
    const err = await rejects(host.driver(runner).login(spec(), signal));

    assert.equal(err.code, 'UNAVAILABLE');
    assert.equal(err.retryable, true);
    assert.match(err.message, /connecting to the portal timed out/);
    assert.deepEqual(runner.lines.slice(-2), [`${node()} --logout`, `${node()} -o delete`]);
  });

  it('logs out a session whose disk never appears (DEADLINE_EXCEEDED)', async () => {
    const host = new FakeHost();
    let loggedOut = false;
    const runner = host
      .runner()
      .on('iscsiadm', ['-m', 'iface'], {})
      .when(isLogin, () => {
        host.sessions = sessionTree([{ iface: IFACE1, initiator: NODE1, sid: 3, luns: [] }]);
        return { stdout: '' };
      })
      .when(isLogout, () => {
        loggedOut = true;
        return { stdout: `Logout of [sid: 3, target: ${TARGET}, portal: ${HOST},3260] successful.\n` };
      })
      .on('iscsiadm', ['-m', 'node'], {});
    const err = await rejects(host.driver(runner).login(spec({ timeoutMs: 300 }), signal));

    assert.equal(err.code, 'DEADLINE_EXCEEDED');
    assert.match(err.message, /ip-192\.0\.2\.10:3260-iscsi-iqn\.2025-01\.io\.vcstor:pool1\.vol1-lun-1/);
    assert.ok(loggedOut);
    assert.equal(runner.lines.at(-1), `${node()} -o delete`);
  });

  it('cleans up after a cancelled login even though the signal has fired', async () => {
    const host = new FakeHost();
    const controller = new AbortController();
    const runner = scriptRecords(
      host.runner().when(isLogin, () => {
        setTimeout(() => controller.abort(), 50);
        return { stdout: '' };
      }),
    );
    const err = await rejects(host.driver(runner).login(spec({ timeoutMs: 10_000 }), controller.signal));

    assert.equal(err.code, 'CANCELLED');
    assert.deepEqual(runner.lines.slice(-2), [`${node()} --logout`, `${node()} -o delete`]);
    assert.equal(runner.calls.at(-1)?.options.timeoutMs, 30_000);
  });

  it('says what was left behind when the cleanup fails too', async () => {
    const host = new FakeHost();
    const runner = host
      .runner()
      .on('iscsiadm', ['-m', 'iface'], {})
      .when(isLogin, { exitCode: 24, stderr: 'iscsiadm: initiator reported error (24 - iSCSI login failed due to authorization failure)\n' })
      .when(isLogout, { exitCode: 20, stderr: 'iscsiadm: can not connect to iSCSI daemon (111)!\n' })
      .on('iscsiadm', ['-m', 'node'], {});
    const err = await rejects(host.driver(runner).login(spec(), signal));

    assert.equal(err.code, 'PERMISSION_DENIED');
    assert.match(err.message, /cleanup incomplete, left behind: session \(.*exited with 20/);
    assert.ok(!err.message.includes('node record ('), 'the node record was deleted');
  });

  it('refuses arguments iscsiadm could misread, before running anything', async () => {
    const host = new FakeHost();
    const runner = host.runner();
    const driver = host.driver(runner);
    assert.equal((await rejects(driver.login(spec({ targetIqn: 'iqn.x y' }), signal))).code, 'INVALID_ARGUMENT');
    assert.equal((await rejects(driver.login(spec({ host: '-p' }), signal))).code, 'INVALID_ARGUMENT');
    assert.equal((await rejects(driver.login(spec({ lun: -1 }), signal))).code, 'INVALID_ARGUMENT');
    assert.deepEqual(runner.lines, []);
  });

  it('puts an IPv6 portal in brackets for iscsiadm and not in the by-path name', async () => {
    const host = new FakeHost();
    const v6 = 'fd00:2::10';
    const runner = scriptRecords(
      host.runner().when(isLogin, () => {
        host.sessions = sessionTree([{ iface: IFACE1, initiator: NODE1, sid: 3, luns: [[1, 'sdb']] }], TARGET, `[${v6}]:3260`);
        host.addDisk('sdb', 2_048);
        host.linkByPath(1, 'sdb', v6);
        return { stdout: '' };
      }),
    );
    const result = await host.driver(runner).login(spec({ host: v6 }), signal);

    assert.ok(runner.lines.includes(`iscsiadm -m node -T ${TARGET} -p '[${v6}]:3260' -I ${IFACE1} --login`));
    assert.equal(result.session.host, v6);
    assert.equal(result.session.devicePath, path.join(host.devDir, 'sdb'));
  });
});

describe('OpenIscsiInitiator.logout', () => {
  const target = { host: HOST, port: 3260, targetIqn: TARGET, lun: 1, initiatorIqn: NODE1 };

  it('logs out through the initiator iface and deletes the node record', async () => {
    const host = new FakeHost();
    const runner = host
      .runner()
      .when(isLogout, {
        stdout:
          `Logging out of session [sid: 3, target: ${TARGET}, portal: ${HOST},3260]\n` +
          `Logout of [sid: 3, target: ${TARGET}, portal: ${HOST},3260] successful.\n`,
      })
      .on('iscsiadm', ['-m', 'node'], {});
    assert.equal(await host.driver(runner).logout(target, signal), true);
    assert.deepEqual(runner.lines, [`${node()} --logout`, `${node()} -o delete`]);
  });

  it('returns false for a session that is not there (exit 21), records gone too', async () => {
    const host = new FakeHost();
    const runner = host
      .runner()
      .when(isLogout, { exitCode: 21, stderr: 'iscsiadm: No matching sessions found\n' })
      .on('iscsiadm', ['-m', 'node'], { exitCode: 21, stderr: 'iscsiadm: No records found\n' });
    assert.equal(await host.driver(runner).logout(target, signal), false);
    assert.deepEqual(runner.lines, [`${node()} --logout`, `${node()} -o delete`]);
  });

  it('reports iscsid being down as UNAVAILABLE', async () => {
    const host = new FakeHost();
    const runner = host.runner().when(isLogout, { exitCode: 20, stderr: 'iscsiadm: can not connect to iSCSI daemon (111)!\n' });
    const err = await rejects(host.driver(runner).logout(target, signal));
    assert.equal(err.code, 'UNAVAILABLE');
    assert.match(err.message, /iscsid is not running/);
  });
});

describe('OpenIscsiInitiator.list on captured outputs', () => {
  it('lists nothing when iscsiadm has no session (exit 21)', async () => {
    const host = new FakeHost();
    assert.deepEqual(await host.driver(host.runner()).list(signal), []);
  });

  it("reads oVirt's two targets: one entry per LUN with its disk and size", async () => {
    const host = new FakeHost();
    host.sessions = OVIRT_TWO_TARGETS;
    for (const disk of ['sdb', 'sdc', 'sdd', 'sde']) host.addDisk(disk, 209_715_200);
    const sessions = await host.driver(host.runner()).list(signal);

    const initiatorIqn = 'iqn.1994-05.com.redhat:6a4517b3773a';
    const entry = (targetIqn: string, lun: number, disk: string) => ({
      host: '192.168.1.125',
      port: 3260,
      targetIqn,
      lun,
      initiatorIqn,
      devicePath: path.join(host.devDir, disk),
      sizeBytes: 209_715_200 * 512,
      state: 'logged-in',
      detail: '',
      // "Negotiated iSCSI params": the target's MaxRecvDataSegmentLength is iscsiadm's MaxXmitDataSegmentLength.
      negotiated: { maxRecvDataSegmentLength: 131_072, firstBurstLength: 131_072, maxBurstLength: 16_776_192, immediateData: true, initialR2T: true, maxOutstandingR2T: 1 },
    });
    assert.deepEqual(sessions, [
      entry('iqn.2017-10.com.redhat.stirabos:data', 2, 'sdb'),
      entry('iqn.2017-10.com.redhat.stirabos:data', 3, 'sdc'),
      entry('iqn.2017-10.com.redhat.stirabos:he', 0, 'sdd'),
      entry('iqn.2017-10.com.redhat.stirabos:he', 1, 'sde'),
    ]);
  });

  it('marks the FAILED session broken and leaves the healthy one logged in', async () => {
    const host = new FakeHost();
    host.sessions = OVIRT_HE_FAILED_EDITED;
    for (const disk of ['sdb', 'sdc', 'sdd', 'sde']) host.addDisk(disk, 2_048);
    const sessions = await host.driver(host.runner()).list(signal);

    const he = sessions.filter((s) => s.targetIqn.endsWith(':he'));
    assert.deepEqual(
      he.map((s) => [s.lun, s.state, s.devicePath, s.sizeBytes]),
      [
        [0, 'broken', '', 0],
        [1, 'broken', '', 0],
      ],
    );
    assert.equal(he[0]?.detail, 'session FAILED, connection TRANSPORT WAIT, iscsid REOPEN; disk sdd is blocked');
    const data = sessions.filter((s) => s.targetIqn.endsWith(':data'));
    assert.deepEqual(
      data.map((s) => s.state),
      ['logged-in', 'logged-in'],
    );
  });

  it("reads Rocks' capture: skips tgt's controller LUN, marks the FREE session's offline disk broken", async () => {
    const host = new FakeHost();
    host.sessions = ROCKS_TRANSPORT_OFFLINE;
    host.addDisk('sdb', 75_497_472);
    const sessions = await host.driver(host.runner()).list(signal);

    assert.deepEqual(sessions, [
      {
        host: '10.2.20.254',
        port: 3260,
        targetIqn: 'iqn.2001-04.com.zfs-0-0-compute-0-2-0-vol',
        lun: 1,
        initiatorIqn: 'iqn.1994-05.com.redhat:6453f1cc15cf',
        devicePath: path.join(host.devDir, 'sdb'),
        sizeBytes: 75_497_472 * 512,
        state: 'logged-in',
        detail: '',
        // A tgt target (IET ids) at tgt's defaults, negotiated with open-iscsi's.
        negotiated: { maxRecvDataSegmentLength: 8192, firstBurstLength: 65_536, maxBurstLength: 262_144, immediateData: true, initialR2T: true, maxOutstandingR2T: 1 },
      },
      {
        host: '10.2.20.247',
        port: 3260,
        targetIqn: 'iqn.2001-04.com.nas-0-1-vol2',
        lun: 1,
        initiatorIqn: 'iqn.1994-05.com.redhat:6453f1cc15cf',
        devicePath: '',
        sizeBytes: 0,
        state: 'broken',
        detail: 'session FREE, connection TRANSPORT WAIT, iscsid REOPEN; disk sdc is transport-offline',
        negotiated: { maxRecvDataSegmentLength: 8192, firstBurstLength: 65_536, maxBurstLength: 262_144, immediateData: true, initialR2T: true, maxOutstandingR2T: 1 },
      },
    ]);
  });

  it('reads a second session to the same portal (empty line instead of portal lines) from issue #228', () => {
    const sessions = parseIscsiSessionTree(ISSUE_228_SAME_PORTAL);
    assert.equal(sessions.length, 2);
    assert.deepEqual(sessions[0], {
      targetIqn: '',
      host: '10.8.100.6',
      port: 3260,
      currentHost: '10.8.100.6',
      currentPort: 3260,
      ifaceName: 'default',
      initiatorIqn: 'iqn.2017-01.at.cf-it.kubernetes.db-1',
      sid: 806,
      connectionState: 'TRANSPORT WAIT',
      sessionState: 'FREE',
      internalState: 'REOPEN',
      luns: [],
      negotiated: { maxRecvDataSegmentLength: 262_144, firstBurstLength: 65_536, maxBurstLength: 262_144, immediateData: true, initialR2T: true, maxOutstandingR2T: 1 },
    });
    assert.equal(sessions[1]?.host, '10.8.100.6');
    assert.equal(sessions[1]?.port, 3260);
    assert.equal(sessions[1]?.ifaceName, 'default');
  });

  it('gives a session without any disk one broken entry with lun -1', async () => {
    const host = new FakeHost();
    host.sessions = sessionTree([{ iface: IFACE1, initiator: NODE1, sid: 9, luns: [] }]);
    const sessions = await host.driver(host.runner()).list(signal);
    assert.deepEqual(
      sessions.map((s) => [s.lun, s.state, s.detail]),
      [[-1, 'broken', 'logged in but no disk is attached (session LOGGED_IN, connection LOGGED IN, iscsid NO CHANGE)']],
    );
  });

  it('keeps the two sessions of two initiators to one portal apart', async () => {
    const host = new FakeHost();
    host.sessions = sessionTree([
      { iface: IFACE2, initiator: NODE2, sid: 2, luns: [[1, 'sdd']] },
      { iface: IFACE1, initiator: NODE1, sid: 5, luns: [[1, 'sde', 'offline']] },
    ]);
    host.addDisk('sdd', 2_048);
    host.addDisk('sde', 2_048);
    const sessions = await host.driver(host.runner()).list(signal);
    assert.deepEqual(
      sessions.map((s) => [s.initiatorIqn, s.host, s.lun, s.state, s.devicePath]),
      [
        [NODE2, HOST, 1, 'logged-in', path.join(host.devDir, 'sdd')],
        [NODE1, HOST, 1, 'broken', ''],
      ],
    );
  });
});

describe('ifaceNameFor', () => {
  it('is stable, short, case-insensitive and distinct per IQN', () => {
    assert.equal(ifaceNameFor(NODE1), ifaceNameFor(NODE1.toUpperCase()));
    assert.notEqual(ifaceNameFor(NODE1), ifaceNameFor(NODE2));
    assert.match(ifaceNameFor(NODE1), /^vcstor-[0-9a-f]{16}$/);
  });
});
