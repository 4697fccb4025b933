import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GaneshaNfsServer, ganeshaExportPaths, renderGaneshaExports, withGaneshaExports } from '../../agent-storage/drivers/ganesha.js';
import type { NfsExportSpec } from '../../agent-storage/drivers/types.js';

const EXPORT: NfsExportSpec = {
  exportId: 3,
  path: '/srv/vcstor/vol0',
  pseudoPath: '/vol0',
  clients: [
    { match: '198.51.100.0/24', access: 'rw', sync: true, squash: 'none' },
    { match: '*', access: 'ro', sync: true, squash: 'root' },
  ],
};
const never = new AbortController().signal;

describe('ganesha driver', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-ganesha-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('renders EXPORT blocks ganesha accepts: bare client lists, nothing granted outside CLIENT blocks', () => {
    const text = renderGaneshaExports([EXPORT]);
    assert.match(text, /Export_Id = 3;\n {2}Path = "\/srv\/vcstor\/vol0";\n {2}Pseudo = "\/vol0";/);
    assert.match(text, /Access_Type = None;/);
    assert.match(text, /CLIENT \{ Clients = 198\.51\.100\.0\/24; Access_Type = RW; Squash = No_Root_Squash; \}/);
    assert.match(text, /CLIENT \{ Clients = \*; Access_Type = RO; Squash = Root_Squash; \}/);
    assert.throws(() => renderGaneshaExports([{ ...EXPORT, path: '/srv/a"; } EXPORT { Path = "/' }]), /cannot be written into a ganesha config/);
    assert.throws(() => renderGaneshaExports([{ ...EXPORT, clients: [{ match: '1.2.3.4, *', access: 'rw', sync: true, squash: 'none' }] }]), /not a client ganesha can match/);
  });

  it('replaces only its own section of the config', () => {
    const base = 'NFS_CORE_PARAM { NFS_Port = 2049; }\n';
    const once = withGaneshaExports(base, renderGaneshaExports([EXPORT]));
    assert.ok(once.startsWith(base));
    assert.deepEqual(ganeshaExportPaths(once), ['/srv/vcstor/vol0']);
    const emptied = withGaneshaExports(once, renderGaneshaExports([]));
    assert.ok(emptied.startsWith(base));
    assert.deepEqual(ganeshaExportPaths(emptied), []);
    assert.equal(withGaneshaExports(emptied, renderGaneshaExports([])), emptied, 'stable: no change, no rewrite');
  });

  it('writes the config and signals ganesha only when something changed', async () => {
    const config = path.join(dir, 'ganesha.conf');
    const pidFile = path.join(dir, 'ganesha.pid');
    await writeFile(config, 'NFS_CORE_PARAM { NFS_Port = 2049; }\n');
    // A stand-in for ganesha's pid: this process, counting the SIGHUPs it receives.
    let hups = 0;
    const onHup = () => hups++;
    process.on('SIGHUP', onHup);
    await writeFile(pidFile, String(process.pid));
    try {
      const server = new GaneshaNfsServer({ configFile: config, pidFile });
      await server.apply([EXPORT], never);
      await server.apply([EXPORT], never);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(hups, 1, 'one reload for one change');
      assert.deepEqual(await server.listExportedPaths(), ['/srv/vcstor/vol0']);
      assert.match(await readFile(config, 'utf8'), /^NFS_CORE_PARAM/);
      await rm(pidFile);
      await assert.rejects(server.apply([], never), /ganesha is not running .* applies when it starts/);
      assert.deepEqual(await server.listExportedPaths(), [], 'the config was still updated');
    } finally {
      process.off('SIGHUP', onHup);
    }
  });
});
