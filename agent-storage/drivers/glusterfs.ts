import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { isIP } from 'node:net';
import { invalidArgument, VcstorError, type ErrorCode } from '../../common/errors.js';
import { SerialQueue } from '../../common/locks.js';
import type { CommandRunner } from '../../common/runner.js';
import { validatePathUnder } from '../../common/validate.js';

/**
 * GlusterFS on a storage server, for the parallel-fs shared space (paper section 5): a
 * distributed volume over bricks on several storage servers, mounted by every guest.
 * The driver talks to the host's glusterd with the gluster CLI over glusterd's unix
 * socket; it never starts glusterd (the host's service manager or the lab does).
 * agent-storage/drivers/glusterfs-notes.md says what the CLI does, as seen with glusterfs 10.3.
 */

// ---------------------------------------------------------------------------------------
// A small XML reader: enough for the CLI's --xml output (elements, attributes, text,
// self-closing tags, the prolog, comments, CDATA, the five entities and char refs).

/** One XML element: its attributes, child elements and its own text (entities decoded). */
export interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  /** The element's direct text, concatenated (child elements' text excluded). */
  text: string;
}

const ENTITIES: Readonly<Record<string, string>> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9A-Fa-f]{1,6}|#[0-9]{1,7}|[A-Za-z]+);/g, (whole, ref: string) => {
    if (ref.startsWith('#x')) return String.fromCodePoint(parseInt(ref.slice(2), 16));
    if (ref.startsWith('#')) return String.fromCodePoint(parseInt(ref.slice(1), 10));
    return ENTITIES[ref] ?? whole;
  });
}

const NAME = '[A-Za-z_][\\w.:-]*';
const TOKEN = new RegExp(
  [
    '<!--[\\s\\S]*?-->', // comment
    '<\\?[\\s\\S]*?\\?>', // prolog, processing instruction
    '<!\\[CDATA\\[([\\s\\S]*?)\\]\\]>', // 1: CDATA
    `</(${NAME})\\s*>`, // 2: end tag
    `<(${NAME})((?:\\s+${NAME}\\s*=\\s*(?:"[^"]*"|'[^']*'))*)\\s*(/?)>`, // 3: start tag, 4: attributes, 5: self-closing
    '([^<]+)', // 6: text
    '(<)', // 7: anything else that starts with <
  ].join('|'),
  'g',
);
const ATTRIBUTE = new RegExp(`(${NAME})\\s*=\\s*(?:"([^"]*)"|'([^']*)')`, 'g');

/**
 * Parse an XML document into its root element. Pure.
 * @throws VcstorError INTERNAL for text that is not well-formed (mismatched or unclosed
 *   tags, a stray '<', no root element).
 */
export function parseXml(text: string): XmlElement {
  const document: XmlElement = { name: '#document', attributes: {}, children: [], text: '' };
  const stack: XmlElement[] = [document];
  const fail = (why: string) => new VcstorError('INTERNAL', `not well-formed XML (${why}): ${JSON.stringify(text.slice(0, 120))}`);
  for (const m of text.matchAll(TOKEN)) {
    const top = stack[stack.length - 1]!;
    if (m[1] !== undefined) {
      top.text += m[1];
    } else if (m[2] !== undefined) {
      if (top.name !== m[2]) throw fail(`</${m[2]}> closes <${top.name}>`);
      stack.pop();
    } else if (m[3] !== undefined) {
      const attributes: Record<string, string> = {};
      for (const a of (m[4] ?? '').matchAll(ATTRIBUTE)) attributes[a[1]!] = decodeEntities(a[2] ?? a[3] ?? '');
      const element: XmlElement = { name: m[3], attributes, children: [], text: '' };
      top.children.push(element);
      if (m[5] !== '/') stack.push(element);
    } else if (m[6] !== undefined) {
      if (top !== document) top.text += decodeEntities(m[6]);
      else if (m[6].trim() !== '') throw fail('text outside the root element');
    } else if (m[7] !== undefined) {
      throw fail("a '<' that starts no tag");
    }
  }
  if (stack.length > 1) throw fail(`<${stack[stack.length - 1]!.name}> is not closed`);
  const root = document.children[0];
  if (!root || document.children.length > 1) throw fail('not exactly one root element');
  return root;
}

