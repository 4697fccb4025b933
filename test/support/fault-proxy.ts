import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A small user-space TCP proxy that puts delay and loss in a path. This kernel has no
 * netem, so the fault suite puts this between a client and a server instead (the
 * coordinator and an agent, an initiator and the target).
 *
 * TCP hides loss from the application: a lost segment is sent again after the
 * retransmission timeout, and everything behind it waits (head-of-line blocking). So
 * "loss" here holds a chunk, and every chunk behind it on that connection, for
 * `retransmitMs`; the bytes still arrive, complete and in order, only late, which is
 * what a reader sees of a lossy link. `blackhole` holds everything (a link that drops
 * every packet, without the RST a closed port would send); `resetAll` cuts every
 * connection. Settings change live and apply to the next chunk.
 */
export interface FaultSettings {
  /** Added to every chunk, each direction (one-way delay). */
  delayMs: number;
  /** Probability (0-1) that a chunk is "lost" and delivered `retransmitMs` late. */
  lossRate: number;
  /** How late a lost chunk arrives: TCP's minimum RTO is 200 ms. */
  retransmitMs: number;
  /** Forward nothing (bytes wait until it is turned off). */
  blackhole: boolean;
}

interface Pipe {
  /** Chunks with the time each may leave: arrival + delay (+ a retransmission), never before the one ahead. */
  queue: Array<{ chunk: Buffer; dueAt: number }>;
  lastDue: number;
  busy: boolean;
}

export class FaultProxy {
  readonly settings: FaultSettings = { delayMs: 0, lossRate: 0, retransmitMs: 200, blackhole: false };
  /** What passed, for the suite's counts. */
  readonly stats = { connections: 0, chunks: 0, lost: 0, bytes: 0 };
  private readonly sockets = new Set<Socket>();
  private waiters = new Set<() => void>();
  private closed = false;

  private constructor(
    private readonly server: Server,
    private readonly random: () => number,
  ) {}

  /**
   * Listen on `listenHost` (port 0: any free port) and forward every connection to
   * `target` (host:port). `seed` makes the losses repeatable.
   */
  static async start(listenHost: string, target: string, settings: Partial<FaultSettings> = {}, seed = 1): Promise<FaultProxy> {
    const [host, port] = splitHostPort(target);
    let state = seed >>> 0 || 1;
    // xorshift32: repeatable losses from a seed, no dependency.
    const random = () => {
      state ^= state << 13;
      state >>>= 0;
      state ^= state >>> 17;
      state ^= state << 5;
      state >>>= 0;
      return state / 0x1_0000_0000;
    };
    const server = createServer();
    const proxy = new FaultProxy(server, random);
    Object.assign(proxy.settings, settings);
    server.on('connection', (client) => proxy.accept(client, host, port));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, listenHost, () => resolve());
    });
    return proxy;
  }

  /** host:port clients connect to. */
  get address(): string {
    const a = this.server.address() as AddressInfo;
    return `${a.address}:${a.port}`;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Change settings; turning the blackhole off releases what waited. */
  set(settings: Partial<FaultSettings>): void {
    Object.assign(this.settings, settings);
    if (!this.settings.blackhole) this.wake();
  }

  /** Cut every open connection (both sides see a reset). */
  resetAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake();
    this.resetAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private wake(): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) w();
  }

  private accept(client: Socket, host: string, port: number): void {
    this.stats.connections++;
    const upstream = createConnection({ host, port });
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.setNoDelay(true);
      s.on('close', () => this.sockets.delete(s));
      // Either side going away takes the other with it, as a real path would.
      s.on('error', () => undefined);
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    this.pipe(client, upstream);
    this.pipe(upstream, client);
  }

  /** Forward `from` to `to` in order, each chunk after its delay (and loss), pipelined like a link. */
  private pipe(from: Socket, to: Socket): void {
    const p: Pipe = { queue: [], lastDue: 0, busy: false };
    const enqueue = (chunk: Buffer) => {
      let due = Date.now() + this.settings.delayMs;
      if (chunk.length > 0 && this.settings.lossRate > 0 && this.random() < this.settings.lossRate) {
        this.stats.lost++;
        due += this.settings.retransmitMs;
      }
      // In order: a late chunk holds back every chunk behind it.
      p.lastDue = Math.max(p.lastDue, due);
      p.queue.push({ chunk, dueAt: p.lastDue });
      // Back-pressure: a blackholed or slow path must not buffer without bound here.
      if (p.queue.length > 256) from.pause();
      if (!p.busy) void this.drain(p, from, to);
    };
    from.on('data', (chunk: Buffer) => enqueue(chunk));
    from.on('end', () => enqueue(Buffer.alloc(0)));
  }

  private async drain(p: Pipe, from: Socket, to: Socket): Promise<void> {
    p.busy = true;
    try {
      while (p.queue.length > 0 && !this.closed && !to.destroyed) {
        while (this.settings.blackhole && !this.closed) await new Promise<void>((resolve) => this.waiters.add(resolve));
        const wait = p.queue[0]!.dueAt - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const { chunk } = p.queue.shift()!;
        if (chunk.length === 0) {
          to.end();
          continue;
        }
        this.stats.chunks++;
        this.stats.bytes += chunk.length;
        to.write(chunk);
        if (p.queue.length <= 64 && from.isPaused()) from.resume();
      }
    } finally {
      p.busy = false;
    }
  }
}

function splitHostPort(target: string): [string, number] {
  const i = target.lastIndexOf(':');
  const port = Number(target.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 1 || port > 65_535) throw new Error(`fault proxy: ${JSON.stringify(target)} is not host:port`);
  return [target.slice(0, i), port];
}
