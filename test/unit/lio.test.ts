import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VcstorError } from '../../common/errors.js';
import { CommandError } from '../../common/runner.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';
import { LioTarget, lioBackstoreName, parseLioDynamicSessions, parseLioSessionInfo, type BackingKind } from '../../agent-storage/drivers/lio.js';
import type { IscsiExportSpec } from '../../agent-storage/drivers/types.js';

const TARGET = 'iqn.2025-01.io.vcstor:pool1.vol1';
const NODE1 = 'iqn.1994-05.com.redhat:node1';
const NODE2 = 'iqn.1994-05.com.redhat:node2';
const TPG = `/iscsi/${TARGET}/tpg1`;
const PASSWORD = 'Secret-One_123';
const NEW_PASSWORD = 'Secret-Two_456';
const MUTUAL_PASSWORD = 'Target+Pass/45';
const SECRETS = [PASSWORD, NEW_PASSWORD, MUTUAL_PASSWORD];

let workDir = '';
let caseNumber = 0;

before(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'vcstor-lio-'));
});

after(async () => {
  await rm(workDir, { recursive: true, force: true });
});

/**
 * LIO's configfs tree in a temp dir, with the real layout: core/<plugin>_<n>/<name> with
 * udev_path, iscsi/<iqn>/tpgt_1/{lun/lun_N/<alias> -> ../../../../../../target/core/...,
 * acls/<initiator>/{auth,info,lun_N}, np, attrib, auth, enable, dynamic_sessions}. The
 * root is ".../config/target" so the relative symlinks resolve as on a real host.
 * `apply` plays targetcli-fb: it changes the tree the way rtslib would.
 */
class FakeLio {
  saves = 0;

  constructor(
    readonly root: string,
    /** The portal targetcli adds to a new target: newer versions [::0]:3260, older 0.0.0.0:3260. */
    private readonly defaultPortal = '[::0]:3260',
  ) {
    mkdirSync(path.join(root, 'core', 'alua'), { recursive: true });
    mkdirSync(path.join(root, 'iscsi', 'discovery_auth'), { recursive: true });
    writeFileSync(path.join(root, 'iscsi', 'lio_version'), 'Datera Inc. iSCSI Target v4.1.0\n');
  }

  tpgDir(iqn: string): string {
    return path.join(this.root, 'iscsi', iqn, 'tpgt_1');
  }

  aclDir(iqn: string, initiator: string): string {
    return path.join(this.tpgDir(iqn), 'acls', initiator);
  }

  createStorageObject(plugin: 'iblock' | 'fileio', name: string, backingPath: string): string {
    const core = path.join(this.root, 'core');
    let index = 0;
    while (existsSync(path.join(core, `${plugin}_${index}`))) index++;
    const hba = `${plugin}_${index}`;
    mkdirSync(path.join(core, hba, name), { recursive: true });
    writeFileSync(path.join(core, hba, 'hba_info'), `HBA Index: ${index} plugin: ${plugin} version: v5.0\n`);
    writeFileSync(path.join(core, hba, name, 'udev_path'), `${backingPath}\n`);
    writeFileSync(path.join(core, hba, name, 'enable'), '1\n');
    return hba;
  }

  findStorageObject(plugin: string, name: string): string | undefined {
    const core = path.join(this.root, 'core');
    return readdirSync(core).find((hba) => hba.startsWith(`${plugin}_`) && existsSync(path.join(core, hba, name)));
  }

  createTarget(iqn: string, portals = [this.defaultPortal]): void {
    const tpg = this.tpgDir(iqn);
    for (const dir of ['lun', 'acls', 'np', 'attrib', 'auth', 'param']) mkdirSync(path.join(tpg, dir), { recursive: true });
    writeFileSync(path.join(tpg, 'enable'), '1\n');
    writeFileSync(path.join(tpg, 'dynamic_sessions'), '');
    // Newer targetcli sets authentication=0 on a new TPG; the rest are kernel defaults.
    this.setAttributes(iqn, { authentication: '0', generate_node_acls: '0', demo_mode_write_protect: '1', cache_dynamic_acls: '0' });
    this.writeAuth(path.join(tpg, 'auth'), {});
    writeFileSync(path.join(tpg, 'param', 'AuthMethod'), 'CHAP,None\n');
    // The kernel's defaults for a new TPG (iscsi_target_parameters.h), one file per key.
    this.setParameters(iqn, { InitialR2T: 'Yes', ImmediateData: 'Yes', MaxRecvDataSegmentLength: '8192', MaxBurstLength: '262144', FirstBurstLength: '65536', MaxOutstandingR2T: '1' });
    for (const portal of portals) mkdirSync(path.join(tpg, 'np', portal));
  }

  setParameters(iqn: string, values: Record<string, string>): void {
    for (const [key, value] of Object.entries(values)) writeFileSync(path.join(this.tpgDir(iqn), 'param', key), `${value}\n`);
  }

  readParameter(iqn: string, key: string): string {
    return readFileSync(path.join(this.tpgDir(iqn), 'param', key), 'utf8').trim();
  }

  setAttributes(iqn: string, values: Record<string, string>): void {
    for (const [key, value] of Object.entries(values)) writeFileSync(path.join(this.tpgDir(iqn), 'attrib', key), `${value}\n`);
  }

