import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { RunningAgent } from '../../common/agent.js';
import { channelCredentials, checkHealth, getAgentInfo } from '../../common/clients.js';
import { VcstorError } from '../../common/errors.js';
import { startTestAgent } from '../support/agents.js';
import { makeTestPki, type TestPki } from '../support/certs.js';

describe('mTLS between clients and agents', () => {
  let pki: TestPki;
  let stranger: TestPki;
  let agent: RunningAgent;
  before(async () => {
    pki = await makeTestPki('pki');
    stranger = await makeTestPki('stranger');
    agent = await startTestAgent('storage', { tls: { ca: pki.ca, cert: pki.serverCert, key: pki.serverKey } });
  });
  after(async () => {
    await agent?.stop(100);
    await rm(pki.dir, { recursive: true, force: true });
    await rm(stranger.dir, { recursive: true, force: true });
  });

  it('serves a client with a certificate from its CA', async () => {
    const credentials = await channelCredentials({ ca: pki.ca, cert: pki.clientCert, key: pki.clientKey });
    assert.equal(await checkHealth(agent.server.address, credentials), 'SERVING');
    assert.equal((await getAgentInfo(agent.server.address, credentials)).role, 'ROLE_STORAGE');
  });

  it('refuses plaintext clients and clients whose certificate another CA signed', async () => {
    const refused = async (credentials: grpc.ChannelCredentials) =>
      assert.rejects(checkHealth(agent.server.address, credentials, '', 2000), (err: unknown) => err instanceof VcstorError && err.code === 'UNAVAILABLE');
    await refused(grpc.credentials.createInsecure());
    await refused(await channelCredentials({ ca: pki.ca, cert: stranger.clientCert, key: stranger.clientKey }));
    await refused(grpc.credentials.createSsl(await readFile(pki.ca)));
  });

  it('will not start without readable TLS files', async () => {
    await assert.rejects(startTestAgent('guest', { tls: { ca: '/nonexistent/ca.pem', cert: pki.serverCert, key: pki.serverKey } }), /cannot read tls.ca \/nonexistent\/ca.pem/);
  });
});