/** The first child element called `name`. */
export function xmlChild(element: XmlElement | undefined, name: string): XmlElement | undefined {
  return element?.children.find((c) => c.name === name);
}

/** Every child element called `name`. */
export function xmlChildren(element: XmlElement | undefined, name: string): XmlElement[] {
  return element?.children.filter((c) => c.name === name) ?? [];
}

/** The trimmed text of the first child called `name`; '' when there is none. */
export function xmlText(element: XmlElement | undefined, name: string): string {
  return xmlChild(element, name)?.text.trim() ?? '';
}

// ---------------------------------------------------------------------------------------
// The gluster CLI's XML answers.

/** What every `gluster ... --xml` answer starts with, and its root element. */
export interface GlusterCliAnswer {
  /** 0 when the operation succeeded; -1 (or 1) when it failed: the CLI exits 0 either way. */
  opRet: number;
  /** glusterd's error number: 30800 for most refusals, 107 for an unreachable peer... */
  opErrno: number;
  /** Why it failed, as glusterd says it ('' on success). */
  opErrstr: string;
  /** The `<output>` line some commands print ("success", "... already in peer list"). */
  output: string;
  root: XmlElement;
}

/**
 * Parse the envelope of a `gluster ... --xml` answer (`<cliOutput>`). Pure.
 * @throws VcstorError INTERNAL when the text is not a CLI answer.
 */
export function parseGlusterCliXml(text: string): GlusterCliAnswer {
  const root = parseXml(text);
  if (root.name !== 'cliOutput') throw new VcstorError('INTERNAL', `gluster answered <${root.name}>, not <cliOutput>`);
  const number = (name: string) => {
    const value = Number(xmlText(root, name));
    if (xmlText(root, name) === '' || !Number.isInteger(value)) throw new VcstorError('INTERNAL', `gluster's answer has no numeric <${name}>`);
    return value;
  };
  return { opRet: number('opRet'), opErrno: number('opErrno'), opErrstr: xmlText(root, 'opErrstr'), output: xmlText(root, 'output'), root };
}

/** One brick: a directory on a storage server. */
export interface GlusterBrick {
  /** The server as the pool knows it: the address or name it was probed with. */
  host: string;
  /** An absolute directory on that server. */
  path: string;
}

/** A volume's state: glusterd's `<status>` 0, 1, 2. */
export type GlusterVolumeStatus = 'created' | 'started' | 'stopped';

/** A volume as `gluster volume info --xml` describes it. */
export interface GlusterVolume {
  name: string;
  /** glusterd's UUID of the volume. */
  id: string;
  status: GlusterVolumeStatus;
  /** `<typeStr>`: Distribute, Replicate, Disperse... */
  type: string;
  /** In the volume's order (the order they were given to `volume create`). */
  bricks: GlusterBrick[];
  /** Options set on the volume ("Options Reconfigured"), by name. */
  options: Record<string, string>;
}

const STATUS_BY_NUMBER: Readonly<Record<string, GlusterVolumeStatus>> = { '0': 'created', '1': 'started', '2': 'stopped' };

/** "host:/path" (as gluster writes a brick) split at the ':' before the path. Pure. */
export function parseBrickName(name: string): GlusterBrick | undefined {
  const at = name.indexOf(':/');
  if (at <= 0) return undefined;
  return { host: name.slice(0, at), path: name.slice(at + 1) };
}

/** "host:/path", as the CLI takes a brick. */
export function brickName(brick: GlusterBrick): string {
  return `${brick.host}:${brick.path}`;
}

/**
 * The volumes of a successful `gluster volume info [NAME] --xml` (its text, or its answer
 * from {@link parseGlusterCliXml}). Pure.
 * @throws VcstorError NOT_FOUND when glusterd says the volume does not exist, INTERNAL
 *   for any other failure it reports or an answer that cannot be read.
 */
