import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { VcstorError } from '../../common/errors.js';
import { ExecaCommandRunner } from '../../common/runner.js';
import type { ExportIscsiRequest__Output } from '../../common/generated/vcstor/v1/ExportIscsiRequest.js';
import { FilePoolVolumes } from '../../agent-storage/drivers/filepool.js';
import { GaneshaNfsServer } from '../../agent-storage/drivers/ganesha.js';
import { parseTgtAccounts, parseTgtShow, TGT_AIO_EVENTS_PER_LUN, TgtIscsiTarget, type AioBudget } from '../../agent-storage/drivers/tgt.js';
import { StorageRecordStore } from '../../agent-storage/state.js';
import { StorageServer } from '../../agent-storage/storage.js';

const runner = new ExecaCommandRunner();
const never = new AbortController().signal;
setMaxListeners(1000, never); // every concurrent command listens on it
/** A private tgtd: its own control port and a loopback portal no lab uses. */
const PORT = 21_000 + (process.pid % 9_000); // tgtd refuses -C values above 32767
const PORTAL = `127.0.${(process.pid >> 8) % 250}.${2 + (process.pid % 250)}:3260`;
const CHAP = { username: 'burst', password: 'burstsecret12' };
/** Exports at once: more than the agent's gRPC callers ran at once in the control-plane bench (32). */
const BURST = 40;
/** The machine the second test pretends to be: AIO for this many aio LUNs. */
const AIO_LUNS = 6;

const haveTgtd = await access('/usr/sbin/tgtd').then(
  () => true,
  () => false,
);
const skip = process.getuid?.() !== 0 ? 'tgtd needs root' : !haveTgtd ? 'tgtd is not installed (apt-get install tgt)' : false;

const tgtadm = async (...args: string[]) => (await runner.run('tgtadm', ['-C', String(PORT), '--lld', 'iscsi', ...args])).stdout;
const targets = async () => parseTgtShow(await tgtadm('--mode', 'target', '--op', 'show'));

/** What the export request of the control plane looks like: an address ACL and CHAP. */
const request = (volume: string): ExportIscsiRequest__Output => ({
  volume,
  pool: '',
  targetIqn: '',
  lun: 0,
  allowedInitiators: [],
  allowedAddresses: ['127.0.0.0/8'],
  allowAnyInitiator: false,
  chap: { username: CHAP.username, password: CHAP.password, mutualUsername: '', mutualPassword: '' },
  sessionParams: null,
});