  addLun(iqn: string, lun: number, hba: string, name: string): void {
    const dir = path.join(this.tpgDir(iqn), 'lun', `lun_${lun}`);
    mkdirSync(dir, { recursive: true });
    symlinkSync(`../../../../../../target/core/${hba}/${name}`, path.join(dir, randomAlias()));
  }

  addAcl(iqn: string, initiator: string): void {
    const dir = this.aclDir(iqn, initiator);
    for (const sub of ['auth', 'attrib', 'param']) mkdirSync(path.join(dir, sub), { recursive: true });
    this.writeAuth(path.join(dir, 'auth'), {});
    writeFileSync(path.join(dir, 'info'), `No active iSCSI Session for Initiator Endpoint: ${initiator}\n`);
    writeFileSync(path.join(dir, 'cmdsn_depth'), '64\n');
  }

  mapLun(iqn: string, initiator: string, mappedLun: number, tpgLun: number): void {
    const dir = path.join(this.aclDir(iqn, initiator), `lun_${mappedLun}`);
    mkdirSync(dir, { recursive: true });
    symlinkSync(`../../../lun/lun_${tpgLun}`, path.join(dir, randomAlias()));
    writeFileSync(path.join(dir, 'write_protect'), '0\n');
  }

  /** Kernel format: "%s\n"; a value cleared by rtslib reads "NULL". */
  writeAuth(authDir: string, values: Partial<Record<'userid' | 'password' | 'userid_mutual' | 'password_mutual', string>>): void {
    mkdirSync(authDir, { recursive: true });
    for (const file of ['userid', 'password', 'userid_mutual', 'password_mutual'] as const) {
      if (values[file] !== undefined || !existsSync(path.join(authDir, file))) writeFileSync(path.join(authDir, file), `${values[file] ?? ''}\n`);
    }
    const mutual = readFileSync(path.join(authDir, 'userid_mutual'), 'utf8').trim();
    writeFileSync(path.join(authDir, 'authenticate_target'), mutual !== '' && mutual !== 'NULL' ? '1\n' : '0\n');
  }

  readAuth(authDir: string, file: string): string {
    return readFileSync(path.join(authDir, file), 'utf8').trim();
  }

  setSession(iqn: string, initiator: string, address: string): void {
    writeFileSync(
      path.join(this.aclDir(iqn, initiator), 'info'),
      [
        `InitiatorName: ${initiator}`,
        'InitiatorAlias: node1',
        'LIO Session ID: 3   ISID: 0x00023d000001  TSIH: 3  SessionType: Normal',
        'Session State: TARG_SESS_STATE_LOGGED_IN',
        '---------------------[iSCSI Session Values]-----------------------',
        '  CmdSN/WR  :  CmdSN/WC  :  ExpCmdSN  :  MaxCmdSN  :     ITT    :     TTT',
        ' 0x00000040   0x00000040   0x0000183a   0x00001879   0x6e000000   0xffffffff',
        '----------------------[iSCSI Connections]-------------------------',
        'CID: 0  Connection State: TARG_CONN_STATE_LOGGED_IN',
        `   Address ${address} TCP  StatSN: 0x3c7d3b0a`,
        '',
      ].join('\n'),
    );
  }

  private removeLun(iqn: string, lun: number): void {
    const lunDir = path.join(this.tpgDir(iqn), 'lun', `lun_${lun}`);
    const acls = path.join(this.tpgDir(iqn), 'acls');
    for (const initiator of readdirSync(acls)) {
      for (const entry of readdirSync(path.join(acls, initiator)).filter((e) => /^lun_\d+$/.test(e))) {
        const mapped = path.join(acls, initiator, entry);
        const link = readdirSync(mapped).find((e) => e !== 'write_protect');
        if (link && path.resolve(mapped, readlinkSync(path.join(mapped, link))) === lunDir) rmSync(mapped, { recursive: true });
      }
    }
    rmSync(lunDir, { recursive: true });
  }

  private tpgLuns(iqn: string): number[] {
    return readdirSync(path.join(this.tpgDir(iqn), 'lun')).map((d) => Number(d.slice(4)));
  }

