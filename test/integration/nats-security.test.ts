import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, nkeys, type NatsConnection } from 'nats';
import { VcstorError } from '../../common/errors.js';
import { assertVcstorSubject, natsOptionsFromSettings, natsSettingsSchema, RUN_STREAM_NAME, RunEventBus } from '../../coordinator/events.js';
import type { RunEventRecord } from '../../coordinator/model.js';
import { capturingLogger } from '../support/agents.js';
import { makeTestPki, type TestPki } from '../support/certs.js';
import { startConfiguredNatsServer, type ConfiguredNatsServer } from '../support/nats.js';

/** nats.js ships nkeys untyped; this is the part the test uses. */
interface UserKeyPair {
  getSeed(): Uint8Array;
  getPublicKey(): string;
}
const createUser = (): UserKeyPair => (nkeys as { createUser(): UserKeyPair }).createUser();

/**
 * What the coordinator's NATS user needs, and no more: publish on vcstor.> (its events
 * and results) and the JetStream API calls it makes (account info, create/update/info of
 * its stream), and receive replies (acks) on _INBOX.>. README's Security section shows it.
 */
const COORDINATOR_PERMISSIONS = `{
  publish: { allow: ["vcstor.>", "$JS.API.INFO", "$JS.API.STREAM.CREATE.VCSTOR_RUNS", "$JS.API.STREAM.UPDATE.VCSTOR_RUNS", "$JS.API.STREAM.INFO.VCSTOR_RUNS"] }
  subscribe: { allow: ["_INBOX.>"] }
}`;

const PASSWORD = 'nats-pw-Zq81-distinctive';

function event(runId: string, seq: number): RunEventRecord {
  return { runId, seq, timeUnixMs: Date.now(), stepId: 'file-local/rep1/setup', state: 'started', message: `event ${seq}` };
}

