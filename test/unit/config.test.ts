import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadAgentConfig } from '../../common/config.js';
import { VcstorError } from '../../common/errors.js';

describe('agent config', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-config-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const write = async (name: string, text: string) => {
    const file = path.join(dir, name);
    await writeFile(file, text);
    return file;
  };

  it('reads YAML, fills defaults, and types the role section', async () => {
    const file = await write('storage.yaml', 'name: storage0\nlisten: 127.0.0.1:7001\ntls:\n  insecure: true\nstorage:\n  iscsiTarget:\n    driver: lio\n');
    const config = await loadAgentConfig('storage', file, {});
    assert.equal(config.role, 'storage');
    if (config.role !== 'storage') return;
    assert.equal(config.storage.iscsiTarget.driver, 'lio');
    assert.equal(config.storage.iscsiTarget.requireChap, true);
    assert.equal(config.storage.volumes.driver, 'filepool');
    assert.equal(config.logLevel, 'info');
  });

  it('lets the environment override the file', async () => {
    const file = await write('guest.json', JSON.stringify({ name: 'guest0', listen: '127.0.0.1:7002', tls: { insecure: true } }));
    const config = await loadAgentConfig('guest', file, { VCSTOR_LISTEN: '127.0.0.1:7100', VCSTOR_LOG_LEVEL: 'debug', VCSTOR_NAME: 'guest9' });
    assert.equal(config.listen, '127.0.0.1:7100');
    assert.equal(config.logLevel, 'debug');
    assert.equal(config.name, 'guest9');
  });

  it('refuses to serve plaintext unless asked explicitly', async () => {
    const file = await write('dom0.yaml', 'name: host0\nlisten: 127.0.0.1:7003\n');
    await assert.rejects(loadAgentConfig('dom0', file, {}), /tls: set ca, cert and key for mTLS, or insecure: true/);
  });

  it('points at the field and line at fault', async () => {
    const file = await write('bad.yaml', 'name: storage0\nlisten: 127.0.0.1:7001\ntls:\n  insecure: true\nstorage:\n  volumes:\n    driver: zfs\n');
    await assert.rejects(loadAgentConfig('storage', file, {}), (err: unknown) => {
      assert.ok(err instanceof VcstorError);
      assert.equal(err.code, 'INVALID_ARGUMENT');
      assert.match(err.message, /bad\.yaml:7: storage\.volumes\.driver: /);
      return true;
    });
  });

  it('rejects unknown keys, bad names and a role mismatch', async () => {
    const typo = await write('typo.yaml', 'name: g\nlisten: 127.0.0.1:1\ntls: {insecure: true}\nlistenn: x\n');
    await assert.rejects(loadAgentConfig('guest', typo, {}), /listenn/);
    const badName = await write('name.yaml', 'name: "a;b"\nlisten: 127.0.0.1:1\ntls: {insecure: true}\n');
    await assert.rejects(loadAgentConfig('guest', badName, {}), /name\.yaml:1: name: /);
    const role = await write('role.yaml', 'role: storage\nname: g\nlisten: 127.0.0.1:1\ntls: {insecure: true}\n');
    await assert.rejects(loadAgentConfig('guest', role, {}), /role is "storage" but the agent was started as guest/);
  });

  it('says when the file is missing', async () => {
    await assert.rejects(loadAgentConfig('guest', path.join(dir, 'none.yaml'), {}), (err: unknown) => err instanceof VcstorError && err.code === 'NOT_FOUND');
  });
});
