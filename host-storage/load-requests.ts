import { invalidArgument } from '../common/errors.js';
import type { LoadFioSpec__Output } from '../common/generated/vcstor/v1/LoadFioSpec.js';
import type { RunLoadRequest__Output } from '../common/generated/vcstor/v1/RunLoadRequest.js';
import type { StartLoadSessionsRequest__Output } from '../common/generated/vcstor/v1/StartLoadSessionsRequest.js';
import type { StopLoadSessionsRequest__Output } from '../common/generated/vcstor/v1/StopLoadSessionsRequest.js';
import { validateChap, validateTargetRef } from '../common/requests.js';
import { validateHostPort, validateIqn, validateSize } from '../common/validate.js';
import { LOAD_FIO_DEFAULTS, type LoadFio } from './load-fio.js';

/**
 * Validation of the load-session requests (load.proto), whole requests before anything
 * runs: INVALID_ARGUMENT naming the first field at fault.
 */

/** The most sessions one set may hold (four times the 1,024 a big target serves). */
export const MAX_LOAD_SESSIONS = 4096;
export const DEFAULT_SESSIONS_PER_DAEMON = 64;
export const LOAD_FIO_RW = ['read', 'write', 'randread', 'randwrite', 'rw', 'randrw'] as const;

// Short: the set's directory holds unix sockets, whose paths must stay under 108 bytes.
const SET_ID = /^[a-z0-9][a-z0-9._-]{0,31}$/;

export function validateSetId(field: string, value: string): string {
  if (value === '') throw invalidArgument(field, 'is required');
  if (!SET_ID.test(value)) throw invalidArgument(field, `${JSON.stringify(value.slice(0, 40))} is not a set id: use 1-32 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit`);
  return value;
}

export function validateStartLoadSessionsRequest(request: StartLoadSessionsRequest__Output): void {
  validateSetId('set_id', request.setId);
  if (request.sessions.length === 0) throw invalidArgument('sessions', 'name at least one session');
  if (request.sessions.length > MAX_LOAD_SESSIONS) throw invalidArgument('sessions', `${request.sessions.length} sessions is more than ${MAX_LOAD_SESSIONS}`);
  const seen = new Set<string>();
  request.sessions.forEach((s, i) => {
    const target = validateTargetRef(`sessions[${i}].target`, s.target);
    validateIqn(`sessions[${i}].initiator_iqn`, s.initiatorIqn);
    const { host, port } = validateHostPort(`sessions[${i}].target.portal`, target.portal, 3260);
    const key = `${host}:${port}/${target.iqn}/${target.lun || 1}/${s.initiatorIqn}`;
    if (seen.has(key)) throw invalidArgument(`sessions[${i}]`, `${s.initiatorIqn} is already logged in to ${target.iqn} by another session of this set; give each session its own initiator_iqn`);
    seen.add(key);
  });
  validateChap('chap', request.chap);
  if (request.chap && (request.chap.mutualUsername !== '' || request.chap.mutualPassword !== '')) {
    throw invalidArgument('chap.mutual_username', "load sessions cannot do mutual CHAP (qemu's libiscsi driver has no target credentials); leave it empty");
  }
  if (request.sessionsPerDaemon > 1024) throw invalidArgument('sessions_per_daemon', 'is more than 1024');
  if (request.loginTimeoutMs > 10 * 60_000) throw invalidArgument('login_timeout_ms', 'is longer than 10 minutes');
}

/** Validate a RunLoad request and fill in the fio job's defaults. */
export function validateRunLoadRequest(request: RunLoadRequest__Output): LoadFio {
  validateSetId('set_id', request.setId);
  return validateLoadFioSpec('fio', request.fio);
}

export function validateLoadFioSpec(field: string, spec: LoadFioSpec__Output | null): LoadFio {
  if (!spec) throw invalidArgument(field, 'is required (at least rw)');
  if (!(LOAD_FIO_RW as readonly string[]).includes(spec.rw)) throw invalidArgument(`${field}.rw`, `${JSON.stringify(spec.rw)} is not one of ${LOAD_FIO_RW.join(', ')}`);
  if (spec.blockSizeBytes !== 0) validateSize(`${field}.block_size_bytes`, spec.blockSizeBytes, { min: 512, max: 16 * 1024 * 1024, multipleOf: 512 });
  if (spec.sizeBytes !== 0) validateSize(`${field}.size_bytes`, spec.sizeBytes, { min: 4096, max: 64 * 1024 ** 3, multipleOf: 512 });
  if (spec.iodepth > 256) throw invalidArgument(`${field}.iodepth`, 'is more than 256');
  if (spec.runtimeS > 3600) throw invalidArgument(`${field}.runtime_s`, 'is more than an hour');
  if (spec.rwmixRead > 100) throw invalidArgument(`${field}.rwmix_read`, 'is a percentage (0-100)');
  const filled: LoadFio = {
    rw: spec.rw,
    blockSizeBytes: spec.blockSizeBytes || LOAD_FIO_DEFAULTS.blockSizeBytes,
    iodepth: spec.iodepth || LOAD_FIO_DEFAULTS.iodepth,
    sizeBytes: spec.sizeBytes || LOAD_FIO_DEFAULTS.sizeBytes,
    runtimeS: spec.runtimeS || LOAD_FIO_DEFAULTS.runtimeS,
    rwmixRead: spec.rwmixRead || LOAD_FIO_DEFAULTS.rwmixRead,
  };
  if (filled.sizeBytes < filled.blockSizeBytes) throw invalidArgument(`${field}.size_bytes`, 'is smaller than block_size_bytes');
  return filled;
}

export function validateStopLoadSessionsRequest(request: StopLoadSessionsRequest__Output): void {
  validateSetId('set_id', request.setId);
}