export function parseGlusterVolumeInfo(text: string | GlusterCliAnswer): GlusterVolume[] {
  const answer = typeof text === 'string' ? parseGlusterCliXml(text) : text;
  if (answer.opRet !== 0) throw cliFailure(answer, 'gluster volume info');
  const volumes = xmlChild(xmlChild(answer.root, 'volInfo'), 'volumes');
  return xmlChildren(volumes, 'volume').map((v) => {
    const name = xmlText(v, 'name');
    const status = STATUS_BY_NUMBER[xmlText(v, 'status')];
    if (!name || !status) throw new VcstorError('INTERNAL', `gluster volume info lists a volume without a name or a known status: ${JSON.stringify({ name, status: xmlText(v, 'status') })}`);
    const bricks = xmlChildren(xmlChild(v, 'bricks'), 'brick').map((b) => {
      // <brick uuid="..">host:/path<name>host:/path</name><hostUuid>..</hostUuid>...</brick>
      const written = xmlText(b, 'name') || b.text.trim();
      const brick = parseBrickName(written);
      if (!brick) throw new VcstorError('INTERNAL', `gluster volume info lists a brick of ${name} that is not host:/path: ${JSON.stringify(written)}`);
      return brick;
    });
    const options: Record<string, string> = {};
    for (const option of xmlChildren(xmlChild(v, 'options'), 'option')) options[xmlText(option, 'name')] = xmlText(option, 'value');
    return { name, id: xmlText(v, 'id'), status, type: xmlText(v, 'typeStr'), bricks, options };
  });
}

/** One brick process of a started volume, from `gluster volume status NAME --xml`. */
export interface GlusterBrickStatus extends GlusterBrick {
  online: boolean;
  /** The brick's TCP port; undefined while it is down. */
  port: number | undefined;
  /** The brick process (glusterfsd) on its server; undefined while it is down. */
  pid: number | undefined;
}

/**
 * The bricks of a successful `gluster volume status NAME|all --xml` (text or answer). Pure.
 * @throws VcstorError as {@link parseGlusterVolumeInfo}; FAILED_PRECONDITION when the
 *   volume is not started.
 */
export function parseGlusterVolumeStatus(text: string | GlusterCliAnswer): GlusterBrickStatus[] {
  const answer = typeof text === 'string' ? parseGlusterCliXml(text) : text;
  if (answer.opRet !== 0) throw cliFailure(answer, 'gluster volume status');
  const volumes = xmlChildren(xmlChild(xmlChild(answer.root, 'volStatus'), 'volumes'), 'volume');
  return volumes.flatMap((v) =>
    xmlChildren(v, 'node')
      // Self-heal, NFS and quota daemons are nodes too; bricks have a path.
      .filter((n) => xmlText(n, 'path').startsWith('/'))
      .map((n) => {
        const port = Number(xmlText(n, 'port'));
        const pid = Number(xmlText(n, 'pid'));
        return {
          host: xmlText(n, 'hostname'),
          path: xmlText(n, 'path'),
          online: xmlText(n, 'status') === '1',
          port: Number.isInteger(port) && port > 0 ? port : undefined,
          pid: Number.isInteger(pid) && pid > 0 ? pid : undefined,
        };
      }),
  );
}

/** A peer of this glusterd's trusted pool, from `gluster peer status --xml`. */
export interface GlusterPeer {
  uuid: string;
  /** The name or address it was probed with. */
  hostname: string;
  /** Every name the pool knows it by (hostname first). */
  hostnames: string[];
  connected: boolean;
  /** `<stateStr>`: "Peer in Cluster" once the probe completed. */
  state: string;
}

/**
 * The peers of a successful `gluster peer status --xml` (or `pool list --xml`, which
 * adds this host as "localhost"), text or answer. Pure.
 * @throws VcstorError INTERNAL for a failure glusterd reports or an unreadable answer.
 */
export function parseGlusterPeerStatus(text: string | GlusterCliAnswer): GlusterPeer[] {
  const answer = typeof text === 'string' ? parseGlusterCliXml(text) : text;
  if (answer.opRet !== 0) throw cliFailure(answer, 'gluster peer status');
  return xmlChildren(xmlChild(answer.root, 'peerStatus'), 'peer').map((p) => {
    const hostname = xmlText(p, 'hostname');
    const others = xmlChildren(xmlChild(p, 'hostnames'), 'hostname').map((h) => h.text.trim());
    return {
      uuid: xmlText(p, 'uuid'),
      hostname,
      hostnames: [...new Set([hostname, ...others])],
      connected: xmlText(p, 'connected') === '1',
      state: xmlText(p, 'stateStr'),
    };
  });
}

