import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  GlusterfsServer,
  parseBrickName,
  parseGlusterCliXml,
  parseGlusterPeerStatus,
  parseGlusterVolumeInfo,
  parseGlusterVolumeStatus,
  parseXml,
  validateBricks,
  validateGlusterVolumeName,
  type GlusterfsServerOptions,
} from '../../agent-storage/drivers/glusterfs.js';
import { STORAGE_DRIVERS } from '../../agent-storage/requirements.js';
import { VcstorError } from '../../common/errors.js';
import { processStartTicks, startInNamespace, stopProcess, waitFor, type DetachedProcess } from '../../common/processes.js';
import { findProgram } from '../../common/requirements.js';
import { ExecaCommandRunner, type CommandResult, type CommandRunner, type RunOptions } from '../../common/runner.js';
import { GlusterfsFuseClient, glusterfsMountArgs, parseGlusterSource } from '../../host-storage/glusterfs-client.js';
import { PARALLEL_FS_CLIENT_DRIVERS } from '../../host-storage/requirements.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';
import { rejects } from '../support/errors.js';

/** Outputs captured from glusterfs 10.3 (Debian 12) in the namespaces of agent-storage/drivers/glusterfs-notes.md. */
const FIXTURES = fixturesDir();

function fixturesDir(): string {
  const besideBuild = fileURLToPath(new URL('../../../test/fixtures/glusterfs/', import.meta.url));
  return existsSync(besideBuild) ? besideBuild : path.join(process.cwd(), 'test', 'fixtures', 'glusterfs');
}

function fixture(name: string): string {
  return readFileSync(path.join(FIXTURES, name), 'utf8');
}

const signal = new AbortController().signal;