  /** targetcli one-shot: it joins argv with spaces and re-parses it, so do the same. */
  apply(args: readonly string[]): void {
    const words = args.join(' ').split(' ');
    if (words[0] === 'saveconfig' && words.length === 1) {
      this.saves++;
      return;
    }
    const [node = '', command = '', ...params] = words;
    const keywords = new Map(params.filter((p) => p.includes('=')).map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]));
    const positional = params.filter((p) => !p.includes('='));
    const fail = () => new Error(`fake targetcli cannot do: ${args.join(' ')}`);
    const backstore = /^\/backstores\/(block|fileio)$/.exec(node);
    const tpgNode = /^\/iscsi\/([^/]+)\/tpg1(\/luns|\/portals|\/acls|\/acls\/[^/]+)?$/.exec(node);
    if (backstore) {
      const plugin = backstore[1] === 'block' ? 'iblock' : 'fileio';
      if (command === 'create') {
        this.createStorageObject(plugin, keywords.get('name')!, keywords.get('dev') ?? keywords.get('file_or_dev')!);
      } else if (command === 'delete') {
        const hba = this.findStorageObject(plugin, positional[0]!);
        if (!hba) throw fail();
        const soDir = path.join(this.root, 'core', hba, positional[0]!);
        // rtslib deletes the LUNs using a storage object with it.
        for (const iqn of readdirSync(path.join(this.root, 'iscsi')).filter((d) => d.startsWith('iqn.'))) {
          for (const lun of this.tpgLuns(iqn)) {
            const lunDir = path.join(this.tpgDir(iqn), 'lun', `lun_${lun}`);
            const link = readdirSync(lunDir)[0];
            if (link && path.resolve(lunDir, readlinkSync(path.join(lunDir, link))) === soDir) this.removeLun(iqn, lun);
          }
        }
        rmSync(path.join(this.root, 'core', hba), { recursive: true });
      } else throw fail();
    } else if (node === '/iscsi' && command === 'create') {
      this.createTarget(positional[0]!);
    } else if (node === '/iscsi' && command === 'delete') {
      rmSync(path.join(this.root, 'iscsi', positional[0]!), { recursive: true });
    } else if (tpgNode) {
      const iqn = tpgNode[1]!;
      const child = tpgNode[2] ?? '';
      if (child === '/luns' && command === 'create') {
        const [, , plugin, name] = positional[0]!.split('/');
        const hba = this.findStorageObject(plugin === 'block' ? 'iblock' : 'fileio', name!);
        if (!hba) throw fail();
        const lun = Number(keywords.get('lun'));
        this.addLun(iqn, lun, hba, name!);
        if (keywords.get('add_mapped_luns') === 'true') {
          for (const initiator of readdirSync(path.join(this.tpgDir(iqn), 'acls'))) this.mapLun(iqn, initiator, lun, lun);
        }
      } else if (child === '/luns' && command === 'delete') {
        this.removeLun(iqn, Number(keywords.get('lun')));
      } else if (child === '/portals') {
        const address = positional[0]!;
        const name = `${address.includes(':') ? `[${address}]` : address}:${positional[1]}`;
        if (command === 'create') mkdirSync(path.join(this.tpgDir(iqn), 'np', name));
        else if (command === 'delete') rmSync(path.join(this.tpgDir(iqn), 'np', name), { recursive: true });
        else throw fail();
      } else if (child === '/acls' && command === 'create') {
        this.addAcl(iqn, positional[0]!);
        if (keywords.get('add_mapped_luns') === 'true') for (const lun of this.tpgLuns(iqn)) this.mapLun(iqn, positional[0]!, lun, lun);
      } else if (child === '/acls' && command === 'delete') {
        rmSync(this.aclDir(iqn, positional[0]!), { recursive: true });
      } else if (child.startsWith('/acls/') && command === 'create') {
        this.mapLun(iqn, child.slice(6), Number(positional[0]), Number(positional[1]));
      } else if (command === 'set' && positional[0] === 'auth') {
        const authDir = child.startsWith('/acls/') ? path.join(this.aclDir(iqn, child.slice(6)), 'auth') : path.join(this.tpgDir(iqn), 'auth');
        const files = { userid: 'userid', password: 'password', mutual_userid: 'userid_mutual', mutual_password: 'password_mutual' } as const;
        const values: Partial<Record<(typeof files)[keyof typeof files], string>> = {};
        for (const [key, value] of keywords) {
          const file = files[key as keyof typeof files];
          if (!file) throw fail();
          values[file] = value === '' ? 'NULL' : value;
        }
        this.writeAuth(authDir, values);
      } else if (child === '' && command === 'set' && positional[0] === 'attribute') {
        this.setAttributes(iqn, Object.fromEntries(keywords));
      } else if (child === '' && command === 'set' && positional[0] === 'parameter') {
        this.setParameters(iqn, Object.fromEntries(keywords));
      } else if (child === '' && command === 'enable') {
        writeFileSync(path.join(this.tpgDir(iqn), 'enable'), '1\n');
      } else throw fail();
    } else throw fail();
  }
}

function randomAlias(): string {
  return createHash('sha1').update(String(Math.random())).digest('hex').slice(0, 10);
}

interface Harness {
  fake: FakeLio;
  runner: RecordingCommandRunner;
  lio: LioTarget;
  dir: string;
  image: string;
}

/** A fake LIO and a driver on it; targetcli calls go to the fake unless `targetcli` is given. */
async function harness(options: { portal?: string; defaultPortal?: string; kinds?: Record<string, BackingKind>; scripted?: boolean } = {}): Promise<Harness> {
  const dir = path.join(workDir, `case-${++caseNumber}`);
  const fake = new FakeLio(path.join(dir, 'config', 'target'), options.defaultPortal);
  const image = path.join(dir, 'images', 'vol1.img');
  mkdirSync(path.dirname(image), { recursive: true });
  await writeFile(image, '');
  const runner = new RecordingCommandRunner();
  if (!options.scripted) {
    runner.on('targetcli', [], (_command, args) => {
      fake.apply(args);
      return { stdout: '' };
    });
  }
  const kinds = options.kinds;
  const lio = new LioTarget({
    runner,
    configfsRoot: fake.root,
    ...(options.portal ? { portal: options.portal } : {}),
    ...(kinds ? { backingKind: async (p: string) => kinds[p] ?? 'missing' } : {}),
  });
  return { fake, runner, lio, dir, image };
}