/** A failed CLI answer as a VcstorError: NOT_FOUND, ABORTED (a lock clash) or INTERNAL. */
function cliFailure(answer: GlusterCliAnswer, what: string): VcstorError {
  const said = answer.opErrstr || answer.output || `opRet ${answer.opRet}, opErrno ${answer.opErrno}`;
  const rules: Array<[RegExp, ErrorCode]> = [
    [/does not exist/i, 'NOT_FOUND'],
    [/is not started/i, 'FAILED_PRECONDITION'],
    // glusterd takes a cluster-wide lock per transaction; a clash is worth a retry.
    [/Another transaction is in progress|Locking failed|lock(ing)? (is )?held/i, 'ABORTED'],
  ];
  const code = rules.find(([pattern]) => pattern.test(said))?.[1] ?? 'INTERNAL';
  return new VcstorError(code, `${what} failed: ${said}`);
}

// ---------------------------------------------------------------------------------------
// Validation.

/** Names gluster's CLI refuses as volume names (cli-cmd-parser.c invalid_volnames). */
const RESERVED_VOLUME_NAMES: ReadonlySet<string> = new Set([
  'volume', 'type', 'subvolumes', 'option', 'end-volume', 'all', 'volume_not_in_ring', 'description', 'force',
  'snap-max-hard-limit', 'snap-max-soft-limit', 'auto-delete', 'activate-on-create',
]);

/**
 * A gluster volume name: 1-64 of A-Z a-z 0-9 _ -, starting with a letter or digit, not
 * a word the CLI reserves. Returns it. Pure.
 * @throws VcstorError INVALID_ARGUMENT naming `field`.
 */
export function validateGlusterVolumeName(field: string, value: string): string {
  if (value === '') throw invalidArgument(field, 'is required');
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(value)) {
    throw invalidArgument(field, `${JSON.stringify(value.slice(0, 80))} is not a gluster volume name: use 1-64 characters of A-Z, a-z, 0-9, '_', '-', starting with a letter or digit`);
  }
  if (RESERVED_VOLUME_NAMES.has(value.toLowerCase())) throw invalidArgument(field, `"${value}" is a word the gluster CLI reserves`);
  return value;
}

const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * A storage server as gluster names it: an IPv4 address or a DNS name. IPv6 is refused:
 * a brick is written host:/path. Returns it. Pure.
 * @throws VcstorError INVALID_ARGUMENT naming `field`.
 */
export function validateGlusterHost(field: string, value: string): string {
  if (value === '') throw invalidArgument(field, 'is required');
  if (isIP(value) === 6) throw invalidArgument(field, `${JSON.stringify(value)}: use an IPv4 address or a host name (gluster writes bricks as host:/path)`);
  if (!HOST_NAME.test(value)) throw invalidArgument(field, `${JSON.stringify(value.slice(0, 80))} is not an IPv4 address or a host name`);
  return value;
}

/**
 * A brick directory: absolute and normal, not '/', and only of letters, digits and
 * `_ . + - /` (it is written host:/path on the CLI and into gluster's volfiles). Pure.
 * @throws VcstorError INVALID_ARGUMENT naming `field`.
 */
export function validateBrickPath(field: string, value: string): string {
  validatePathUnder(field, value, ['/']);
  if (value === '/') throw invalidArgument(field, 'a brick cannot be the root directory');
  if (!/^[A-Za-z0-9_.+/-]+$/.test(value)) throw invalidArgument(field, `${JSON.stringify(value.slice(0, 80))} may hold only letters, digits and _ . + - /`);
  return value;
}

/**
 * The bricks of a new volume: at least one, each valid, no brick twice. Pure.
 * @throws VcstorError INVALID_ARGUMENT.
 */
export function validateBricks(bricks: readonly GlusterBrick[]): GlusterBrick[] {
  if (bricks.length === 0) throw invalidArgument('bricks', 'a volume needs at least one brick');
  const seen = new Set<string>();
  return bricks.map((b, i) => {
    const brick = { host: validateGlusterHost(`bricks[${i}].host`, b.host), path: validateBrickPath(`bricks[${i}].path`, b.path) };
    const key = brickName({ host: brick.host.toLowerCase(), path: brick.path });
    if (seen.has(key)) throw invalidArgument(`bricks[${i}]`, `${brickName(brick)} is given twice`);
    seen.add(key);
    return brick;
  });
}