function rejectsSync(work: () => unknown): VcstorError {
  try {
    work();
  } catch (err) {
    assert.ok(err instanceof VcstorError, `expected a VcstorError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a throw');
}

describe('parseXml', () => {
  it('reads elements, attributes, mixed text, self-closing tags and entities', () => {
    const root = parseXml('<?xml version="1.0"?>\n<a x="1 &amp; 2"><!-- c --><b/>t&lt;1&gt;<c y=\'q\'>&#65;&#x42;<![CDATA[<raw>]]></c></a>\n');
    assert.equal(root.name, 'a');
    assert.deepEqual(root.attributes, { x: '1 & 2' });
    assert.equal(root.text, 't<1>');
    assert.deepEqual(root.children.map((c) => c.name), ['b', 'c']);
    assert.equal(root.children[1]?.text, 'AB<raw>');
    assert.deepEqual(root.children[1]?.attributes, { y: 'q' });
  });

  it('refuses text that is not well-formed', () => {
    for (const bad of ['<a><b></a>', '<a>', '<a></a><b></b>', 'text', '<a>1 < 2</a>', '']) {
      assert.equal(rejectsSync(() => parseXml(bad)).code, 'INTERNAL', bad);
    }
  });
});

describe('gluster --xml answers (captured from glusterfs 10.3)', () => {
  it('reads the envelope: success, and a failure the CLI exited 0 for', () => {
    const ok = parseGlusterCliXml(fixture('volume-create.xml'));
    assert.deepEqual([ok.opRet, ok.opErrno, ok.opErrstr], [0, 0, '']);
    const failed = parseGlusterCliXml(fixture('volume-create-exists.xml'));
    assert.deepEqual([failed.opRet, failed.opErrno, failed.opErrstr], [-1, 0, 'Volume gv0 already exists']);
    const already = parseGlusterCliXml(fixture('peer-probe-already.xml'));
    assert.deepEqual([already.opRet, already.opErrno, already.output], [0, 2, 'Host 203.0.113.12 port 24007 already in peer list']);
    assert.equal(rejectsSync(() => parseGlusterCliXml('<volInfo/>')).code, 'INTERNAL');
  });

  it('parses volume info: name, state, type, bricks in order, options', () => {
    assert.deepEqual(parseGlusterVolumeInfo(fixture('volume-info-created.xml')), [
      {
        name: 'gv0',
        id: '7f18de62-b8db-4db1-a16f-53588e384827',
        status: 'created',
        type: 'Distribute',
        bricks: [
          { host: '203.0.113.11', path: '/tmp/glx/s1/bricks/gv0' },
          { host: '203.0.113.12', path: '/tmp/glx/s2/bricks/gv0' },
        ],
        options: { 'storage.fips-mode-rchecksum': 'on', 'transport.address-family': 'inet', 'nfs.disable': 'on' },
      },
    ]);
    assert.equal(parseGlusterVolumeInfo(fixture('volume-info-started.xml'))[0]?.status, 'started');
    assert.equal(parseGlusterVolumeInfo(fixture('volume-info-stopped.xml'))[0]?.status, 'stopped');
    assert.equal(parseGlusterVolumeInfo(fixture('volume-info-options.xml'))[0]?.options['performance.strict-o-direct'], 'on');
  });

  it('parses several volumes, an empty pool, and a missing volume as NOT_FOUND', () => {
    const two = parseGlusterVolumeInfo(fixture('volume-info-two.xml'));
    assert.deepEqual(
      two.map((v) => [v.name, v.status, v.bricks.map((b) => `${b.host}:${b.path}`)]),
      [
        ['scratch-b', 'created', ['203.0.113.12:/tmp/glx/s2/bricks/scratch-b']],
        ['shared_a', 'started', ['203.0.113.11:/tmp/glx/s1/bricks/shared_a', '203.0.113.12:/tmp/glx/s2/bricks/shared_a']],
      ],
    );
    assert.deepEqual(parseGlusterVolumeInfo(fixture('volume-info-none.xml')), []);
    const missing = rejectsSync(() => parseGlusterVolumeInfo(fixture('volume-info-missing.xml')));
    assert.equal(missing.code, 'NOT_FOUND');
    assert.match(missing.message, /Volume does not exist/);
  });

  it('parses volume status: bricks online with port and pid, a dead brick, a volume not started', () => {
    assert.deepEqual(parseGlusterVolumeStatus(fixture('volume-status-started.xml')), [
      { host: '203.0.113.11', path: '/tmp/glx/s1/bricks/gv0', online: true, port: 60580, pid: 13535 },
      { host: '203.0.113.12', path: '/tmp/glx/s2/bricks/gv0', online: true, port: 51097, pid: 13553 },
    ]);
    const down = parseGlusterVolumeStatus(fixture('volume-status-brick-down.xml'));
    assert.deepEqual(down.map((b) => [b.host, b.online, b.port, b.pid]), [
      ['203.0.113.11', true, 55554, 16754],
      ['203.0.113.12', false, undefined, undefined],
    ]);
    assert.equal(parseGlusterVolumeStatus(fixture('volume-status-all.xml')).length, 2);
    assert.equal(rejectsSync(() => parseGlusterVolumeStatus(fixture('volume-status-stopped.xml'))).code, 'FAILED_PRECONDITION');
  });

  it('parses peer status and pool list', () => {
    assert.deepEqual(parseGlusterPeerStatus(fixture('peer-status.xml')), [
      { uuid: 'f4e681ea-9cb1-410d-932f-dcca4c99a1db', hostname: '203.0.113.12', hostnames: ['203.0.113.12'], connected: true, state: 'Peer in Cluster' },
    ]);
    assert.deepEqual(parseGlusterPeerStatus(fixture('pool-list.xml')).map((p) => p.hostname), ['203.0.113.12', 'localhost']);
    assert.deepEqual(parseGlusterPeerStatus(fixture('peer-status-none.xml')), []);
  });

  it('splits bricks and mount sources', () => {
    assert.deepEqual(parseBrickName('203.0.113.11:/tmp/glx/s1/bricks/gv0'), { host: '203.0.113.11', path: '/tmp/glx/s1/bricks/gv0' });
    assert.equal(parseBrickName('no-path'), undefined);
    assert.deepEqual(parseGlusterSource('203.0.113.11:gv0'), { server: '203.0.113.11', volume: 'gv0' });
    assert.deepEqual(parseGlusterSource('srv1.example:/gv0'), { server: 'srv1.example', volume: 'gv0' });
    assert.equal(parseGlusterSource('gv0'), undefined);
  });
});

describe('validation', () => {
  it('takes gluster volume names of A-Z a-z 0-9 _ -, and refuses others and reserved words', () => {
    for (const ok of ['gv0', 'shared_a', 'scratch-b', 'A1', 'x'.repeat(64)]) assert.equal(validateGlusterVolumeName('name', ok), ok);
    for (const bad of ['', '-x', '_x', 'a.b', 'a b', 'vol;rm', 'x'.repeat(65), 'all', 'force', 'Volume']) {
      assert.equal(rejectsSync(() => validateGlusterVolumeName('name', bad)).code, 'INVALID_ARGUMENT', bad);
    }
  });

  it('takes bricks on IPv4 addresses or host names at absolute normal paths, each once', () => {
    assert.deepEqual(validateBricks([{ host: 'srv1.example', path: '/srv/bricks/gv0' }, { host: '203.0.113.12', path: '/srv/bricks/gv0' }]).length, 2);
    const bad: Array<Array<{ host: string; path: string }>> = [
      [],
      [{ host: '203.0.113.11', path: 'relative' }],
      [{ host: '203.0.113.11', path: '/' }],
      [{ host: '203.0.113.11', path: '/srv/../etc' }],
      [{ host: '203.0.113.11', path: '/srv/a b' }],
      [{ host: '203.0.113.11', path: '/srv/a:b' }],
      [{ host: 'fd00::1', path: '/srv/b' }],
      [{ host: '-oops', path: '/srv/b' }],
      [{ host: 'h;rm', path: '/srv/b' }],
      [
        { host: 'srv1', path: '/srv/b' },
        { host: 'SRV1', path: '/srv/b' },
      ],
    ];
    for (const bricks of bad) assert.equal(rejectsSync(() => validateBricks(bricks)).code, 'INVALID_ARGUMENT', JSON.stringify(bricks));
  });
});

const SOCKET = '/run/vcstor/glusterd.socket';
const CLI_LOG = '/var/log/vcstor/gluster-cli.log';
const G = `gluster --glusterd-sock=${SOCKET} --log-file=${CLI_LOG} --mode=script`;
const BRICKS = [
  { host: '203.0.113.11', path: '/tmp/glx/s1/bricks/gv0' },
  { host: '203.0.113.12', path: '/tmp/glx/s2/bricks/gv0' },
];

function server(options: Partial<GlusterfsServerOptions> = {}): { runner: RecordingCommandRunner; gluster: GlusterfsServer } {
  const runner = new RecordingCommandRunner();
  return { runner, gluster: new GlusterfsServer({ runner, socketPath: SOCKET, cliLogFile: CLI_LOG, ...options }) };
}

/** Answer `gluster ... <words...> --xml` with a fixture. */
function onCli(runner: RecordingCommandRunner, words: string[], file: string): void {
  runner.when((command, args) => {
    const at = args.indexOf('--mode=script') + 1;
    return command === 'gluster' && at > 0 && words.every((w, i) => args[at + i] === w);
  }, { stdout: fixture(file) });
}

describe('GlusterfsServer: the command lines', () => {
  it('creates a distributed volume over tcp after looking for one of that name', async () => {
    const { runner, gluster } = server();
    onCli(runner, ['volume', 'info', 'gv0'], 'volume-info-missing.xml');
    onCli(runner, ['volume', 'create'], 'volume-create.xml');
    assert.equal(await gluster.createVolume('gv0', BRICKS, signal), true);
    assert.deepEqual(runner.lines, [
      `${G} volume info gv0 --xml`,
      `${G} volume create gv0 transport tcp 203.0.113.11:/tmp/glx/s1/bricks/gv0 203.0.113.12:/tmp/glx/s2/bricks/gv0 --xml`,
    ]);
    assert.ok(runner.calls.every((c) => c.options.timeoutMs === 60_000));
  });

  it('adds force when configured, and uses glusterd\'s default socket without a log option', async () => {
    const runner = new RecordingCommandRunner();
    const gluster = new GlusterfsServer({ runner, force: true });
    onCli(runner, ['volume', 'info'], 'volume-info-missing.xml');
    onCli(runner, ['volume', 'create'], 'volume-create.xml');
    assert.equal(await gluster.createVolume('gv0', BRICKS, signal), true);
    assert.equal(
      runner.lines[1],
      'gluster --glusterd-sock=/var/run/glusterd.socket --mode=script volume create gv0 transport tcp 203.0.113.11:/tmp/glx/s1/bricks/gv0 203.0.113.12:/tmp/glx/s2/bricks/gv0 force --xml',
    );
  });

  it('is idempotent: the same bricks in any state is success; other bricks are ALREADY_EXISTS', async () => {
    const { runner, gluster } = server();
    onCli(runner, ['volume', 'info', 'gv0'], 'volume-info-created.xml');
    assert.equal(await gluster.createVolume('gv0', BRICKS, signal), false);
    assert.deepEqual(runner.lines, [`${G} volume info gv0 --xml`]);
    const other = await rejects(gluster.createVolume('gv0', [BRICKS[1]!, BRICKS[0]!], signal));
    assert.equal(other.code, 'ALREADY_EXISTS');
    assert.match(other.message, /already exists with bricks 203\.0\.113\.11:\/tmp\/glx\/s1\/bricks\/gv0 203\.0\.113\.12/);
  });

  it('a volume made between the look and the create is compared, not an error', async () => {
    const { runner, gluster } = server();
    let looks = 0;
    runner.when((_c, args) => args.includes('info'), () => ({ stdout: fixture(looks++ === 0 ? 'volume-info-missing.xml' : 'volume-info-created.xml') }));
    onCli(runner, ['volume', 'create'], 'volume-create-exists.xml');
    assert.equal(await gluster.createVolume('gv0', BRICKS, signal), false);
  });

  it("maps glusterd's refusals of a create to FAILED_PRECONDITION saying what to do", async () => {
    const cases: Array<[string, RegExp]> = [
      ['volume-create-root-partition.xml', /root filesystem.*force/],
      ['volume-create-brick-in-use.xml', /marks of an earlier volume/],
      ['volume-create-brick-of-other-volume.xml', /brick of another volume/],
      ['volume-create-unknown-host.xml', /not a connected peer of this pool: probe it first/],
    ];
    for (const [file, message] of cases) {
      const { runner, gluster } = server();
      onCli(runner, ['volume', 'info'], 'volume-info-missing.xml');
      onCli(runner, ['volume', 'create'], file);
      const err = await rejects(gluster.createVolume('gv0', BRICKS, signal));
      assert.equal(err.code, 'FAILED_PRECONDITION', file);
      assert.match(err.message, message, file);
    }
  });

  it('starts a volume; started already is false; a missing one is NOT_FOUND', async () => {
    for (const [file, expected] of [['volume-start.xml', true], ['volume-start-already.xml', false]] as const) {
      const { runner, gluster } = server();
      onCli(runner, ['volume', 'start'], file);
      assert.equal(await gluster.startVolume('gv0', signal), expected);
      assert.deepEqual(runner.lines, [`${G} volume start gv0 --xml`]);
      assert.equal(runner.calls[0]?.options.timeoutMs, 130_000);
    }
    const { runner, gluster } = server();
    onCli(runner, ['volume', 'start'], 'volume-stop-missing.xml');
    assert.equal((await rejects(gluster.startVolume('gv0', signal))).code, 'NOT_FOUND');
  });

  it('deletes a volume: its bricks found (for their sockets), stop, then delete; stopped already; gone already is false', async () => {
    const started = server();
    onCli(started.runner, ['volume', 'status'], 'volume-status-started.xml');
    onCli(started.runner, ['volume', 'stop'], 'volume-stop.xml');
    onCli(started.runner, ['volume', 'delete'], 'volume-delete.xml');
    assert.equal(await started.gluster.deleteVolume('gv0', signal), true);
    assert.deepEqual(started.runner.lines, [`${G} volume status gv0 --xml`, `${G} volume stop gv0 --xml`, `${G} volume delete gv0 --xml`]);

    const stopped = server();
    onCli(stopped.runner, ['volume', 'stop'], 'volume-stop-already.xml');
    onCli(stopped.runner, ['volume', 'delete'], 'volume-delete.xml');
    assert.equal(await stopped.gluster.deleteVolume('gv0', signal), true);

    const gone = server();
    onCli(gone.runner, ['volume', 'stop'], 'volume-stop-missing.xml');
    assert.equal(await gone.gluster.deleteVolume('gv0', signal), false);
    assert.deepEqual(gone.runner.lines.filter((l) => !l.includes('volume status')), [`${G} volume stop gv0 --xml`]);

    const raced = server();
    onCli(raced.runner, ['volume', 'stop'], 'volume-stop-already.xml');
    onCli(raced.runner, ['volume', 'delete'], 'volume-delete-missing.xml');
    assert.equal(await raced.gluster.deleteVolume('gv0', signal), false);
  });

  it('probes a peer and waits until it is a connected peer in cluster', async () => {
    const { runner, gluster } = server();
    onCli(runner, ['peer', 'probe'], 'peer-probe.xml');
    onCli(runner, ['peer', 'status'], 'peer-status.xml');
    assert.equal(await gluster.probePeer('203.0.113.12', signal), true);
    assert.deepEqual(runner.lines, [`${G} peer probe 203.0.113.12 --xml`, `${G} peer status --xml`]);
  });

  it('a peer already in the pool, or this host, is false; an unreachable one UNAVAILABLE', async () => {
    const already = server();
    onCli(already.runner, ['peer', 'probe'], 'peer-probe-already.xml');
    onCli(already.runner, ['peer', 'status'], 'peer-status.xml');
    assert.equal(await already.gluster.probePeer('203.0.113.12', signal), false);

    const self = server();
    onCli(self.runner, ['peer', 'probe'], 'peer-probe-self.xml');
    assert.equal(await self.gluster.probePeer('203.0.113.11', signal), false);
    assert.equal(self.runner.lines.length, 1);

    const away = server();
    onCli(away.runner, ['peer', 'probe'], 'peer-probe-unreachable.xml');
    const err = await rejects(away.gluster.probePeer('203.0.113.99', signal));
    assert.equal(err.code, 'UNAVAILABLE');
    assert.match(err.message, /Transport endpoint is not connected/);
  });

  it('a probed peer that never settles is UNAVAILABLE after peerSettleMs', async () => {
    const { runner, gluster } = server({ peerSettleMs: 300 });
    onCli(runner, ['peer', 'probe'], 'peer-probe.xml');
    onCli(runner, ['peer', 'status'], 'peer-status-none.xml');
    const err = await rejects(gluster.probePeer('203.0.113.12', signal));
    assert.equal(err.code, 'UNAVAILABLE');
    assert.match(err.message, /not a connected "Peer in Cluster"/);
  });

  it('detaches a peer; not a peer is false; a peer with bricks is FAILED_PRECONDITION', async () => {
    for (const [file, expected] of [['peer-detach.xml', true], ['peer-detach-missing.xml', false]] as const) {
      const { runner, gluster } = server();
      onCli(runner, ['peer', 'detach'], file);
      assert.equal(await gluster.detachPeer('203.0.113.12', signal), expected);
      assert.deepEqual(runner.lines, [`${G} peer detach 203.0.113.12 --xml`]);
    }
    const { runner, gluster } = server();
    onCli(runner, ['peer', 'detach'], 'peer-detach-busy.xml');
    const err = await rejects(gluster.detachPeer('203.0.113.12', signal));
    assert.equal(err.code, 'FAILED_PRECONDITION');
    assert.match(err.message, /still holds bricks/);
  });

  it('lists volumes and brick status; a volume not started has no brick status', async () => {
    const { runner, gluster } = server();
    onCli(runner, ['volume', 'info'], 'volume-info-two.xml');
    onCli(runner, ['volume', 'status', 'shared_a'], 'volume-status-brick-down.xml');
    onCli(runner, ['volume', 'status', 'scratch-b'], 'volume-status-stopped.xml');
    assert.deepEqual((await gluster.listVolumes(signal)).map((v) => v.name), ['scratch-b', 'shared_a']);
    assert.deepEqual((await gluster.volumeStatus('shared_a', signal)).map((b) => b.online), [true, false]);
    assert.deepEqual(await gluster.volumeStatus('scratch-b', signal), []);
    assert.deepEqual(runner.lines, [`${G} volume info --xml`, `${G} volume status shared_a --xml`, `${G} volume status scratch-b --xml`]);
  });

  it('glusterd not answering on its socket is UNAVAILABLE; a lock clash ABORTED', async () => {
    const { runner, gluster } = server();
    runner.on('gluster', [], { exitCode: 1, stdout: fixture('no-glusterd.stdout') });
    const err = await rejects(gluster.listVolumes(signal));
    assert.equal(err.code, 'UNAVAILABLE');
    assert.match(err.message, /glusterd is not answering on \/run\/vcstor\/glusterd.socket/);

    const busy = server();
    busy.runner.on('gluster', [], {
      stdout: '<?xml version="1.0"?><cliOutput><opRet>-1</opRet><opErrno>30800</opErrno><opErrstr>Another transaction is in progress for gv0. Please try again after some time.</opErrstr></cliOutput>',
    });
    const clash = await rejects(busy.gluster.startVolume('gv0', signal));
    assert.equal(clash.code, 'ABORTED');
    assert.equal(clash.retryable, true);
  });

  it('validates before running anything', async () => {
    const { runner, gluster } = server();
    assert.equal((await rejects(gluster.createVolume('gv0;rm', BRICKS, signal))).code, 'INVALID_ARGUMENT');
    assert.equal((await rejects(gluster.createVolume('gv0', [{ host: '203.0.113.11', path: 'x' }], signal))).code, 'INVALID_ARGUMENT');
    assert.equal((await rejects(gluster.startVolume('-x', signal))).code, 'INVALID_ARGUMENT');
    assert.equal((await rejects(gluster.deleteVolume('all', signal))).code, 'INVALID_ARGUMENT');
    assert.equal((await rejects(gluster.probePeer('--remote-host=x', signal))).code, 'INVALID_ARGUMENT');
    assert.deepEqual(runner.lines, []);
    assert.equal(rejectsSync(() => new GlusterfsServer({ runner, socketPath: 'relative.socket' })).code, 'INVALID_ARGUMENT');
  });
});

describe('GlusterfsFuseClient: the command lines', () => {
  let workDir = '';
  let caseNumber = 0;
  /** A real mountinfo line of a glusterfs mount (test/fixtures/glusterfs/mountinfo-glusterfs.txt). */
  const captured = fixture('mountinfo-glusterfs.txt').trim();
  const base = '22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro\n';

  before(async () => {
    workDir = await mkdtemp(path.join(tmpdir(), 'vcstor-gluster-client-'));
  });
  after(async () => {
    await rm(workDir, { recursive: true, force: true });
  });

  function setup(lines: string[] = []) {
    caseNumber += 1;
    const dir = path.join(workDir, `case-${caseNumber}`);
    mkdirSync(path.join(dir, 'proc'), { recursive: true });
    const mountinfo = path.join(dir, 'mountinfo');
    writeFileSync(mountinfo, base + lines.map((l) => `${l}\n`).join(''));
    const runner = new RecordingCommandRunner();
    const client = new GlusterfsFuseClient({ runner, stateDir: path.join(dir, 'state'), mountinfoPath: mountinfo, procPath: path.join(dir, 'proc') });
    return { dir, mountinfo, runner, client, mnt: path.join(dir, 'mnt') };
  }

  const line = (mountpoint: string, source: string, fsType = 'fuse.glusterfs') =>
    `50 22 0:39 / ${mountpoint} rw,relatime - ${fsType} ${source} rw,user_id=0,group_id=0,default_permissions,allow_other,max_read=131072`;

  it('the captured mountinfo line lists as a glusterfs mount', async () => {
    const { client } = setup([captured]);
    assert.deepEqual(await client.list(['/tmp/glx']), [{ server: '203.0.113.11', volume: 'gv0', mountpoint: '/tmp/glx/c1/mnt', options: ['rw', 'relatime'] }]);
    assert.deepEqual(await client.list(['/srv']), []);
  });

  it('mounts with glusterfs run directly (no shell), then stats the mount', async () => {
    const { mountinfo, runner, client, mnt } = setup();
    const mountpoint = path.join(mnt, 'shared');
    runner.on('glusterfs', [], (_c, args) => {
      appendFileSync(mountinfo, `${line(args[args.length - 1]!, '203.0.113.11:gv0')}\n`);
      return {};
    });
    runner.on('stat', [], { stdout: '1\n' });
    assert.equal(await client.mount({ server: '203.0.113.11', backupServers: ['203.0.113.12'], volume: 'gv0', mountpoint }, signal), true);
    const files = client.clientFiles(mountpoint);
    assert.deepEqual(runner.lines, [
      `glusterfs --process-name fuse --volfile-server=203.0.113.11 --volfile-server=203.0.113.12 --volfile-id=gv0 --log-file=${files.logFile} --pid-file=${files.pidFile} ${mountpoint}`,
      `stat --format=%i ${mountpoint}`,
    ]);
    assert.deepEqual(runner.calls.map((c) => c.options.timeoutMs), [60_000, 30_000]);
    assert.ok(existsSync(mountpoint));
    assert.match(path.basename(files.logFile), /shared-[0-9a-f]{12}\.log$/);
    // Again: already mounted from the same server, nothing runs.
    assert.equal(await client.mount({ server: '203.0.113.11', volume: 'gv0', mountpoint: `${mountpoint}/` }, signal), false);
    assert.equal(runner.lines.length, 2);
  });

  it('read-only adds --read-only; bad input is INVALID_ARGUMENT before anything runs', async () => {
    const files = { logFile: '/l', pidFile: '/p' };
    assert.ok(glusterfsMountArgs({ server: 's1', volume: 'gv0', mountpoint: '/m', readOnly: true }, files).includes('--read-only'));
    const { runner, client, mnt } = setup();
    const bad = [
      { server: '-s1', volume: 'gv0', mountpoint: path.join(mnt, 'a') },
      { server: 's1', volume: 'gv0,x', mountpoint: path.join(mnt, 'a') },
      { server: 's1', volume: 'gv0', mountpoint: 'relative' },
      { server: 's1', volume: 'gv0', mountpoint: '/' },
      { server: 's1', backupServers: ['a b'], volume: 'gv0', mountpoint: path.join(mnt, 'a') },
    ];
    for (const spec of bad) assert.equal((await rejects(client.mount(spec, signal))).code, 'INVALID_ARGUMENT', JSON.stringify(spec));
    assert.deepEqual(runner.lines, []);
  });

  it('refuses a mount point that has something else (or another volume) mounted', async () => {
    const mountpoint = path.join(workDir, 'occupied');
    const { runner, client } = setup([line(mountpoint, '203.0.113.11:other'), `51 22 0:40 / ${mountpoint}2 rw - ext4 /dev/vdb rw`]);
    const other = await rejects(client.mount({ server: '203.0.113.11', volume: 'gv0', mountpoint }, signal));
    assert.equal(other.code, 'FAILED_PRECONDITION');
    assert.match(other.message, /already has 203\.0\.113\.11:other \(fuse\.glusterfs\) mounted/);
    assert.equal((await rejects(client.mount({ server: '203.0.113.11', volume: 'gv0', mountpoint: `${mountpoint}2` }, signal))).code, 'FAILED_PRECONDITION');
    assert.deepEqual(runner.lines, []);
  });

  it('a volume whose bricks cannot be reached is UNAVAILABLE and is unmounted again', async () => {
    const { mountinfo, runner, client, mnt } = setup();
    const mountpoint = path.join(mnt, 'stopped');
    runner.on('glusterfs', [], (_c, args) => {
      appendFileSync(mountinfo, `${line(args[args.length - 1]!, '203.0.113.11:gv1')}\n`);
      return {};
    });
    runner.on('stat', [], { exitCode: 1, stderr: `stat: cannot statx '${mountpoint}': Transport endpoint is not connected\n` });
    runner.on('umount', [], () => {
      writeFileSync(mountinfo, base);
      return {};
    });
    const err = await rejects(client.mount({ server: '203.0.113.11', volume: 'gv1', mountpoint }, signal));
    assert.equal(err.code, 'UNAVAILABLE');
    assert.match(err.message, /bricks cannot be reached \(is the volume started\?\): .*Transport endpoint is not connected/);
    assert.deepEqual(runner.lines.slice(-1), [`umount ${mountpoint}`]);
  });

  it("reads glusterfs' log to tell a missing volume (NOT_FOUND) from an unreachable server (UNAVAILABLE)", async () => {
    const { runner, client, mnt } = setup();
    runner.on('glusterfs', [], (_c, args) => {
      const logFile = args.find((a) => a.startsWith('--log-file='))!.slice('--log-file='.length);
      appendFileSync(logFile, '[2026-12-07 16:38:02.421165 +0000] E [glusterfsd-mgmt.c:2371:mgmt_getspec_cbk] 0-mgmt: failed to fetch volume file (key:nope)\n');
      return { exitCode: 2 };
    });
    const missing = await rejects(client.mount({ server: '203.0.113.11', volume: 'nope', mountpoint: path.join(mnt, 'n') }, signal));
    assert.equal(missing.code, 'NOT_FOUND');
    assert.match(missing.message, /has no volume nope.*failed to fetch volume file/);

    const away = setup();
    away.runner.on('glusterfs', [], { exitCode: 107 });
    assert.equal((await rejects(away.client.mount({ server: '203.0.113.99', volume: 'gv0', mountpoint: path.join(away.mnt, 'u') }, signal))).code, 'UNAVAILABLE');
  });

  it('unmounts; nothing there is false; something else there is left alone; busy is FAILED_PRECONDITION', async () => {
    const mountpoint = path.join(workDir, 'mounted');
    const { mountinfo, runner, client } = setup([line(mountpoint, '203.0.113.11:gv0')]);
    runner.on('umount', [], () => {
      writeFileSync(mountinfo, base);
      return {};
    });
    assert.equal(await client.unmount(mountpoint, signal), true);
    assert.equal(await client.unmount(mountpoint, signal), false);
    assert.deepEqual(runner.lines, [`umount ${mountpoint}`]);

    const ext4 = setup([`51 22 0:40 / ${mountpoint} rw - ext4 /dev/vdb rw`]);
    assert.equal((await rejects(ext4.client.unmount(mountpoint, signal))).code, 'FAILED_PRECONDITION');

    const busy = setup([line(mountpoint, '203.0.113.11:gv0')]);
    busy.runner.on('umount', [], { exitCode: 32, stderr: `umount: ${mountpoint}: target is busy.\n` });
    const err = await rejects(busy.client.unmount(mountpoint, signal));
    assert.equal(err.code, 'FAILED_PRECONDITION');
    assert.match(err.message, /is busy/);
  });
});

describe('requirements', () => {
  it('lists glusterfs for parallel-fs (storage) and parallel-fs-client (guests)', () => {
    assert.deepEqual(
      STORAGE_DRIVERS.filter((d) => d.concern === 'parallel-fs').map((d) => [d.driver, d.programs]),
      [['glusterfs', ['gluster', 'glusterd', 'glusterfsd']]],
    );
    assert.deepEqual(
      PARALLEL_FS_CLIENT_DRIVERS.map((d) => [d.concern, d.driver, d.programs, d.kernelFilesystems]),
      [['parallel-fs-client', 'glusterfs', ['glusterfs', 'umount', 'stat'], ['fuse']]],
    );
  });
});

// ---------------------------------------------------------------------------------------
// For real: two glusterd in two network namespaces, a FUSE client in a third.

const isRoot = process.getuid?.() === 0;
const glusterd = await findProgram('glusterd');
const skipReal = !isRoot
  ? 'needs root (network namespaces, glusterd, a FUSE mount)'
  : !glusterd
    ? 'glusterd is not installed (apt-get install --no-install-recommends glusterfs-server glusterfs-client)'
    : !existsSync('/dev/fuse')
      ? 'no /dev/fuse'
      : false;

/** Runs every command inside a network namespace, as the guest agent would run in its guest. */
class NamespaceRunner implements CommandRunner {
  private readonly real = new ExecaCommandRunner();
  constructor(private readonly namespace: string) {}
  run(command: string, args: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
    return this.real.run('nsenter', [`--net=/run/netns/${this.namespace}`, '--', command, ...args], options);
  }
}

describe('for real: a distributed volume over two glusterd, mounted through FUSE', { skip: skipReal, timeout: 60_000 }, () => {
  const run = new ExecaCommandRunner();
  // Names of our own: glx-<id>-..., veths glx<id><host><h|b> (at most 15 characters).
  const id = (process.pid % 46656).toString(36);
  const bridge = `glx-${id}-sw`;
  const hosts = [
    { name: 's1', ns: `glx-${id}-s1`, address: '203.0.113.101' },
    { name: 's2', ns: `glx-${id}-s2`, address: '203.0.113.102' },
    { name: 'c1', ns: `glx-${id}-c1`, address: '203.0.113.121' },
  ];
  const VOLUME = 'vcstor_par';
  let dir = '';
  const daemons: DetachedProcess[] = [];
  const brickSockets = new Set<string>();
  const tmpfsMounts: string[] = [];
  const namespaces: string[] = [];
  /** Shared paths glusterd makes whatever its working directory: removed after if we made them. */
  const sharedPaths = ['/var/run/gluster/snaps', '/var/lib/glusterd/geo-replication/gsyncd_template.conf', '/var/lib/glusterd/geo-replication', '/var/lib/glusterd/ss_brick'];
  const preexisting = new Set(sharedPaths.filter((p) => existsSync(p)));
  const timings: Record<string, number> = {};
  const timed = async <T>(what: string, work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await work();
    } finally {
      timings[what] = Math.round(performance.now() - started);
    }
  };
  const glusterdFiles = (host: string) => ({
    lib: path.join(dir, host, 'lib'),
    run: path.join(dir, host, 'run'),
    log: path.join(dir, host, 'log'),
    bricks: path.join(dir, host, 'bricks'),
    socket: path.join(dir, host, 'run', 'glusterd.socket'),
  });
  const serverDriver = (host: string) =>
    new GlusterfsServer({ runner: run, socketPath: glusterdFiles(host).socket, cliLogFile: path.join(glusterdFiles(host).log, 'cli.log') });

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-glx-'));
    await timed('namespaces', async () => {
      await run.run('ip', ['netns', 'add', bridge]);
      namespaces.push(bridge);
      await run.run('ip', ['-n', bridge, 'link', 'add', 'br0', 'type', 'bridge']);
      await run.run('ip', ['-n', bridge, 'link', 'set', 'br0', 'up']);
      for (const h of hosts) {
        const veth = `glx${id}${h.name}`;
        await run.run('ip', ['netns', 'add', h.ns]);
        namespaces.push(h.ns);
        await run.run('ip', ['link', 'add', `${veth}h`, 'netns', h.ns, 'type', 'veth', 'peer', 'name', `${veth}b`, 'netns', bridge]);
        await run.run('ip', ['-n', bridge, 'link', 'set', `${veth}b`, 'master', 'br0', 'up']);
        await run.run('ip', ['-n', h.ns, 'addr', 'add', `${h.address}/24`, 'dev', `${veth}h`]);
        await run.run('ip', ['-n', h.ns, 'link', 'set', `${veth}h`, 'up']);
        await run.run('ip', ['-n', h.ns, 'link', 'set', 'lo', 'up']);
      }
    });
    // Bricks on a tmpfs each: equal sizes (DHT weighs bricks by size), not the root
    // filesystem (which glusterd refuses without force), no loop device.
    for (const h of hosts.slice(0, 2)) {
      const f = glusterdFiles(h.name);
      for (const d of [f.lib, f.run, f.log, f.bricks]) mkdirSync(d, { recursive: true });
      await run.run('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=0755', `glx-${id}-${h.name}`, f.bricks]);
      tmpfsMounts.push(f.bricks);
    }
    await timed('glusterd start (both)', () =>
      Promise.all(
        hosts.slice(0, 2).map(async (h) => {
          const f = glusterdFiles(h.name);
          const daemon = await startInNamespace('glusterd', h.name, h.ns, glusterdCommand(f, h.address), path.join(f.log, 'glusterd.out'));
          daemons.push(daemon);
          await waitFor(
            `glusterd in ${h.ns}`,
            async () => (await run.run('gluster', [`--glusterd-sock=${f.socket}`, `--log-file=${path.join(f.log, 'cli.log')}`, '--mode=script', 'peer', 'status'], { timeoutMs: 5_000 })).exitCode === 0,
            20_000,
            100,
          );
        }),
      ),
    );
  });

  after(async () => {
    // Everything we made, each step on its own: a failure in one leaves the others to run.
    const attempt = async (work: () => Promise<unknown>) => {
      try {
        await work();
      } catch {
        // best effort; the checks below say what is left
      }
    };
    const mnt = path.join(dir, 'c1', 'mnt');
    await attempt(() => new GlusterfsFuseClient({ runner: run, stateDir: path.join(dir, 'c1', 'state') }).unmount(mnt, new AbortController().signal));
    await attempt(() => run.run('umount', ['-l', mnt], { okExitCodes: [0, 32] }));
    // Brick processes by their pid files, and the sockets they made in /var/run/gluster.
    for (const h of hosts.slice(0, 2)) {
      const vols = path.join(glusterdFiles(h.name).run, 'vols');
      for (const volume of await readdir(vols).catch(() => [] as string[])) {
        for (const file of (await readdir(path.join(vols, volume)).catch(() => [] as string[])).filter((f) => f.endsWith('.pid'))) {
          const pid = Number((await readFile(path.join(vols, volume, file), 'utf8').catch(() => '')).trim());
          if (!Number.isInteger(pid) || pid <= 1) continue;
          await attempt(async () => {
            const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
            if (!argv.some((a) => a.includes(glusterdFiles(h.name).bricks))) return; // not our brick
            const socket = argv[argv.indexOf('-S') + 1];
            if (socket) brickSockets.add(socket);
            const startTicks = await processStartTicks(pid);
            if (startTicks !== undefined) await stopProcess({ pid, startTicks }, 3_000);
          });
        }
      }
    }
    for (const daemon of daemons) await attempt(() => stopProcess(daemon, 3_000));
    for (const socket of brickSockets) await attempt(() => rm(socket, { force: true }));
    for (const mount of tmpfsMounts) await attempt(() => run.run('umount', [mount]));
    for (const ns of namespaces.reverse()) await attempt(() => run.run('ip', ['netns', 'del', ns]));
    for (const p of sharedPaths) {
      if (preexisting.has(p)) continue;
      await attempt(async () => ((await stat(p)).isDirectory() ? rmdir(p) : rm(p)));
    }
    await attempt(() => rm(dir, { recursive: true, force: true }));
  });

  it('probe, create, start, mount in a third namespace, write, see the files on both bricks, then take it all down', async (t) => {
    const [s1, s2] = [hosts[0]!, hosts[1]!];
    const pool = serverDriver('s1');
    const bricks = [s1, s2].map((h) => ({ host: h.address, path: path.join(glusterdFiles(h.name).bricks, VOLUME) }));
    const guestState = path.join(dir, 'c1', 'state');
    const client = new GlusterfsFuseClient({ runner: new NamespaceRunner(hosts[2]!.ns), stateDir: guestState });
    const mnt = path.join(dir, 'c1', 'mnt');

    assert.equal(await timed('peer probe', () => pool.probePeer(s2.address, signal)), true);
    assert.equal(await pool.probePeer(s2.address, signal), false, 'probing again changes nothing');
    assert.deepEqual((await serverDriver('s2').listPeers(signal)).map((p) => [p.hostname, p.connected, p.state]), [[s1.address, true, 'Peer in Cluster']]);

    assert.equal(await timed('volume create', () => pool.createVolume(VOLUME, bricks, signal)), true);
    assert.equal(await pool.createVolume(VOLUME, bricks, signal), false);
    assert.equal((await rejects(pool.createVolume(VOLUME, [bricks[0]!], signal))).code, 'ALREADY_EXISTS');
    assert.equal(await timed('volume start', () => pool.startVolume(VOLUME, signal)), true);
    assert.equal(await pool.startVolume(VOLUME, signal), false);
    // The other server's glusterd sees the same volume.
    assert.deepEqual((await serverDriver('s2').listVolumes(signal)).map((v) => [v.name, v.status, v.bricks]), [[VOLUME, 'started', bricks]]);
    const status = await pool.volumeStatus(VOLUME, signal);
    assert.deepEqual(status.map((b) => [b.host, b.online]), [[s1.address, true], [s2.address, true]]);
    for (const b of status) {
      const argv = (await readFile(`/proc/${b.pid}/cmdline`, 'utf8')).split('\0');
      brickSockets.add(argv[argv.indexOf('-S') + 1]!);
    }

    assert.equal(await timed('mount', () => client.mount({ server: s1.address, volume: VOLUME, mountpoint: mnt }, signal)), true);
    assert.equal(await client.mount({ server: s1.address, volume: VOLUME, mountpoint: mnt }, signal), false);
    assert.deepEqual((await client.list([dir])).map((m) => [m.server, m.volume, m.mountpoint]), [[s1.address, VOLUME, mnt]]);
    const clientPid = Number((await readFile(client.clientFiles(mnt).pidFile, 'utf8')).trim());
    const clientTicks = await processStartTicks(clientPid);
    assert.ok(clientTicks !== undefined, 'the glusterfs client runs');

    await timed('write 16 files', async () => {
      for (let i = 0; i < 16; i++) await writeFile(path.join(mnt, `file-${i}`), `hello ${i}\n`);
    });
    const onBrick = await Promise.all(bricks.map(async (b) => (await readdir(b.path)).filter((f) => f.startsWith('file-'))));
    assert.deepEqual([...onBrick[0]!, ...onBrick[1]!].sort(), Array.from({ length: 16 }, (_, i) => `file-${i}`).sort(), 'each file is on exactly one brick');
    assert.ok(onBrick[0]!.length > 0 && onBrick[1]!.length > 0, `files on both bricks (${onBrick[0]!.length} + ${onBrick[1]!.length})`);
    const someFile = onBrick[1]![0]!;
    assert.equal(await readFile(path.join(bricks[1]!.path, someFile), 'utf8'), `hello ${someFile.slice(5)}\n`);

    assert.equal(await timed('unmount', () => client.unmount(mnt, signal)), true);
    assert.equal(await client.unmount(mnt, signal), false);
    assert.notEqual(await processStartTicks(clientPid), clientTicks, 'the glusterfs client process is gone');
    assert.deepEqual(await client.list([dir]), []);

    assert.equal(await timed('volume delete', () => pool.deleteVolume(VOLUME, signal)), true);
    assert.equal(await pool.deleteVolume(VOLUME, signal), false);
    assert.deepEqual(await pool.listVolumes(signal), []);
    assert.equal(await timed('peer detach', () => pool.detachPeer(s2.address, signal)), true);
    assert.equal(await pool.detachPeer(s2.address, signal), false);
    t.diagnostic(`timings (ms): ${JSON.stringify(timings)}`);
  });
});

/** How the lab (or a host) starts glusterd for one storage host: all of its state under its own directories. */
function glusterdCommand(f: { lib: string; run: string; log: string; socket: string }, address: string): string[] {
  return [
    'glusterd',
    '-N',
    '-p', path.join(f.run, 'glusterd.pid'),
    '-l', path.join(f.log, 'glusterd.log'),
    '--xlator-option', `management.working-directory=${f.lib}`,
    '--xlator-option', `management.run-directory=${f.run}`,
    '--xlator-option', `management.logging-directory=${f.log}`,
    '--xlator-option', `management.glusterd-sockfile=${f.socket}`,
    '--xlator-option', `management.transport.socket.bind-address=${address}`,
  ];
}
