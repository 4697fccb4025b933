import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { execa } from 'execa';
import type { RunningAgent } from '../../common/agent.js';
import { channelCredentials, checkHealth, getAgentInfo } from '../../common/clients.js';
import { VcstorError } from '../../common/errors.js';
import { startTestAgent } from '../support/agents.js';
import { makeTestPki, type TestPki } from '../support/certs.js';

const CLI = fileURLToPath(new URL('../../cli/cli.js', import.meta.url));

/** `vcstor certs ...` as an operator runs it: a separate process. */
async function vcstor(...args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const result = await execa(process.execPath, [CLI, ...args], { reject: false, timeout: 30_000 });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

const mode = async (file: string) => (await stat(file)).mode & 0o777;

describe('vcstor certs init|issue', () => {
  let dir: string;
  let stranger: TestPki;
  before(async () => {
    dir = path.join(await mkdtemp(path.join(tmpdir(), 'vcstor-certs-')), 'pki');
    stranger = await makeTestPki('stranger');
  });
  after(async () => {
    await rm(path.dirname(dir), { recursive: true, force: true });
    await rm(stranger.dir, { recursive: true, force: true });
  });

  it('init makes a CA with a 0600 key, and keeps it when run again', async () => {
    const first = await vcstor('certs', 'init', '--dir', dir);
    assert.equal(first.exitCode, 0, first.stderr);
    assert.match(first.stdout, /created CA .*ca\.pem/);
    assert.equal(await mode(path.join(dir, 'ca.key')), 0o600);
    const ca = new X509Certificate(await readFile(path.join(dir, 'ca.pem')));
    assert.ok(ca.ca, 'ca.pem is a CA certificate');
    const again = await vcstor('certs', 'init', '--dir', dir);
    assert.equal(again.exitCode, 0, again.stderr);
    assert.match(again.stdout, /kept CA/);
    assert.equal(new X509Certificate(await readFile(path.join(dir, 'ca.pem'))).fingerprint256, ca.fingerprint256, 'the CA was not replaced');
  });

  it('issue makes server certificates with SANs and client certificates, and keeps valid ones', async () => {
    const server = await vcstor('certs', 'issue', '--dir', dir, '--name', 'storage0', '--server-address', '127.0.0.1', '--server-address', 'localhost');
    assert.equal(server.exitCode, 0, server.stderr);
    const cert = new X509Certificate(await readFile(path.join(dir, 'storage0.pem')));
    assert.equal(cert.subjectAltName, 'IP Address:127.0.0.1, DNS:localhost');
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'an agent certificate is serverAuth only');
    assert.ok(cert.verify(new X509Certificate(await readFile(path.join(dir, 'ca.pem'))).publicKey));
    assert.equal(await mode(path.join(dir, 'storage0.key')), 0o600);

    const client = await vcstor('certs', 'issue', '--dir', dir, '--name', 'coordinator', '--client');
    assert.equal(client.exitCode, 0, client.stderr);
    assert.deepEqual(new X509Certificate(await readFile(path.join(dir, 'coordinator.pem'))).keyUsage, ['1.3.6.1.5.5.7.3.2']);

    const again = await vcstor('certs', 'issue', '--dir', dir, '--name', 'storage0', '--server-address', 'localhost', '--server-address', '127.0.0.1');
    assert.equal(again.exitCode, 0, again.stderr);
    assert.match(again.stdout, /kept .*storage0\.pem/);
    assert.equal(new X509Certificate(await readFile(path.join(dir, 'storage0.pem'))).fingerprint256, cert.fingerprint256);

    const other = await vcstor('certs', 'issue', '--dir', dir, '--name', 'storage0', '--server-address', '127.0.0.2');
    assert.equal(other.exitCode, 1);
    assert.match(other.stderr, /storage0\.pem exists and is not what was asked: it names IP:127\.0\.0\.1, DNS:localhost, not IP:127\.0\.0\.2; set --force/);
    assert.equal(new X509Certificate(await readFile(path.join(dir, 'storage0.pem'))).fingerprint256, cert.fingerprint256, 'a refused issue changes nothing');

    const forced = await vcstor('certs', 'issue', '--dir', dir, '--name', 'other', '--server-address', '127.0.0.1', '--force');
    assert.equal(forced.exitCode, 0, forced.stderr);
    const replaced = await vcstor('certs', 'issue', '--dir', dir, '--name', 'other', '--server-address', '127.0.0.2', '--force');
    assert.equal(replaced.exitCode, 0, replaced.stderr);
    assert.equal(new X509Certificate(await readFile(path.join(dir, 'other.pem'))).subjectAltName, 'IP Address:127.0.0.2');
  });

  it('refuses bad names and addresses, and issue without a CA, leaving no file', async () => {
    const before = (await readdir(dir)).sort();
    for (const args of [
      ['--name', 'a;b', '--client'],
      ['--name', '../x', '--client'],
      ['--name', 'x', '--server-address', '127.0.0.1,DNS:evil.example'],
      ['--name', 'x', '--server-address', 'a b'],
      ['--name', 'x'],
      ['--name', 'ca', '--client'],
    ]) {
      const result = await vcstor('certs', 'issue', '--dir', dir, ...args);
      assert.equal(result.exitCode, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, /^vcstor: --(name|server-address)/, args.join(' '));
    }
    assert.deepEqual((await readdir(dir)).sort(), before);
    const noCa = await vcstor('certs', 'issue', '--dir', path.join(dir, 'empty'), '--name', 'x', '--client');
    assert.equal(noCa.exitCode, 1);
    assert.match(noCa.stderr, /no CA in .*run vcstor certs init/);
  });

  describe('an agent serving with certificates the command made', () => {
    let agent: RunningAgent;
    before(async () => {
      agent = await startTestAgent('storage', { tls: { ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'storage0.pem'), key: path.join(dir, 'storage0.key') } });
    });
    after(async () => {
      await agent?.stop(100);
    });

    it('serves a client with the client certificate, over its IP and DNS names', async () => {
      const credentials = await channelCredentials({ ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'coordinator.pem'), key: path.join(dir, 'coordinator.key') });
      assert.equal(await checkHealth(agent.server.address, credentials), 'SERVING');
      assert.equal(await checkHealth(`localhost:${agent.server.port}`, credentials), 'SERVING');
      assert.equal((await getAgentInfo(agent.server.address, credentials)).role, 'ROLE_STORAGE');
    });

    it('refuses plaintext, a client certificate of another CA, and an agent certificate used as a client certificate', async () => {
      const refused = async (what: string, credentials: grpc.ChannelCredentials) =>
        assert.rejects(checkHealth(agent.server.address, credentials, '', 2000), (err: unknown) => err instanceof VcstorError && err.code === 'UNAVAILABLE', what);
      await refused('plaintext', grpc.credentials.createInsecure());
      await refused('another CA', await channelCredentials({ ca: path.join(dir, 'ca.pem'), cert: stranger.clientCert, key: stranger.clientKey }));
      await refused('no client certificate', grpc.credentials.createSsl(await readFile(path.join(dir, 'ca.pem'))));
      // A tenant who is root in a guest holds its agent's key: it must not open other agents.
      await refused('server cert as client', await channelCredentials({ ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'other.pem'), key: path.join(dir, 'other.key') }));
    });

    it('a client that trusts another CA does not talk to the agent', async () => {
      const credentials = await channelCredentials({ ca: stranger.ca, cert: stranger.clientCert, key: stranger.clientKey });
      await assert.rejects(checkHealth(agent.server.address, credentials, '', 2000), (err: unknown) => err instanceof VcstorError && err.code === 'UNAVAILABLE');
    });
  });
});
