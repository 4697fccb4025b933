import { createHash } from 'node:crypto';
import { VcstorError } from '../errors.js';
import type { CommandRunner } from '../runner.js';
import { QsdDevices, type QsdDevice, type QsdDeviceHealth } from './qsd.js';
import type { IscsiInitiatorDriver, IscsiLoginSpec, IscsiSessionInfo } from './types.js';

/**
 * LUN 0 asks for the target's first data LUN. libiscsi opens the number it is given and
 * cannot look first, so 0 means 1: tgt's first data LUN (its LUN 0 is the controller),
 * the target this initiator serves in the lab. Name LUN 0 of a LIO target explicitly
 * through open-iscsi, which finds the first data LUN itself.
 */
function firstDataLun(lun: number): number {
  return lun === 0 ? 1 : lun;
}

type TargetKey = Pick<IscsiLoginSpec, 'host' | 'port' | 'targetIqn' | 'lun' | 'initiatorIqn'>;

/** The device key of a session: one per initiator IQN and LUN. */
export function sessionKey(t: TargetKey): string {
  const digest = createHash('sha256').update(`${t.host}:${t.port}/${t.targetIqn}/${t.lun}/${t.initiatorIqn}`).digest('hex');
  return `iscsi-${digest.slice(0, 20)}`;
}

/** qemu's option syntax reads commas as separators: validated values never hold one. */
function optionValue(value: string): string {
  if (value.includes(',')) throw new VcstorError('INVALID_ARGUMENT', `${JSON.stringify(value)} cannot be passed to qemu (comma)`);
  return value;
}

/**
 * A user-space iSCSI initiator: libiscsi inside qemu-storage-daemon, one daemon per
 * session, its LUN a loop device. Runs where the kernel has no iSCSI initiator (this
 * lab). The CHAP secret reaches qemu through a 0600 file, never a command line. qemu's
 * libiscsi driver has no mutual CHAP.
 */
export class QsdIscsiInitiator implements IscsiInitiatorDriver {
  readonly driver = 'qsd' as const;
  private readonly devices: QsdDevices;

  constructor(options: { runner: CommandRunner; stateDir: string; memoryCgroup?: string }) {
    this.devices = new QsdDevices({ runner: options.runner, root: `${options.stateDir}/qsd`, ...(options.memoryCgroup ? { memoryCgroup: options.memoryCgroup } : {}) });
  }

  private toSession(device: QsdDevice, health: QsdDeviceHealth): IscsiSessionInfo {
    const m = device.meta;
    return {
      host: String(m.host),
      port: Number(m.port),
      targetIqn: String(m.targetIqn),
      lun: Number(m.lun),
      initiatorIqn: String(m.initiatorIqn),
      devicePath: health.state === 'ok' ? device.loopDevice : '',
      sizeBytes: device.sizeBytes,
      state: health.state === 'ok' ? 'logged-in' : 'broken',
      detail: health.state === 'ok' ? '' : health.detail,
    };
  }

  async login(asked: IscsiLoginSpec, signal: AbortSignal): Promise<{ session: IscsiSessionInfo; alreadyLoggedIn: boolean }> {
    const spec = { ...asked, lun: firstDataLun(asked.lun) };
    if (spec.chap?.mutualUsername) {
      throw new VcstorError('FAILED_PRECONDITION', "the qsd initiator cannot do mutual CHAP (qemu's libiscsi driver has no target credentials); use open-iscsi");
    }
    const portal = spec.host.includes(':') ? `[${spec.host}]:${spec.port}` : `${spec.host}:${spec.port}`;
    const blockdev = [
      'driver=iscsi',
      'transport=tcp',
      `portal=${optionValue(portal)}`,
      `target=${optionValue(spec.targetIqn)}`,
      `lun=${spec.lun}`,
      `initiator-name=${optionValue(spec.initiatorIqn)}`,
      `timeout=${Math.max(1, Math.ceil(spec.timeoutMs / 1000))}`,
      ...(spec.headerDigest ? ['header-digest=crc32c'] : []),
      ...(spec.chap ? [`user=${optionValue(spec.chap.username)}`] : []),
    ];
    const { device, existed } = await this.devices.open(
      {
        key: sessionKey(spec),
        blockdev,
        ...(spec.chap ? { secret: spec.chap.password } : {}),
        timeoutMs: spec.timeoutMs,
        meta: { kind: 'iscsi', host: spec.host, port: spec.port, targetIqn: spec.targetIqn, lun: spec.lun, initiatorIqn: spec.initiatorIqn },
      },
      signal,
    );
    return { session: this.toSession(device, { state: 'ok' }), alreadyLoggedIn: existed };
  }

  logout(target: TargetKey, signal: AbortSignal): Promise<boolean> {
    return this.devices.close(sessionKey({ ...target, lun: firstDataLun(target.lun) }), signal);
  }

  async list(signal: AbortSignal): Promise<IscsiSessionInfo[]> {
    return (await this.devices.list(signal)).filter(({ device }) => device.meta.kind === 'iscsi').map(({ device, health }) => this.toSession(device, health));
  }
}