function exportSpec(image: string, overrides: Partial<IscsiExportSpec> = {}): IscsiExportSpec {
  return {
    iqn: TARGET,
    lun: 0,
    backingPath: image,
    allowedInitiators: [NODE1],
    allowedAddresses: [],
    allowAnyInitiator: false,
    chap: { username: 'node1-user', password: PASSWORD },
    ...overrides,
  };
}

function assertNoSecrets(runner: RecordingCommandRunner): void {
  for (const line of runner.lines) {
    for (const secret of SECRETS) assert.ok(!line.includes(secret), `a secret leaked into: ${line}`);
  }
}

const signal = () => new AbortController().signal;
const BACKSTORE = lioBackstoreName(TARGET, 0);

/** A target as the driver would leave it for exportSpec(image): built by hand, not by the driver. */
function buildMatchingTarget(fake: FakeLio, image: string, password = PASSWORD): string {
  const hba = fake.createStorageObject('fileio', BACKSTORE, image);
  fake.createTarget(TARGET, ['0.0.0.0:3260']);
  fake.addLun(TARGET, 0, hba, BACKSTORE);
  fake.addAcl(TARGET, NODE1);
  fake.mapLun(TARGET, NODE1, 0, 0);
  // Mutual values cleared earlier read "NULL": that is "no mutual CHAP", not a difference.
  fake.writeAuth(path.join(fake.aclDir(TARGET, NODE1), 'auth'), { userid: 'node1-user', password, userid_mutual: 'NULL', password_mutual: 'NULL' });
  fake.setAttributes(TARGET, { authentication: '1', generate_node_acls: '0' });
  return hba;
}

describe('LioTarget: iSCSI session parameters', () => {
  it('sets the TPG parameters an export asks for in one targetcli line, reads them back, and changes nothing the second time', async () => {
    const { fake, runner, lio, image } = await harness({ portal: '192.0.2.10:3260' });
    const spec = exportSpec(image, { sessionParams: { initialR2T: true, immediateData: false, maxBurstLength: 65_536, firstBurstLength: 65_536 } });
    await lio.ensureExport(spec, signal());
    assert.deepEqual(
      runner.lines.filter((l) => l.includes(' parameter ')),
      [`targetcli ${TPG} set parameter InitialR2T=Yes ImmediateData=No MaxBurstLength=65536 FirstBurstLength=65536`],
    );
    assert.equal(fake.readParameter(TARGET, 'ImmediateData'), 'No');
    assert.deepEqual(await lio.readSessionParams(TARGET, signal()), {
      initialR2T: true,
      immediateData: false,
      maxRecvDataSegmentLength: 8192,
      maxBurstLength: 65_536,
      firstBurstLength: 65_536,
      maxOutstandingR2T: 1,
    });
    const before = runner.lines.length;
    await lio.ensureExport(spec, signal());
    assert.deepEqual(runner.lines.slice(before), [], 'idempotent: nothing differs');
  });

  it('leaves keys the export does not name as the kernel made them, and sets only when one differs', async () => {
    const { fake, runner, lio, image } = await harness({ portal: '192.0.2.10:3260' });
    await lio.ensureExport(exportSpec(image), signal());
    assert.ok(!runner.lines.some((l) => l.includes(' parameter ')), 'no parameter line without session parameters');
    fake.setParameters(TARGET, { MaxOutstandingR2T: '8' });
    const before = runner.lines.length;
    await lio.ensureExport(exportSpec(image, { sessionParams: { maxOutstandingR2T: 8, maxRecvDataSegmentLength: 262_144 } }), signal());
    assert.deepEqual(runner.lines.slice(before), [`targetcli ${TPG} set parameter MaxRecvDataSegmentLength=262144 MaxOutstandingR2T=8`, 'targetcli saveconfig']);
    assert.equal(await lio.readSessionParams('iqn.2025-01.io.vcstor:absent', signal()), undefined);
  });
});

