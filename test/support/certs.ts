import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ExecaCommandRunner } from '../../common/runner.js';

export interface TestPki {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/** A CA, a server cert for 127.0.0.1 and a client cert, made with openssl (EC keys: fast). */
export async function makeTestPki(name = 'pki'): Promise<TestPki> {
  const runner = new ExecaCommandRunner();
  const dir = await mkdtemp(path.join(tmpdir(), `vcstor-${name}-`));
  const file = (f: string) => path.join(dir, f);
  const openssl = (args: string[]) => runner.run('openssl', args, { cwd: dir });
  const ecKey = (out: string) => openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', out]);
  await ecKey(file('ca.key'));
  await openssl(['req', '-x509', '-new', '-key', file('ca.key'), '-subj', `/CN=${name} test CA`, '-days', '2', '-out', file('ca.pem')]);
  const issue = async (who: string, ext: string) => {
    await ecKey(file(`${who}.key`));
    await openssl(['req', '-new', '-key', file(`${who}.key`), '-subj', `/CN=${who}`, '-out', file(`${who}.csr`)]);
    await writeFile(file(`${who}.ext`), ext);
    await openssl(['x509', '-req', '-in', file(`${who}.csr`), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', file(`${who}.ext`), '-out', file(`${who}.pem`)]);
  };
  await issue('server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  await issue('client', 'extendedKeyUsage=clientAuth\n');
  return { dir, ca: file('ca.pem'), serverCert: file('server.pem'), serverKey: file('server.key'), clientCert: file('client.pem'), clientKey: file('client.key') };
}
