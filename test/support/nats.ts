import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/** A nats-server started from a config file (auth, TLS, permissions), JetStream on. */
export interface ConfiguredNatsServer {
  port: number;
  dir: string;
  /** What the server wrote on stderr (its log), for assertions and failures. */
  log(): string;
  stop(): Promise<void>;
}

/**
 * Start nats-server on 127.0.0.1 with `config` (nats-server's config syntax) plus
 * `listen` and a private `jetstream` store, which this function adds.
 */
export async function startConfiguredNatsServer(config: (port: number, dir: string) => string): Promise<ConfiguredNatsServer> {
  const dir = await mkdtemp(path.join(tmpdir(), 'vcstor-nats-sec-'));
  const port = await freePort();
  const file = path.join(dir, 'nats.conf');
  await writeFile(file, `listen: "127.0.0.1:${port}"\njetstream { store_dir: "${path.join(dir, 'js')}" }\n${config(port, dir)}\n`, { mode: 0o600 });
  const child: ChildProcess = spawn('nats-server', ['-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nats-server not ready within 10 s: ${log}`)), 10_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited (${code}) before it was ready: ${log}`));
    });
    // Keep reading for the server's whole life, or its pipe fills and it blocks.
    child.stderr?.on('data', (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-100_000);
      if (log.includes('Server is ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  child.removeAllListeners('exit');
  return {
    port,
    dir,
    log: () => log,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