function sameBricks(a: readonly GlusterBrick[], b: readonly GlusterBrick[]): boolean {
  return a.length === b.length && a.every((x, i) => x.host.toLowerCase() === b[i]!.host.toLowerCase() && x.path === b[i]!.path);
}

// ---------------------------------------------------------------------------------------
// The driver.

/** A quick CLI call (info, status, probe, create, delete). glusterd answers in 0.1-0.4 s. */
const CLI_TIMEOUT_MS = 60_000;
/** volume start/stop: glusterd starts or stops every brick (stop took 2.2 s); the CLI's own limit is 120 s. */
const BRICKS_TIMEOUT_MS = 130_000;
/** The CLI exits 0 whatever the operation did when --xml is given; the answer says. */
const ANY_EXIT = Array.from({ length: 256 }, (_, i) => i);

/** How a {@link GlusterfsServer} reaches its glusterd. */
export interface GlusterfsServerOptions {
  /** Runs the gluster CLI: argument arrays, never a shell. */
  runner: CommandRunner;
  /**
   * glusterd's CLI socket: what it was started with as
   * `--xlator-option management.glusterd-sockfile=...`. Default /var/run/glusterd.socket,
   * glusterd's own default.
   */
  socketPath?: string;
  /** The gluster CLI's log file; default the CLI's own /var/log/glusterfs/cli.log. */
  cliLogFile?: string;
  /**
   * Create volumes with `force`: lets bricks live on the root filesystem or be mount
   * points (the lab's plain directories), and reuses a brick directory that still carries
   * the marks of a deleted volume, with its old files. Never lets a brick of an existing
   * volume be taken. Default false.
   */
  force?: boolean;
  /** How long probePeer waits for a new peer to be connected and "Peer in Cluster". Default 15 s. */
  peerSettleMs?: number;
}

/**
 * A storage server's glusterd, driven with the gluster CLI (`--xml`, `--mode=script`) on
 * glusterd's unix socket. Volumes are distributed over the bricks given, over TCP.
 *
 * Every method takes the caller's AbortSignal and runs each CLI call with a timeout.
 * Changes (probe, detach, create, start, delete) go one at a time through this driver:
 * glusterd refuses a transaction while another holds its cluster lock ("Another
 * transaction is in progress"), which is reported as ABORTED (retry). glusterd not
 * answering on its socket is UNAVAILABLE.
 */
export class GlusterfsServer {
  readonly driver = 'glusterfs' as const;
  private readonly queue = new SerialQueue();
  private readonly socketPath: string;

  /** @throws VcstorError INVALID_ARGUMENT for a relative socket or log path. */
  constructor(private readonly options: GlusterfsServerOptions) {
    this.socketPath = validatePathUnder('socketPath', options.socketPath ?? '/var/run/glusterd.socket', ['/']);
    if (options.cliLogFile !== undefined) validatePathUnder('cliLogFile', options.cliLogFile, ['/']);
  }

  /** The CLI's arguments for one call: socket, log, script mode, the call, --xml. */
  cliArgs(args: readonly string[]): string[] {
    return [
      `--glusterd-sock=${this.socketPath}`,
      ...(this.options.cliLogFile ? [`--log-file=${this.options.cliLogFile}`] : []),
      '--mode=script',
      ...args,
      '--xml',
    ];
  }

  private async cli(args: readonly string[], signal: AbortSignal, timeoutMs = CLI_TIMEOUT_MS): Promise<GlusterCliAnswer> {
    const result = await this.options.runner.run('gluster', this.cliArgs(args), { signal, timeoutMs, okExitCodes: ANY_EXIT });
    if (!result.stdout.includes('<cliOutput')) {
      const said = `${result.stdout}\n${result.stderr}`.trim();
      // The CLI prints this (on stdout, no XML, exit 1) when nothing answers on the socket.
      if (/Connection failed|Please check if gluster daemon is operational/i.test(said)) {
        throw new VcstorError('UNAVAILABLE', `glusterd is not answering on ${this.socketPath}: is it running (with management.glusterd-sockfile=${this.socketPath})?`);
      }
      throw new VcstorError('INTERNAL', `gluster ${args.join(' ')} exited with ${result.exitCode} without an XML answer: ${said.split('\n').slice(-3).join(' | ')}`);
    }
    return parseGlusterCliXml(result.stdout);
  }