describe('tgt driver under concurrent exports, against a real tgtd', { skip }, () => {
  let dir: string;
  let tgtd: ChildProcess;
  const log = pino({ level: 'silent' });

  /** A storage server on the private tgtd, as the agent builds it, with an AIO budget to inject. */
  const server = (aioBudget?: () => Promise<AioBudget>) => {
    const target = new TgtIscsiTarget({ runner, controlPort: PORT, portal: PORTAL, ...(aioBudget ? { aioBudget } : {}) });
    return new StorageServer({
      volumes: new FilePoolVolumes({ runner, poolDir: path.join(dir, 'pool') }),
      target,
      nfs: new GaneshaNfsServer({ configFile: path.join(dir, 'ganesha.conf'), pidFile: path.join(dir, 'none.pid') }),
      record: new StorageRecordStore(path.join(dir, `state-${Math.random().toString(36).slice(2)}`)),
      runner,
      log,
      iqnPrefix: 'iqn.2026-11.org.vcstor.burst',
      exportRoot: path.join(dir, 'exports'),
    });
  };
  const create = (storage: StorageServer, names: string[]) =>
    Promise.all(names.map((name) => storage.createVolume({ name, pool: '', sizeBytes: 8 << 20, provisioning: 'PROVISIONING_SPARSE' }, never)));

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-tgt-burst-'));
    await writeFile(path.join(dir, 'ganesha.conf'), '# unused\n');
    tgtd = spawn('tgtd', ['-f', '-C', String(PORT), '--iscsi', `portal=${PORTAL}`], { stdio: 'ignore' });
    for (let i = 0; ; i++) {
      if (await tgtadm('--mode', 'target', '--op', 'show').then(() => true, () => false)) break;
      if (i > 50) throw new Error(`tgtd on control port ${PORT} did not answer`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  });
  after(async () => {
    // tgtd ignores SIGTERM: delete its targets and itself, then make sure it is gone.
    for (const t of await targets().catch(() => [])) await tgtadm('--mode', 'target', '--op', 'delete', '--force', '--tid', String(t.tid)).catch(() => undefined);
    await runner.run('tgtadm', ['-C', String(PORT), '--mode', 'system', '--op', 'delete']).catch(() => undefined);
    const exited = new Promise((resolve) => tgtd.once('exit', resolve));
    if (tgtd.exitCode === null && (await Promise.race([exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 2000))])) === false) tgtd.kill('SIGKILL');
    for (const f of [`/var/run/tgtd/socket.${PORT}`, `/var/run/tgtd/socket.${PORT}.lock`]) await rm(f, { force: true });
    await rm(dir, { recursive: true, force: true });
  });

  it(`${BURST} exports at once: distinct tids, each its own LUN, ACL and CHAP; removed and re-made while others export`, async () => {
    const storage = server();
    const first = Array.from({ length: BURST }, (_, k) => `b${k}`);
    await create(storage, first);
    const made = await Promise.all(first.map((name) => storage.exportIscsi(request(name), never)));
    assert.ok(made.every((m) => m.created && m.target.luns?.length === 1));

    const check = async (names: string[]) => {
      const shown = await targets();
      assert.equal(shown.length, names.length, 'one target per export');
      assert.equal(new Set(shown.map((t) => t.tid)).size, shown.length, 'no tid shared');
      for (const name of names) {
        const t = shown.find((x) => x.iqn === `iqn.2026-11.org.vcstor.burst:${name}`);
        assert.ok(t, `target of ${name}`);
        assert.deepEqual(t.luns.filter((l) => l.type === 'disk').map((l) => l.backingPath), [path.join(dir, 'pool', `${name}.img`)], `${name}: its LUN`);
        assert.deepEqual(t.acl, ['127.0.0.0/8'], `${name}: its ACL`);
        assert.deepEqual(t.accounts, [{ user: CHAP.username, outgoing: false }], `${name}: its CHAP user`);
      }
    };
    await check(first);

    // Half unexported while as many new ones export: freed tids are reused under way.
    const second = Array.from({ length: BURST / 2 }, (_, k) => `c${k}`);
    await create(storage, second);
    const removed = first.filter((_, k) => k % 2 === 0);
    await Promise.all([
      ...removed.map((volume) => storage.unexportIscsi({ volume, pool: '', targetIqn: '', force: true }, never)),
      ...second.map((name) => storage.exportIscsi(request(name), never)),
    ]);
    const kept = [...first.filter((name) => !removed.includes(name)), ...second];
    await check(kept);

    await Promise.all(kept.map((volume) => storage.unexportIscsi({ volume, pool: '', targetIqn: '', force: true }, never)));
    assert.deepEqual(await targets(), []);
    assert.deepEqual(parseTgtAccounts(await tgtadm('--mode', 'account', '--op', 'show')), [], 'the CHAP account goes with the last target');
    await Promise.all([...first, ...second].map((name) => storage.deleteVolume({ name, pool: '', force: true }, never)));
  });

  it('an export beyond the AIO budget is RESOURCE_EXHAUSTED before tgtd is asked, and tgtd keeps answering', async () => {
    // tgtd 1.0.85 corrupts its control socket when io_setup fails (the control-plane
    // bench's "invalid request" at tid 512, then logins to LUNs that were never made).
    // Here the machine holds AIO_LUNS aio LUNs: the budget counts this tgtd's LUNs.
    const aioBudget = async () => {
      const luns = (await targets()).flatMap((t) => t.luns.filter((l) => l.type === 'disk')).length;
      return { inUse: luns * TGT_AIO_EVENTS_PER_LUN, max: AIO_LUNS * TGT_AIO_EVENTS_PER_LUN };
    };
    const storage = server(aioBudget);
    const names = Array.from({ length: AIO_LUNS + 3 }, (_, k) => `a${k}`);
    await create(storage, names);
    const results = await Promise.allSettled(names.map((name) => storage.exportIscsi(request(name), never)));
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.equal(results.length - refused.length, AIO_LUNS, 'as many exports as the budget holds');
    for (const r of refused) {
      assert.ok(r.reason instanceof VcstorError, String(r.reason));
      assert.equal(r.reason.code, 'RESOURCE_EXHAUSTED');
      assert.match(r.reason.message, /fs\.aio-nr is 768 of fs\.aio-max-nr 768 .*sysctl -w fs\.aio-max-nr=/);
    }
    // Nothing half-made is left, and tgtd still answers and makes LUNs.
    const shown = await targets();
    assert.equal(shown.length, AIO_LUNS);
    assert.ok(shown.every((t) => t.luns.some((l) => l.type === 'disk')));
    const exported = results.map((r, k) => (r.status === 'fulfilled' ? names[k]! : '')).filter(Boolean);
    const waiting = names.filter((n) => !exported.includes(n));
    await storage.unexportIscsi({ volume: exported[0]!, pool: '', targetIqn: '', force: true }, never);
    const again = await storage.exportIscsi(request(waiting[0]!), never);
    assert.equal(again.created, true);
    assert.ok((await targets()).find((t) => t.iqn === again.target.iqn)?.luns.some((l) => l.type === 'disk'), 'the freed budget is used');

    for (const volume of [...exported.slice(1), waiting[0]!]) await storage.unexportIscsi({ volume, pool: '', targetIqn: '', force: true }, never);
    assert.deepEqual(await targets(), []);
    await Promise.all(names.map((name) => storage.deleteVolume({ name, pool: '', force: true }, never)));
  });
});
