import net from 'node:net';
import { rm } from 'node:fs/promises';

/**
 * A stand-in for rpcbind's local socket that accepts every registration and keeps none:
 * what nfs-ganesha 4.3 needs to start with NFSv3 (it exits with "Cannot register NFS V3 on
 * TCP" when no rpcbind answers), for tests whose clients are given the NFS and MOUNT ports
 * and so ask no portmapper. It listens on a unix socket (libtirpc's rpcb_set tries
 * /run/rpcbind.sock first), speaks ONC RPC with record marking (RFC 5531), answers
 * RPCBPROC_SET and RPCBPROC_UNSET (versions 3 and 4) TRUE and anything else PROC_UNAVAIL.
 *
 * Give it a socket in a mount namespace of the test's own (a tmpfs on /run, reached as
 * /proc/PID/root/run/rpcbind.sock), never the machine's /run/rpcbind.sock: that one is
 * shared by every network namespace and belongs to a real rpcbind.
 */

/** A registration the stub was asked for (what rpcinfo would have listed). */
export interface StubRegistration {
  proc: 'set' | 'unset';
  program: number;
  version: number;
  netid: string;
  address: string;
}

export interface RpcbindStub {
  readonly registrations: StubRegistration[];
  close(): Promise<void>;
}

const RPCBPROG = 100000;

/** XDR reading of a call's body. */
class Reader {
  constructor(
    private readonly buf: Buffer,
    private pos = 0,
  ) {}
  u32(): number {
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  opaque(): Buffer {
    const len = this.u32();
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += (len + 3) & ~3;
    return out;
  }
  string(): string {
    return this.opaque().toString('utf8');
  }
}

function reply(xid: number, acceptStat: number, result?: number): Buffer {
  const words = [xid, 1 /* REPLY */, 0 /* MSG_ACCEPTED */, 0, 0 /* verifier AUTH_NONE */, acceptStat, ...(result === undefined ? [] : [result])];
  const out = Buffer.alloc(4 + words.length * 4);
  out.writeUInt32BE((0x80000000 | (words.length * 4)) >>> 0, 0); // one, last fragment
  words.forEach((w, i) => out.writeUInt32BE(w >>> 0, 4 + i * 4));
  return out;
}

function answer(message: Buffer, registrations: StubRegistration[]): Buffer | undefined {
  const r = new Reader(message);
  const xid = r.u32();
  if (r.u32() !== 0) return undefined; // not a CALL
  r.u32(); // rpcvers 2
  const program = r.u32();
  const version = r.u32();
  const proc = r.u32();
  r.opaque(); // credential flavor's body
  r.u32();
  r.opaque(); // verifier
  r.u32();
  if (program !== RPCBPROG) return reply(xid, 1 /* PROG_UNAVAIL */);
  if ((version === 3 || version === 4) && (proc === 1 || proc === 2)) {
    // struct rpcb { r_prog, r_vers, r_netid, r_addr, r_owner }
    registrations.push({ proc: proc === 1 ? 'set' : 'unset', program: r.u32(), version: r.u32(), netid: r.string(), address: r.string() });
    return reply(xid, 0 /* SUCCESS */, 1 /* TRUE */);
  }
  return reply(xid, 3 /* PROC_UNAVAIL */);
}

/**
 * Listen on `socketPath` (replacing a stale socket there).
 * @throws when the socket cannot be made (its directory missing, no permission).
 */
export async function startRpcbindStub(socketPath: string): Promise<RpcbindStub> {
  const registrations: StubRegistration[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let pending = Buffer.alloc(0);
    let fragments: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 4) {
        const header = pending.readUInt32BE(0);
        const length = header & 0x7fffffff;
        if (pending.length < 4 + length) return;
        fragments.push(pending.subarray(4, 4 + length));
        pending = pending.subarray(4 + length);
        if ((header & 0x80000000) !== 0) {
          const out = answer(Buffer.concat(fragments), registrations);
          fragments = [];
          if (out) socket.write(out);
        }
      }
    });
  });
  await rm(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  return {
    registrations,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(socketPath, { force: true });
    },
  };
}