  /**
   * Add `host`'s glusterd to this glusterd's trusted pool, and wait until it is connected
   * and "Peer in Cluster" (a volume create names only such peers). Idempotent: false when
   * it already was a peer, or is this host. Timeout 60 s for the probe, then
   * `peerSettleMs`.
   * @throws VcstorError INVALID_ARGUMENT, UNAVAILABLE (the peer's glusterd cannot be
   *   reached, or does not settle; glusterd not running), FAILED_PRECONDITION (the peer
   *   belongs to another pool), ABORTED, CANCELLED, DEADLINE_EXCEEDED.
   */
  async probePeer(host: string, signal: AbortSignal): Promise<boolean> {
    validateGlusterHost('host', host);
    return this.queue.run(async () => {
      const answer = await this.cli(['peer', 'probe', host], signal);
      if (answer.opRet !== 0) {
        const said = answer.opErrstr || answer.output;
        if (answer.opErrno === 107 || /not connected|Transport endpoint|resolve|unreachable|No route/i.test(said)) {
          throw new VcstorError('UNAVAILABLE', `peer probe ${host} failed: its glusterd cannot be reached (${said})`);
        }
        if (/part of another cluster|already part of|is in a different cluster/i.test(said)) {
          throw new VcstorError('FAILED_PRECONDITION', `peer probe ${host} failed: ${said}`);
        }
        throw cliFailure(answer, `peer probe ${host}`);
      }
      // opErrno 0: probed now; 1: "Probe on localhost not needed"; 2: "already in peer list".
      if (answer.opErrno === 1) return false;
      await this.waitForPeer(host, signal);
      return answer.opErrno === 0;
    });
  }

