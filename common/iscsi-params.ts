import { invalidArgument } from './errors.js';
import type { IscsiSessionParams } from './generated/vcstor/v1/IscsiSessionParams.js';
import type { IscsiSessionParams__Output } from './generated/vcstor/v1/IscsiSessionParams.js';

/**
 * The iSCSI operational keys the paper's Table 2 reports (RFC 7143 section 13), shared
 * by the target drivers (what a target offers), the initiator drivers (what an
 * initiator proposes) and the parsers of what a session negotiated. A key that is
 * absent means "the driver's default" in a request and "not known" in a report.
 */
export interface IscsiSessionParamValues {
  initialR2T?: boolean;
  immediateData?: boolean;
  /** Bytes: the largest data segment the declaring side receives in one PDU. */
  maxRecvDataSegmentLength?: number;
  /** Bytes per solicited sequence. */
  maxBurstLength?: number;
  /** Bytes of unsolicited data per command. */
  firstBurstLength?: number;
  maxOutstandingR2T?: number;
}

export type IscsiSessionParamName = keyof IscsiSessionParamValues;

/** Each key: its RFC 7143 name (as tgtadm, targetcli and login PDUs spell it) and its kind. */
export const ISCSI_SESSION_KEYS: ReadonlyArray<{ name: IscsiSessionParamName; rfcKey: string; field: string; kind: 'boolean' | 'number'; min: number; max: number }> = [
  { name: 'initialR2T', rfcKey: 'InitialR2T', field: 'initial_r2t', kind: 'boolean', min: 0, max: 1 },
  { name: 'immediateData', rfcKey: 'ImmediateData', field: 'immediate_data', kind: 'boolean', min: 0, max: 1 },
  // RFC 7143 13.12-13.14: 512 to 2^24-1 bytes.
  { name: 'maxRecvDataSegmentLength', rfcKey: 'MaxRecvDataSegmentLength', field: 'max_recv_data_segment_length', kind: 'number', min: 512, max: 16_777_215 },
  { name: 'maxBurstLength', rfcKey: 'MaxBurstLength', field: 'max_burst_length', kind: 'number', min: 512, max: 16_777_215 },
  { name: 'firstBurstLength', rfcKey: 'FirstBurstLength', field: 'first_burst_length', kind: 'number', min: 512, max: 16_777_215 },
  // RFC 7143 13.17: 1 to 65535.
  { name: 'maxOutstandingR2T', rfcKey: 'MaxOutstandingR2T', field: 'max_outstanding_r2t', kind: 'number', min: 1, max: 65_535 },
];

/**
 * Check a request's session parameters against RFC 7143's ranges.
 * @throws VcstorError INVALID_ARGUMENT naming the field (e.g. "session_params.max_burst_length").
 */
export function validateIscsiSessionParams(field: string, params: IscsiSessionParams__Output | null | undefined): void {
  if (!params) return;
  const values = iscsiSessionParamsFromProto(params);
  for (const key of ISCSI_SESSION_KEYS) {
    const value = values[key.name];
    if (key.kind !== 'number' || value === undefined) continue;
    if (!Number.isInteger(value) || (value as number) < key.min || (value as number) > key.max) {
      throw invalidArgument(`${field}.${key.field}`, `${String(value)} is outside RFC 7143's range for ${key.rfcKey} (${key.min}-${key.max}${key.max > 65_535 ? ' bytes' : ''}; 0 = the driver's default)`);
    }
  }
  // Checked only when both are given: each driver's default MaxBurstLength differs, and
  // the target clamps the negotiated FirstBurstLength to the negotiated MaxBurstLength.
  if (values.firstBurstLength !== undefined && values.maxBurstLength !== undefined && values.firstBurstLength > values.maxBurstLength) {
    throw invalidArgument(
      `${field}.first_burst_length`,
      `${values.firstBurstLength} is more than max_burst_length ${values.maxBurstLength} (RFC 7143 13.14: FirstBurstLength must not exceed MaxBurstLength); lower it or raise max_burst_length`,
    );
  }
}

/** A request's message as values: unset booleans and zero lengths are "the default" (absent). */
export function iscsiSessionParamsFromProto(params: IscsiSessionParams__Output | IscsiSessionParams | null | undefined): IscsiSessionParamValues {
  if (!params) return {};
  const values: IscsiSessionParamValues = {};
  if (params.initialR2t !== undefined && params.initialR2t !== null) values.initialR2T = params.initialR2t;
  if (params.immediateData !== undefined && params.immediateData !== null) values.immediateData = params.immediateData;
  if (params.maxRecvDataSegmentLength) values.maxRecvDataSegmentLength = Number(params.maxRecvDataSegmentLength);
  if (params.maxBurstLength) values.maxBurstLength = Number(params.maxBurstLength);
  if (params.firstBurstLength) values.firstBurstLength = Number(params.firstBurstLength);
  if (params.maxOutstandingR2t) values.maxOutstandingR2T = Number(params.maxOutstandingR2t);
  return values;
}