describe('LioTarget.ensureExport', () => {
  it('creates a new export with one-way CHAP: exact targetcli lines, the default portal replaced, then saveconfig', async () => {
    const { fake, runner, lio, image } = await harness({ portal: '192.0.2.10:3260' });
    await lio.ensureExport(exportSpec(image), signal());
    assert.deepEqual(runner.lines, [
      `targetcli /backstores/fileio create name=${BACKSTORE} file_or_dev=${image}`,
      `targetcli /iscsi create ${TARGET}`,
      `targetcli ${TPG}/luns create /backstores/fileio/${BACKSTORE} lun=0 add_mapped_luns=true`,
      `targetcli ${TPG}/portals delete ::0 3260`,
      `targetcli ${TPG}/portals create 192.0.2.10 3260`,
      `targetcli ${TPG}/acls create ${NODE1} add_mapped_luns=true`,
      `targetcli ${TPG}/acls/${NODE1} set auth userid=node1-user password=***`,
      `targetcli ${TPG} set attribute authentication=1 generate_node_acls=0`,
      'targetcli saveconfig',
    ]);
    assertNoSecrets(runner);
    const auth = runner.calls.find((call) => call.args.includes('auth'));
    assert.deepEqual(auth?.options.sensitive, [PASSWORD], 'the secret was passed as sensitive');
    assert.equal(fake.readAuth(path.join(fake.aclDir(TARGET, NODE1), 'auth'), 'password'), PASSWORD, 'targetcli got the real secret');
    assert.equal(fake.saves, 1);
    const [state] = await lio.listTargets(signal());
    assert.deepEqual(state, {
      iqn: TARGET,
      luns: [{ lun: 0, backingPath: image }],
      allowedInitiators: [NODE1],
      allowedAddresses: [],
      allowAnyInitiator: false,
      chapUsers: ['node1-user'],
      sessions: [],
    });
  });

  it('sets mutual CHAP on every ACL in one set auth each; a default wildcard portal is kept', async () => {
    const { fake, runner, lio, image } = await harness({ defaultPortal: '0.0.0.0:3260' });
    const chap = { username: 'node-user', password: PASSWORD, mutualUsername: 'target-user', mutualPassword: MUTUAL_PASSWORD };
    await lio.ensureExport(exportSpec(image, { allowedInitiators: [NODE1, NODE2], chap }), signal());
    assert.deepEqual(runner.lines, [
      `targetcli /backstores/fileio create name=${BACKSTORE} file_or_dev=${image}`,
      `targetcli /iscsi create ${TARGET}`,
      `targetcli ${TPG}/luns create /backstores/fileio/${BACKSTORE} lun=0 add_mapped_luns=true`,
      `targetcli ${TPG}/acls create ${NODE1} add_mapped_luns=true`,
      `targetcli ${TPG}/acls create ${NODE2} add_mapped_luns=true`,
      `targetcli ${TPG}/acls/${NODE1} set auth userid=node-user password=*** mutual_userid=target-user mutual_password=***`,
      `targetcli ${TPG}/acls/${NODE2} set auth userid=node-user password=*** mutual_userid=target-user mutual_password=***`,
      `targetcli ${TPG} set attribute authentication=1 generate_node_acls=0`,
      'targetcli saveconfig',
    ]);
    assertNoSecrets(runner);
    const auth = path.join(fake.aclDir(TARGET, NODE2), 'auth');
    assert.equal(fake.readAuth(auth, 'password_mutual'), MUTUAL_PASSWORD);
    assert.equal(fake.readAuth(auth, 'authenticate_target'), '1');
    const [state] = await lio.listTargets(signal());
    assert.equal(state?.mutualChapUser, 'target-user');
    assert.deepEqual(state?.allowedInitiators, [NODE1, NODE2]);
  });

  it('allow-any: a block backstore, demo mode without write protection, CHAP on the TPG', async () => {
    const device = '/dev/vg0/vol2';
    const { fake, runner, lio } = await harness({ kinds: { [device]: 'block' } });
    await lio.ensureExport(
      exportSpec(device, { allowedInitiators: [], allowAnyInitiator: true, chap: { username: 'any-user', password: PASSWORD } }),
      signal(),
    );
    assert.deepEqual(runner.lines, [
      `targetcli /backstores/block create name=${BACKSTORE} dev=${device}`,
      `targetcli /iscsi create ${TARGET}`,
      `targetcli ${TPG}/luns create /backstores/block/${BACKSTORE} lun=0 add_mapped_luns=true`,
      `targetcli ${TPG} set auth userid=any-user password=***`,
      `targetcli ${TPG} set attribute authentication=1 generate_node_acls=1 demo_mode_write_protect=0`,
      'targetcli saveconfig',
    ]);
    assertNoSecrets(runner);
    assert.equal(fake.readAuth(path.join(fake.tpgDir(TARGET), 'auth'), 'password'), PASSWORD);
    const [state] = await lio.listTargets(signal());
    assert.equal(state?.allowAnyInitiator, true);
    assert.deepEqual(state?.chapUsers, ['any-user']);
    assert.deepEqual(state?.luns, [{ lun: 0, backingPath: device }]);
  });

  it('runs no command at all for a target that already matches (built by hand, then after its own run)', async () => {
    const { fake, image } = await harness();
    buildMatchingTarget(fake, image);
    // No rules: any command would fail the test loudly.
    const silent = new RecordingCommandRunner();
    const readOnly = new LioTarget({ runner: silent, configfsRoot: fake.root });
    await readOnly.ensureExport(exportSpec(image), signal());
    assert.deepEqual(silent.lines, []);

    const fresh = await harness();
    await fresh.lio.ensureExport(exportSpec(fresh.image), signal());
    const before = fresh.runner.calls.length;
    assert.ok(before > 0);
    await fresh.lio.ensureExport(exportSpec(fresh.image), signal());
    assert.equal(fresh.runner.calls.length, before, `second run issued: ${fresh.runner.lines.slice(before).join(' | ')}`);
    assert.equal(fresh.fake.saves, 1);
  });

  it('changes only what differs: a new CHAP password is one set auth and a save', async () => {
    const { fake, runner, lio, image } = await harness();
    buildMatchingTarget(fake, image, PASSWORD);
    await lio.ensureExport(exportSpec(image, { chap: { username: 'node1-user', password: NEW_PASSWORD } }), signal());
    assert.deepEqual(runner.lines, [`targetcli ${TPG}/acls/${NODE1} set auth userid=node1-user password=***`, 'targetcli saveconfig']);
    assertNoSecrets(runner);
    assert.equal(fake.readAuth(path.join(fake.aclDir(TARGET, NODE1), 'auth'), 'password'), NEW_PASSWORD);
  });

  it('moves the LUN to a new backing path and drops ACLs no longer allowed', async () => {
    const { fake, runner, lio, image, dir } = await harness();
    buildMatchingTarget(fake, image);
    fake.addAcl(TARGET, NODE2);
    fake.mapLun(TARGET, NODE2, 0, 0);
    const moved = path.join(dir, 'images', 'vol1-new.img');
    await writeFile(moved, '');
    await lio.ensureExport(exportSpec(moved), signal());
    assert.deepEqual(runner.lines, [
      `targetcli ${TPG}/luns delete lun=0`,
      `targetcli /backstores/fileio delete ${BACKSTORE}`,
      `targetcli /backstores/fileio create name=${BACKSTORE} file_or_dev=${moved}`,
      `targetcli ${TPG}/luns create /backstores/fileio/${BACKSTORE} lun=0 add_mapped_luns=true`,
      `targetcli ${TPG}/acls delete ${NODE2}`,
      'targetcli saveconfig',
    ]);
    const [state] = await lio.listTargets(signal());
    assert.deepEqual(state?.luns, [{ lun: 0, backingPath: moved }]);
    assert.deepEqual(state?.allowedInitiators, [NODE1]);
    assert.ok(existsSync(path.join(fake.aclDir(TARGET, NODE1), 'lun_0')), 'NODE1 has the new LUN mapped');
  });

  it('refuses address ACLs before running or reading anything', async () => {
    const runner = new RecordingCommandRunner();
    const lio = new LioTarget({ runner, configfsRoot: path.join(workDir, 'no-such-configfs') });
    await assert.rejects(lio.ensureExport(exportSpec('/no/such/file', { allowedAddresses: ['192.0.2.0/24'] }), signal()), (err: unknown) => {
      assert.ok(err instanceof VcstorError);
      assert.equal(err.code, 'FAILED_PRECONDITION');
      assert.match(err.message, /no address-based ACLs/);
      assert.match(err.message, /IQN/);
      return true;
    });
    assert.deepEqual(runner.lines, []);
  });

  it('refuses CHAP secrets targetcli cannot parse, without showing them', async () => {
    const { runner, lio, image } = await harness();
    const unparsable = 'Secret$pace 1!';
    await assert.rejects(lio.ensureExport(exportSpec(image, { chap: { username: 'node1-user', password: unparsable } }), signal()), (err: unknown) => {
      assert.ok(err instanceof VcstorError);
      assert.equal(err.code, 'FAILED_PRECONDITION');
      assert.match(err.message, /chap\.password cannot be given to LIO/);
      assert.ok(!err.message.includes(unparsable));
      return true;
    });
    assert.deepEqual(runner.lines, []);
  });

  it('refuses a missing backing path before any command', async () => {
    const { runner, lio, dir } = await harness();
    await assert.rejects(lio.ensureExport(exportSpec(path.join(dir, 'images', 'absent.img')), signal()), { code: 'FAILED_PRECONDITION', message: /does not exist/ });
    assert.deepEqual(runner.lines, []);
  });

  it('reads back configfs: a targetcli that exits 0 without doing anything is INTERNAL, and the config is still saved', async () => {
    const { runner, lio, image } = await harness({ scripted: true });
    runner.on('targetcli', [], { stdout: '' });
    await assert.rejects(lio.ensureExport(exportSpec(image), signal()), (err: unknown) => {
      assert.ok(err instanceof VcstorError);
      assert.equal(err.code, 'INTERNAL');
      assert.match(err.message, /targetcli reported success, but target .* is not in LIO's configfs/);
      return true;
    });
    assert.equal(runner.lines.at(-1), 'targetcli saveconfig');
  });

  it('reads back configfs: a set auth that targetcli only logs as failed is INTERNAL, naming what differs', async () => {
    const { fake, runner, lio, image } = await harness({ scripted: true });
    buildMatchingTarget(fake, image, PASSWORD);
    // targetcli logs many errors and still exits 0 (and always does through targetclid).
    runner.when((command, args) => command === 'targetcli' && args.includes('auth'), { stdout: 'Could not set auth\n' });
    runner.on('targetcli', [], (_command, args) => {
      fake.apply(args);
      return { stdout: '' };
    });
    await assert.rejects(lio.ensureExport(exportSpec(image, { chap: { username: 'node1-user', password: NEW_PASSWORD } }), signal()), (err: unknown) => {
      assert.ok(err instanceof VcstorError);
      assert.equal(err.code, 'INTERNAL');
      assert.match(err.message, new RegExp(`still differs from export ${TARGET}: the CHAP settings of the ACL of ${NODE1} differ`));
      assert.ok(!err.message.includes(NEW_PASSWORD) && !err.message.includes(PASSWORD));
      return true;
    });
    assert.deepEqual(runner.lines, [`targetcli ${TPG}/acls/${NODE1} set auth userid=node1-user password=***`, 'targetcli saveconfig']);
  });

  it('masks secrets in the error, its command line and its stdout when targetcli fails', async () => {
    const { fake, runner, lio, image } = await harness({ scripted: true });
    runner.when(
      (command, args) => command === 'targetcli' && args.includes('auth'),
      (_command, args) => ({ exitCode: 1, stdout: `Parameter password is now '${args.find((a) => a.startsWith('password='))?.slice(9)}'.\nboom\n` }),
    );
    runner.on('targetcli', [], (_command, args) => {
      fake.apply(args);
      return { stdout: '' };
    });
    await assert.rejects(lio.ensureExport(exportSpec(image), signal()), (err: unknown) => {
      assert.ok(err instanceof CommandError);
      assert.equal(err.code, 'INTERNAL');
      assert.equal(err.exitCode, 1);
      for (const text of [err.message, err.commandLine, err.stdout, err.stderr, String(err.cause ?? '')]) assert.ok(!text.includes(PASSWORD), `leaked: ${text}`);
      assert.match(err.stdout, /Parameter password is now '\*\*\*'/);
      return true;
    });
    assertNoSecrets(runner);
    assert.equal(fake.saves, 1, 'what was changed is saved even after a failure');
  });
});

describe('LioTarget.removeTarget', () => {
  it('refuses a target with an ACL session without force, running nothing', async () => {
    const { fake, runner, lio, image } = await harness({ scripted: true });
    buildMatchingTarget(fake, image);
    fake.setSession(TARGET, NODE1, '192.0.2.60');
    await assert.rejects(lio.removeTarget(TARGET, false, signal()), (err: unknown) => {
      assert.ok(err instanceof VcstorError);
      assert.equal(err.code, 'FAILED_PRECONDITION');
      assert.match(err.message, new RegExp(`1 session\\(s\\) \\(${NODE1} at 192\\.0\\.2\\.60\\)`));
      return true;
    });
    assert.deepEqual(runner.lines, []);
  });

  it('counts demo-mode sessions from dynamic_sessions too', async () => {
    const { fake, runner, lio, image } = await harness({ scripted: true });
    buildMatchingTarget(fake, image);
    writeFileSync(path.join(fake.tpgDir(TARGET), 'dynamic_sessions'), `${NODE2}\n\0`);
    await assert.rejects(lio.removeTarget(TARGET, false, signal()), { code: 'FAILED_PRECONDITION', message: new RegExp(NODE2) });
    assert.deepEqual(runner.lines, []);
  });

  it('with force deletes the target and its backstore, then saves', async () => {
    const { fake, runner, lio, image } = await harness();
    const hba = buildMatchingTarget(fake, image);
    fake.setSession(TARGET, NODE1, '192.0.2.60');
    assert.equal(await lio.removeTarget(TARGET, true, signal()), true);
    assert.deepEqual(runner.lines, [`targetcli /iscsi delete ${TARGET}`, `targetcli /backstores/fileio delete ${BACKSTORE}`, 'targetcli saveconfig']);
    assert.ok(!existsSync(path.join(fake.root, 'iscsi', TARGET)));
    assert.ok(!existsSync(path.join(fake.root, 'core', hba)));
    assert.deepEqual(await lio.listTargets(signal()), []);
  });

  it('removes a target without sessions without force, keeping a backstore another target still uses', async () => {
    const { fake, runner, lio, image } = await harness();
    const hba = buildMatchingTarget(fake, image);
    const other = 'iqn.2025-01.io.vcstor:pool1.other';
    fake.createTarget(other);
    fake.addLun(other, 0, hba, BACKSTORE);
    assert.equal(await lio.removeTarget(TARGET, false, signal()), true);
    assert.deepEqual(runner.lines, [`targetcli /iscsi delete ${TARGET}`, 'targetcli saveconfig']);
    assert.ok(existsSync(path.join(fake.root, 'core', hba, BACKSTORE)));
  });

  it('returns false for a missing target without running anything', async () => {
    const { runner, lio } = await harness({ scripted: true });
    assert.equal(await lio.removeTarget(TARGET, false, signal()), false);
    assert.deepEqual(runner.lines, []);
  });
});

describe('LioTarget.listTargets', () => {
  it('reads targets, LUNs, ACLs, CHAP users and sessions from configfs', async () => {
    const { fake, lio, image } = await harness({ scripted: true });
    buildMatchingTarget(fake, image);
    fake.writeAuth(path.join(fake.aclDir(TARGET, NODE1), 'auth'), { userid_mutual: 'target-user', password_mutual: MUTUAL_PASSWORD });
    fake.setSession(TARGET, NODE1, '192.0.2.60');
    const demo = 'iqn.2025-01.io.vcstor:pool1.demo';
    const device = '/dev/vg0/demo';
    fake.createTarget(demo);
    fake.addLun(demo, 3, fake.createStorageObject('iblock', 'demo-bs', device), 'demo-bs');
    fake.setAttributes(demo, { generate_node_acls: '1', authentication: '0', demo_mode_write_protect: '0' });
    fake.writeAuth(path.join(fake.tpgDir(demo), 'auth'), { userid: 'unused-user', password: PASSWORD });
    writeFileSync(path.join(fake.tpgDir(demo), 'dynamic_sessions'), `${NODE2}\n\0${NODE1}\n\0`);
    assert.deepEqual(await lio.listTargets(signal()), [
      {
        iqn: demo,
        luns: [{ lun: 3, backingPath: device }],
        allowedInitiators: [],
        allowedAddresses: [],
        allowAnyInitiator: true,
        chapUsers: [],
        sessions: [
          { initiatorIqn: NODE2, address: '', negotiatedDetail: "the LIO driver reads no session's negotiated parameters; read them from the initiator (IscsiSession.negotiated); the TPG's offer is IscsiTarget.session_params" },
          { initiatorIqn: NODE1, address: '', negotiatedDetail: "the LIO driver reads no session's negotiated parameters; read them from the initiator (IscsiSession.negotiated); the TPG's offer is IscsiTarget.session_params" },
        ],
      },
      {
        iqn: TARGET,
        luns: [{ lun: 0, backingPath: image }],
        allowedInitiators: [NODE1],
        allowedAddresses: [],
        allowAnyInitiator: false,
        chapUsers: ['node1-user'],
        mutualChapUser: 'target-user',
        sessions: [{ initiatorIqn: NODE1, address: '192.0.2.60', negotiatedDetail: "the LIO driver reads no session's negotiated parameters; read them from the initiator (IscsiSession.negotiated); the TPG's offer is IscsiTarget.session_params" }],
      },
    ]);
  });

  it('is empty when LIO is not loaded (no configfs tree)', async () => {
    const lio = new LioTarget({ runner: new RecordingCommandRunner(), configfsRoot: path.join(workDir, 'absent', 'target') });
    assert.deepEqual(await lio.listTargets(signal()), []);
  });
});

describe('LIO helpers', () => {
  it('derives backstore names LIO accepts, short, stable and distinct', () => {
    const digest = createHash('sha256').update(TARGET).digest('hex').slice(0, 10);
    assert.equal(lioBackstoreName(TARGET, 0), `pool1_vol1-l0-${digest}`);
    assert.equal(lioBackstoreName(TARGET, 0), lioBackstoreName(TARGET, 0));
    assert.notEqual(lioBackstoreName(TARGET, 0), lioBackstoreName(TARGET, 1));
    // These reduce to the same text; the digest keeps them apart.
    assert.notEqual(lioBackstoreName('iqn.2025-01.io.vcstor:a.b', 0), lioBackstoreName('iqn.2025-01.io.vcstor:a_b', 0));
    const long = `iqn.2025-01.io.vcstor:${'x'.repeat(150)}.${'y'.repeat(50)}`;
    for (const name of [lioBackstoreName(long, 255), lioBackstoreName('eui.0123456789abcdef', 7), lioBackstoreName('iqn.2025-01.io.vcstor:...', 0)]) {
      assert.match(name, /^[A-Za-z0-9_-]{1,64}$/);
    }
  });

  it('parses session info and dynamic sessions as the kernel prints them', () => {
    assert.equal(parseLioSessionInfo(`No active iSCSI Session for Initiator Endpoint: ${NODE1}\n`), undefined);
    const text = [
      `InitiatorName: ${NODE1}`,
      'InitiatorAlias: ',
      'LIO Session ID: 1   ISID: 0x00023d000001  TSIH: 1  SessionType: Normal',
      'Session State: TARG_SESS_STATE_LOGGED_IN',
      '----------------------[iSCSI Connections]-------------------------',
      'CID: 0  Connection State: TARG_CONN_STATE_LOGGED_IN',
      '   Address 2001:db8::7 TCP  StatSN: 0x1a00d3e6',
      'CID: 1  Connection State: TARG_CONN_STATE_LOGGED_IN',
      '   Address 2001:db8::8 TCP  StatSN: 0x1a00d3e7',
    ].join('\n');
    assert.deepEqual(parseLioSessionInfo(text), { initiatorIqn: NODE1, address: '2001:db8::7' });
    assert.deepEqual(parseLioDynamicSessions(`${NODE1}\n\0${NODE2}\n\0`), [NODE1, NODE2]);
    assert.deepEqual(parseLioDynamicSessions(''), []);
  });

  it('takes a portal as ip:port only, and reports it', () => {
    assert.deepEqual(new LioTarget({ runner: new RecordingCommandRunner() }).portals(), ['0.0.0.0:3260']);
    assert.deepEqual(new LioTarget({ runner: new RecordingCommandRunner(), portal: '[2001:DB8::1]:3261' }).portals(), ['[2001:db8::1]:3261']);
    assert.throws(() => new LioTarget({ runner: new RecordingCommandRunner(), portal: 'storage.example:3260' }), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => new LioTarget({ runner: new RecordingCommandRunner(), portal: '192.0.2.1' }), { code: 'INVALID_ARGUMENT' });
  });
});