describe('NATS: TLS, user/password, nkey and token auth; the coordinator publishes only under vcstor.>', () => {
  let pki: TestPki;
  let server: ConfiguredNatsServer;
  let dir: string;
  let user: UserKeyPair;
  let seedFile: string;
  let passwordFile: string;
  let admin: NatsConnection;
  const { log, lines } = capturingLogger();

  before(async () => {
    pki = await makeTestPki('nats');
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-nats-auth-'));
    user = createUser();
    seedFile = path.join(dir, 'coordinator.nk');
    await writeFile(seedFile, `${new TextDecoder().decode(user.getSeed())}\n`, { mode: 0o600 });
    passwordFile = path.join(dir, 'nats-password');
    await writeFile(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
    server = await startConfiguredNatsServer(
      () => `
tls { cert_file: "${pki.serverCert}", key_file: "${pki.serverKey}", ca_file: "${pki.ca}", verify: true, timeout: 2 }
authorization {
  users = [
    { user: coordinator, password: "${PASSWORD}", permissions: ${COORDINATOR_PERMISSIONS} }
    { nkey: ${user.getPublicKey()}, permissions: ${COORDINATOR_PERMISSIONS} }
    { user: admin, password: "admin-pw-5541" }
  ]
}`,
    );
    admin = await connect({ servers: `tls://127.0.0.1:${server.port}`, user: 'admin', pass: 'admin-pw-5541', tls: { caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey } });
  });
  after(async () => {
    await admin?.close();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
    await rm(pki.dir, { recursive: true, force: true });
  });

  const stored = async (subject: string) => {
    const info = await (await admin.jetstreamManager()).streams.info(RUN_STREAM_NAME, { subjects_filter: subject });
    return info.state.subjects?.[subject] ?? 0;
  };
  const tls = () => ({ ca: pki.ca, cert: pki.clientCert, key: pki.clientKey });

  it('a plan section with TLS and user/password connects, and what the bus publishes is stored', async () => {
    const settings = natsSettingsSchema.parse({ url: `tls://127.0.0.1:${server.port}`, user: 'coordinator', passwordFile, tls: tls() });
    const options = await natsOptionsFromSettings(settings, 'plan.yaml');
    assert.equal(options.pass, PASSWORD);
    const bus = await RunEventBus.connect({ ...options, name: 'nats-security', log });
    try {
      await bus.publishEvent(event('r-pw', 1));
      assert.equal((await bus.flush(5000)).pending, 0);
    } finally {
      await bus.close();
    }
    assert.equal(await stored('vcstor.run.r-pw.event'), 1);
    assert.ok(!lines.join('').includes(PASSWORD), 'the NATS password is in no log line');
  });

  it('nkey auth over TLS: only a signature leaves the coordinator', async () => {
    const settings = natsSettingsSchema.parse({ url: `tls://127.0.0.1:${server.port}`, nkeySeedFile: seedFile, tls: tls() });
    const bus = await RunEventBus.connect({ ...(await natsOptionsFromSettings(settings, 'plan.yaml')), log });
    try {
      await bus.publishEvent(event('r-nkey', 1));
      assert.equal((await bus.flush(5000)).pending, 0);
    } finally {
      await bus.close();
    }
    assert.equal(await stored('vcstor.run.r-nkey.event'), 1);
    const seed = new TextDecoder().decode(user.getSeed());
    assert.ok(!lines.join('').includes(seed), 'the seed is in no log line');
  });

  it('refuses a wrong password, a client without TLS, and a client without a certificate', async () => {
    const url = `tls://127.0.0.1:${server.port}`;
    await assert.rejects(RunEventBus.connect({ servers: url, user: 'coordinator', pass: 'wrong-password', tls: tls() }), (err: unknown) => {
      assert.ok(err instanceof VcstorError, String(err));
      assert.equal(err.code, 'PERMISSION_DENIED', err.message);
      assert.ok(!err.message.includes('wrong-password'), 'no password in the message');
      return true;
    });
    await assert.rejects(RunEventBus.connect({ servers: `nats://127.0.0.1:${server.port}`, user: 'coordinator', pass: PASSWORD }), VcstorError);
    await assert.rejects(RunEventBus.connect({ servers: url, user: 'coordinator', pass: PASSWORD, tls: { ca: pki.ca } }), VcstorError);
  });

  it("the coordinator's permissions (README) allow vcstor.> and refuse other subjects", async () => {
    const nc = await connect({ servers: `tls://127.0.0.1:${server.port}`, user: 'coordinator', pass: PASSWORD, tls: { caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey } });
    const errors: string[] = [];
    void (async () => {
      for await (const status of nc.status()) if (status.type === 'error') errors.push(String(status.data));
    })();
    nc.publish('tenant.secrets', new TextEncoder().encode('x'));
    nc.publish('$JS.API.STREAM.DELETE.VCSTOR_RUNS', new TextEncoder().encode(''));
    await nc.flush();
    await new Promise((resolve) => setTimeout(resolve, 200));
    await nc.close().catch(() => undefined);
    assert.ok(server.log().includes('Publish Violation') || errors.some((e) => /permissions violation/i.test(e)), `the server refused the publishes: ${errors.join('; ')}`);
    assert.match(server.log(), /tenant\.secrets/);
    assert.match(server.log(), /STREAM\.DELETE\.VCSTOR_RUNS/);
  });

  it('the bus refuses to publish outside vcstor.> before anything reaches the wire', () => {
    assert.doesNotThrow(() => assertVcstorSubject('vcstor.run.r-1.event'));
    for (const subject of ['other.run.r-1.event', 'vcstor.>', 'vcstor.*.x', 'vcstor..x', 'vcstor.run.a b', '$JS.API.STREAM.DELETE.VCSTOR_RUNS', 'vcstorx.y']) {
      assert.throws(() => assertVcstorSubject(subject), (err: unknown) => err instanceof VcstorError && /publishes only/.test(err.message), subject);
    }
  });
});

describe('NATS token auth and the nats: section of a plan', () => {
  let server: ConfiguredNatsServer;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-nats-token-'));
    await writeFile(path.join(dir, 'token'), 'tok-3vQ-distinctive-77\n', { mode: 0o600 });
    await writeFile(path.join(dir, 'bad-seed'), 'SUnot-a-seed-but-secret-99\n', { mode: 0o600 });
    server = await startConfiguredNatsServer(() => 'authorization { token: "tok-3vQ-distinctive-77" }');
  });
  after(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('connects with the token from its file, and not without it', async () => {
    const settings = natsSettingsSchema.parse({ url: `nats://127.0.0.1:${server.port}`, tokenFile: path.join(dir, 'token') });
    const bus = await RunEventBus.connect(await natsOptionsFromSettings(settings, 'plan.yaml'));
    await bus.publishEvent(event('r-token', 1));
    assert.equal((await bus.flush(5000)).pending, 0);
    await bus.close();
    await assert.rejects(RunEventBus.connect({ servers: `nats://127.0.0.1:${server.port}` }), (err: unknown) => err instanceof VcstorError && err.code === 'PERMISSION_DENIED');
  });

  it('refuses sections that mix auth methods, put credentials in the URL, or point at no usable secret', async () => {
    const bad = (value: unknown, pattern: RegExp) => {
      const result = natsSettingsSchema.safeParse(value);
      assert.ok(!result.success, JSON.stringify(value));
      assert.match(result.error.issues.map((i) => i.message).join('; '), pattern);
    };
    bad({ url: 'nats://127.0.0.1:4222', user: 'a', tokenFile: '/t' }, /one of user/);
    bad({ url: 'nats://127.0.0.1:4222', passwordFile: '/p' }, /passwordFile needs user/);
    bad({ url: 'nats://u:secret@127.0.0.1:4222' }, /no credentials in the URL/);
    bad({ url: 'nats://127.0.0.1:4222', tls: { ca: '/ca.pem', cert: '/c.pem' } }, /both cert and key/);
    bad({ url: 'nats://127.0.0.1:4222', tokenFile: 'relative' }, /absolute/);
    const seed = natsSettingsSchema.parse({ url: 'nats://127.0.0.1:4222', nkeySeedFile: path.join(dir, 'bad-seed') });
    await assert.rejects(natsOptionsFromSettings(seed, 'plan.yaml'), (err: unknown) => {
      assert.ok(err instanceof VcstorError);
      assert.match(err.message, /plan\.yaml: nats\.nkeySeedFile: .* does not hold a user nkey seed/);
      assert.ok(!err.message.includes('secret-99'), 'the file content is not in the message');
      return true;
    });
    const missing = natsSettingsSchema.parse({ url: 'nats://127.0.0.1:4222', tokenFile: path.join(dir, 'none') });
    await assert.rejects(natsOptionsFromSettings(missing, 'plan.yaml'), /nats\.tokenFile: cannot read .*none: ENOENT/);
  });
});
