import { createHash } from 'node:crypto';
import { VcstorError } from '../common/errors.js';
import type { CommandRunner } from '../common/runner.js';
import { QsdDevices, type QsdDevice, type QsdDeviceHealth } from './qsd.js';
import { setIscsiSessionParams } from '../common/iscsi-params.js';
import type { IscsiInitiatorDriver, IscsiLoginResult, IscsiLoginSpec, IscsiSessionInfo } from './types.js';

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
 * Why the qsd initiator applies no session parameters. qemu's iscsi block driver has no
 * option for any of them, and libiscsi proposes fixed values of its own. The session
 * still gets parameters the target bounds: negotiation takes the OR of InitialR2T, the
 * AND of ImmediateData and the minimum of the burst lengths and MaxOutstandingR2T, so a
 * target set to InitialR2T=Yes, ImmediateData=No or smaller bursts imposes them on a
 * libiscsi session. So the login goes ahead, and says what it did not apply.
 */
export const QSD_SESSION_PARAMS_DETAIL =
  "the qsd initiator (qemu's libiscsi driver) applied none of the requested session parameters: qemu has no option for them and libiscsi proposes its own; the target's settings (ExportIscsi session_params) bound what the session negotiates";

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
      negotiatedDetail: "qemu does not report what its libiscsi session negotiated (libiscsi logs the target's login reply only with LIBISCSI_DEBUG=6, which vcstor does not set)",
    };
  }

  async login(asked: IscsiLoginSpec, signal: AbortSignal): Promise<IscsiLoginResult> {
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
    return {
      session: this.toSession(device, { state: 'ok' }),
      alreadyLoggedIn: existed,
      sessionParamsApplied: {},
      sessionParamsDetail: setIscsiSessionParams(asked.sessionParams ?? {}).length > 0 ? QSD_SESSION_PARAMS_DETAIL : '',
    };
  }

  logout(target: TargetKey, signal: AbortSignal): Promise<boolean> {
    return this.devices.close(sessionKey({ ...target, lun: firstDataLun(target.lun) }), signal);
  }

  async list(signal: AbortSignal): Promise<IscsiSessionInfo[]> {
    return (await this.devices.list(signal)).filter(({ device }) => device.meta.kind === 'iscsi').map(({ device, health }) => this.toSession(device, health));
  }
}