/** Values as the proto message: absent keys stay unset (booleans) or 0 (lengths). */
export function iscsiSessionParamsToProto(values: IscsiSessionParamValues): IscsiSessionParams {
  return {
    ...(values.initialR2T !== undefined ? { initialR2t: values.initialR2T } : {}),
    ...(values.immediateData !== undefined ? { immediateData: values.immediateData } : {}),
    maxRecvDataSegmentLength: values.maxRecvDataSegmentLength ?? 0,
    maxBurstLength: values.maxBurstLength ?? 0,
    firstBurstLength: values.firstBurstLength ?? 0,
    maxOutstandingR2t: values.maxOutstandingR2T ?? 0,
  };
}

/** The keys that are set, in ISCSI_SESSION_KEYS order. */
export function setIscsiSessionParams(values: IscsiSessionParamValues): Array<{ key: (typeof ISCSI_SESSION_KEYS)[number]; value: boolean | number }> {
  return ISCSI_SESSION_KEYS.flatMap((key) => {
    const value = values[key.name];
    return value === undefined ? [] : [{ key, value }];
  });
}

/** A value as iSCSI text keys spell it: "Yes"/"No" or a decimal number. */
export function formatIscsiValue(value: boolean | number): string {
  return typeof value === 'boolean' ? (value ? 'Yes' : 'No') : String(value);
}

/** Do two sets of values name the same keys with the same values? */
export function sameIscsiSessionParams(a: IscsiSessionParamValues | undefined, b: IscsiSessionParamValues | undefined): boolean {
  return ISCSI_SESSION_KEYS.every((key) => (a?.[key.name] ?? null) === (b?.[key.name] ?? null));
}

/**
 * The six keys out of iSCSI "Key=Value" pairs (a tgtadm listing, a login reply).
 * Unknown keys are ignored; a known key with a value that is not Yes/No or a decimal
 * number is left out rather than guessed.
 */
export function iscsiSessionParamsFromPairs(pairs: Iterable<[string, string]>): IscsiSessionParamValues {
  const values: IscsiSessionParamValues = {};
  for (const [rfcKey, raw] of pairs) {
    const key = ISCSI_SESSION_KEYS.find((k) => k.rfcKey === rfcKey);
    if (!key) continue;
    const value = raw.trim();
    if (key.kind === 'boolean') {
      if (value === 'Yes' || value === 'No') (values as Record<string, boolean>)[key.name] = value === 'Yes';
    } else if (/^\d+$/.test(value)) {
      (values as Record<string, number>)[key.name] = Number(value);
    }
  }
  return values;
}

/** "Key=Value" lines (tgtadm --mode target --op show --tid N) as pairs. */
export function parseKeyValueLines(text: string): Array<[string, string]> {
  return text.split('\n').flatMap((line): Array<[string, string]> => {
    const match = /^\s*([A-Za-z][A-Za-z0-9_]*)=(.*)$/.exec(line);
    return match ? [[match[1]!, match[2]!.trim()]] : [];
  });
}

/**
 * What a libiscsi session negotiated, from libiscsi's debug log (LIBISCSI_DEBUG=6): the
 * target's Login Response keys, one "libiscsi:6 TargetLoginReply: Key=Value [target]"
 * line each. For the keys negotiated by OR, AND or minimum the responder's answer is
 * the outcome (RFC 7143 6.2), so these are the session's values as the target gave
 * them. A log with several logins (reconnects) gives the last login's values.
 */
export function parseLibiscsiLoginReplies(log: string): IscsiSessionParamValues {
  const pairs: Array<[string, string]> = [];
  for (const line of log.split('\n')) {
    const match = /TargetLoginReply: ([A-Za-z][A-Za-z0-9]*)=(\S*)/.exec(line);
    if (!match) continue;
    // TargetPortalGroupTag opens every login's reply (it is the first key a target
    // sends on a leading login): a new login starts afresh.
    if (match[1] === 'TargetPortalGroupTag') pairs.length = 0;
    pairs.push([match[1]!, match[2]!]);
  }
  return iscsiSessionParamsFromPairs(pairs);
}