  private async waitForPeer(host: string, signal: AbortSignal): Promise<void> {
    const until = Date.now() + (this.options.peerSettleMs ?? 15_000);
    let seen = 'not listed';
    for (;;) {
      const peer = (await this.listPeers(signal)).find((p) => p.hostnames.some((h) => h.toLowerCase() === host.toLowerCase()));
      if (peer?.connected && peer.state === 'Peer in Cluster') return;
      if (peer) seen = `${peer.state || 'no state'}, ${peer.connected ? 'connected' : 'disconnected'}`;
      if (Date.now() > until) throw new VcstorError('UNAVAILABLE', `peer ${host} was probed but is not a connected "Peer in Cluster" after ${this.options.peerSettleMs ?? 15_000} ms (${seen})`);
      if (signal.aborted) throw new VcstorError('CANCELLED', `waiting for peer ${host} was cancelled`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /**
   * Remove `host` from the trusted pool. Idempotent: false when it is not a peer.
   * Timeout 60 s.
   * @throws VcstorError FAILED_PRECONDITION (it still holds bricks of a volume),
   *   INVALID_ARGUMENT, UNAVAILABLE, ABORTED, CANCELLED, DEADLINE_EXCEEDED, INTERNAL.
   */
  async detachPeer(host: string, signal: AbortSignal): Promise<boolean> {
    validateGlusterHost('host', host);
    return this.queue.run(async () => {
      const answer = await this.cli(['peer', 'detach', host], signal);
      if (answer.opRet === 0) return true;
      if (/is not part of cluster/i.test(answer.opErrstr)) return false;
      if (/hosts one or more bricks/i.test(answer.opErrstr)) {
        throw new VcstorError('FAILED_PRECONDITION', `peer ${host} still holds bricks; delete its volumes first (${answer.opErrstr})`);
      }
      throw cliFailure(answer, `peer detach ${host}`);
    });
  }

  /** The peers of this glusterd's pool (not this host itself). Read-only; timeout 60 s. */
  async listPeers(signal: AbortSignal): Promise<GlusterPeer[]> {
    return parseGlusterPeerStatus(await this.cli(['peer', 'status'], signal));
  }

  /**
   * Create the distributed volume `name` over `bricks` (in that order) with transport
   * tcp; glusterd makes the brick directories. The volume is left Created: see
   * {@link startVolume}. Idempotent: false when a volume of that name with the same
   * bricks in the same order exists (in any state). Timeout 60 s.
   * @throws VcstorError ALREADY_EXISTS (a volume of that name with other bricks),
   *   FAILED_PRECONDITION (a brick host is not a connected peer; a brick belongs to
   *   another volume, still carries the marks of an earlier one, is on the root
   *   filesystem or is a mount point without `force`), INVALID_ARGUMENT, UNAVAILABLE,
   *   ABORTED, CANCELLED, DEADLINE_EXCEEDED, INTERNAL.
   */
  async createVolume(name: string, bricks: readonly GlusterBrick[], signal: AbortSignal): Promise<boolean> {
    validateGlusterVolumeName('name', name);
    const wanted = validateBricks(bricks);
    return this.queue.run(async () => {
      const existing = await this.findVolume(name, signal);
      if (existing) return this.compareExisting(existing, wanted);
      const answer = await this.cli(
        ['volume', 'create', name, 'transport', 'tcp', ...wanted.map(brickName), ...(this.options.force ? ['force'] : [])],
        signal,
      );
      if (answer.opRet === 0) return true;
      const said = answer.opErrstr;
      if (/already exists/i.test(said)) {
        // Made between our look and the create (by another agent of the pool).
        const now = await this.findVolume(name, signal);
        if (now) return this.compareExisting(now, wanted);
      }
      const preconditions: Array<[RegExp, string]> = [
        [/is already part of a volume/i, 'a brick directory still carries the marks of an earlier volume (a deleted one, or a create that failed half-way): remove that directory on its server, or use a new brick path'],
        [/not available\. Brick may be containing or be contained by an existing brick/i, 'a brick is, contains or is inside a brick of another volume'],
        [/not in 'Peer in Cluster' state|is not connected|not a friend|Host .* not connected/i, 'a brick host is not a connected peer of this pool: probe it first'],
        [/root partition/i, "a brick is on the server's root filesystem: give it its own filesystem, or configure the driver with force"],
        [/is a mount point/i, 'a brick is a mount point: use a sub-directory of it, or configure the driver with force'],
        [/Staging failed|Commit failed/i, 'a storage server refused it'],
      ];
      const rule = preconditions.find(([pattern]) => pattern.test(said));
      if (rule) throw new VcstorError('FAILED_PRECONDITION', `creating gluster volume ${name} failed: ${rule[1]} (${said})`);
      throw cliFailure(answer, `gluster volume create ${name}`);
    });
  }

  private compareExisting(existing: GlusterVolume, wanted: readonly GlusterBrick[]): false {
    if (sameBricks(existing.bricks, wanted)) return false;
    throw new VcstorError(
      'ALREADY_EXISTS',
      `gluster volume ${existing.name} already exists with bricks ${existing.bricks.map(brickName).join(' ') || '(none)'}, not ${wanted.map(brickName).join(' ')}`,
    );
  }

  /**
   * Start the volume's bricks. Idempotent: false when it is started already (bricks that
   * died since are not restarted: `gluster volume start NAME force` does that). Timeout
   * 130 s.
   * @throws VcstorError NOT_FOUND, INVALID_ARGUMENT, UNAVAILABLE, ABORTED, CANCELLED,
   *   DEADLINE_EXCEEDED, INTERNAL (a brick did not start: see the brick's log on its server).
   */
  async startVolume(name: string, signal: AbortSignal): Promise<boolean> {
    validateGlusterVolumeName('name', name);
    return this.queue.run(async () => {
      const answer = await this.cli(['volume', 'start', name], signal, BRICKS_TIMEOUT_MS);
      if (answer.opRet === 0) return true;
      if (/already started/i.test(answer.opErrstr)) return false;
      throw cliFailure(answer, `gluster volume start ${name}`);
    });
  }

  /**
   * Stop the volume (its brick processes) and delete it from the pool. The brick
   * directories stay on their servers, with the volume's files and marks: a new volume
   * cannot use them until they are removed (or with `force`). Clients that still have it
   * mounted get ENOTCONN. Idempotent: false when there is no such volume. Timeout 130 s
   * for the stop, 60 s for the delete.
   * @throws VcstorError INVALID_ARGUMENT, UNAVAILABLE, ABORTED, CANCELLED,
   *   DEADLINE_EXCEEDED, INTERNAL.
   */
  async deleteVolume(name: string, signal: AbortSignal): Promise<boolean> {
    validateGlusterVolumeName('name', name);
    // A stopped brick leaves its unix socket in /var/run/gluster (named in its command
    // line, -S): those of the bricks on this machine are found before the stop, removed after.
    const sockets = await this.localBrickSockets(name, signal);
    const removed = await this.queue.run(async () => {
      const stop = await this.cli(['volume', 'stop', name], signal, BRICKS_TIMEOUT_MS);
      if (stop.opRet !== 0) {
        if (/does not exist/i.test(stop.opErrstr)) return false;
        // "is not in the started state": Created or Stopped; delete it as it is.
        if (!/not in the started state|is not started/i.test(stop.opErrstr)) throw cliFailure(stop, `gluster volume stop ${name}`);
      }
      const answer = await this.cli(['volume', 'delete', name], signal);
      if (answer.opRet === 0) return true;
      if (/does not exist/i.test(answer.opErrstr)) return false;
      throw cliFailure(answer, `gluster volume delete ${name}`);
    });
    for (const socket of sockets) await rm(socket, { force: true });
    return removed;
  }

  /** The -S sockets of the volume's brick processes that run on this machine (under /var/run/gluster). */
  private async localBrickSockets(name: string, signal: AbortSignal): Promise<string[]> {
    const bricks = await this.volumeStatus(name, signal).catch(() => [] as GlusterBrickStatus[]);
    const sockets: string[] = [];
    for (const b of bricks) {
      if (b.pid === undefined) continue;
      const argv = (await readFile(`/proc/${b.pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
      const socket = argv[argv.indexOf('-S') + 1];
      if (path.basename(argv[0] ?? '') === 'glusterfsd' && argv.indexOf('-S') >= 0 && socket?.startsWith('/var/run/gluster/')) sockets.push(socket);
    }
    return sockets;
  }

  /**
   * Set a volume option (`gluster volume set NAME KEY VALUE`). Idempotent: false when it
   * already has that value. Timeout 60 s.
   * @throws VcstorError INVALID_ARGUMENT (a key or value gluster would not take), NOT_FOUND, UNAVAILABLE, ABORTED, INTERNAL.
   */
  async setOption(name: string, key: string, value: string, signal: AbortSignal): Promise<boolean> {
    validateGlusterVolumeName('name', name);
    if (!/^[a-z][a-z0-9.-]{0,127}$/.test(key)) throw new VcstorError('INVALID_ARGUMENT', `option ${JSON.stringify(key)} is not a gluster option name (e.g. performance.strict-o-direct)`);
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(value)) throw new VcstorError('INVALID_ARGUMENT', `value ${JSON.stringify(value)} of ${key} is not a plain word`);
    return this.queue.run(async () => {
      const existing = await this.findVolume(name, signal);
      if (!existing) throw new VcstorError('NOT_FOUND', `no gluster volume ${name}`);
      if (existing.options[key] === value) return false;
      const answer = await this.cli(['volume', 'set', name, key, value], signal);
      if (answer.opRet === 0) return true;
      throw cliFailure(answer, `gluster volume set ${name} ${key} ${value}`);
    });
  }

  /** Every volume of the pool: name, state, bricks, options. Read-only; timeout 60 s. */
  async listVolumes(signal: AbortSignal): Promise<GlusterVolume[]> {
    return parseGlusterVolumeInfo(await this.cli(['volume', 'info'], signal));
  }

  /**
   * The bricks of a started volume, each online or not, with port and pid. [] when the
   * volume is not started. Read-only; timeout 60 s.
   * @throws VcstorError NOT_FOUND, INVALID_ARGUMENT, UNAVAILABLE, INTERNAL.
   */
  async volumeStatus(name: string, signal: AbortSignal): Promise<GlusterBrickStatus[]> {
    validateGlusterVolumeName('name', name);
    const answer = await this.cli(['volume', 'status', name], signal);
    if (answer.opRet !== 0 && /is not started/i.test(answer.opErrstr)) return [];
    return parseGlusterVolumeStatus(answer);
  }

  /** The volume called `name`, or undefined. */
  private async findVolume(name: string, signal: AbortSignal): Promise<GlusterVolume | undefined> {
    const answer = await this.cli(['volume', 'info', name], signal);
    if (answer.opRet !== 0 && (answer.opErrno === 30806 || /does not exist/i.test(answer.opErrstr))) return undefined;
    return parseGlusterVolumeInfo(answer).find((v) => v.name === name);
  }
}
