import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { VcstorError } from '../common/errors.js';

/** A QMP argument object: JSON, so values need no escaping (unlike qemu's option strings). */
export type QmpArguments = Record<string, string | number | boolean | Record<string, string | number | boolean>>;

/**
 * A minimal client of qemu's monitor protocol (QMP) on a unix socket: JSON lines, one
 * greeting, `qmp_capabilities`, then commands answered in the order they were sent.
 * Events are ignored. Used to add block devices (iSCSI logins) and exports to a running
 * qemu-storage-daemon one by one, so each login is timed on its own.
 */
export class QmpClient {
  private buffer = '';
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (err: Error) => void }>();
  private closedWith: Error | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    const fail = (err: Error) => {
      this.closedWith = err;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    socket.on('error', (err) => fail(new VcstorError('UNAVAILABLE', `the QMP socket failed: ${err.message}`)));
    socket.on('close', () => fail(new VcstorError('UNAVAILABLE', 'qemu-storage-daemon closed its QMP socket (did it exit?)')));
  }

  /**
   * Connect to `path`, retrying until the daemon has made the socket, and negotiate.
   * @throws VcstorError DEADLINE_EXCEEDED after `timeoutMs`, CANCELLED when `signal` aborts.
   */
  static async connect(path: string, timeoutMs: number, signal: AbortSignal): Promise<QmpClient> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (signal.aborted) throw new VcstorError('CANCELLED', 'cancelled while connecting to qemu-storage-daemon');
      const socket = await new Promise<Socket | undefined>((resolve) => {
        const s = connect(path);
        s.once('connect', () => resolve(s));
        s.once('error', () => {
          s.destroy();
          resolve(undefined);
        });
      });
      if (socket) {
        const client = new QmpClient(socket);
        await client.command('qmp_capabilities', {}, Math.max(1000, until - Date.now()), signal);
        return client;
      }
      if (Date.now() > until) throw new VcstorError('DEADLINE_EXCEEDED', `qemu-storage-daemon did not open its QMP socket ${path} within ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (!line) continue;
      let message: { id?: unknown; return?: unknown; error?: { class?: string; desc?: string } };
      try {
        message = JSON.parse(line) as typeof message;
      } catch {
        continue;
      }
      if (typeof message.id !== 'number') continue; // the greeting, or an event
      const waiter = this.pending.get(message.id);
      if (!waiter) continue;
      this.pending.delete(message.id);
      if (message.error) waiter.reject(new QmpError(message.error.class ?? 'GenericError', message.error.desc ?? 'unknown QMP error'));
      else waiter.resolve(message.return);
    }
  }

  /**
   * Run one command and wait for its answer.
   * @throws QmpError when qemu refused it; VcstorError DEADLINE_EXCEEDED / CANCELLED / UNAVAILABLE.
   */
  command(execute: string, args: QmpArguments, timeoutMs: number, signal: AbortSignal): Promise<unknown> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = ++this.nextId;
    return new Promise<unknown>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      };
      const timer = setTimeout(() => {
        this.pending.delete(id);
        done();
        reject(new VcstorError('DEADLINE_EXCEEDED', `qemu-storage-daemon did not answer ${execute} within ${timeoutMs} ms`));
      }, timeoutMs);
      const onAbort = () => {
        this.pending.delete(id);
        done();
        reject(new VcstorError('CANCELLED', `${execute} was cancelled`));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        resolve: (value) => {
          done();
          resolve(value);
        },
        reject: (err) => {
          done();
          reject(err);
        },
      });
      this.socket.write(`${JSON.stringify({ execute, arguments: args, id })}\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** qemu refused a QMP command; `desc` is qemu's own words (e.g. libiscsi's login failure). */
export class QmpError extends Error {
  constructor(
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(desc);
    this.name = 'QmpError';
  }
}
