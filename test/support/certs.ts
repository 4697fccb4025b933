import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ExecaCommandRunner } from '../../common/runner.js';
import { initCa, issueCert } from '../../coordinator/certs.js';

export interface TestPki {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/**
 * A CA, a server cert for 127.0.0.1 and localhost, and a client cert, made by the code behind
 * `vcstor certs init|issue` (the tests use what operators use).
 */
export async function makeTestPki(name = 'pki'): Promise<TestPki> {
  const runner = new ExecaCommandRunner();
  const dir = await mkdtemp(path.join(tmpdir(), `vcstor-${name}-`));
  const ca = await initCa(runner, dir, { name: `${name}-test-ca`, days: 2 });
  const server = await issueCert(runner, dir, { name: 'server', serverAddresses: ['127.0.0.1', 'localhost'], days: 2 });
  const client = await issueCert(runner, dir, { name: 'client', client: true, days: 2 });
  return { dir, ca: ca.cert, serverCert: server.cert, serverKey: server.key, clientCert: client.cert, clientKey: client.key };
}
