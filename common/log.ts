import { destination, pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/** Field names whose values are secrets wherever they appear in a logged object. */
const SECRET_KEYS = new Set(['password', 'mutualPassword', 'secret', 'privateKey', 'key', 'token']);

/**
 * A copy of `value` with every secret field replaced by "***", at any depth. Used on
 * requests before they are logged and on anything published as an event.
 */
export function redactSecrets<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v)) as T;
  if (value === null || typeof value !== 'object' || Buffer.isBuffer(value)) return value;
  const copy: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    copy[k] = SECRET_KEYS.has(k) && typeof v === 'string' && v !== '' ? '***' : redactSecrets(v);
  }
  return copy as T;
}

/**
 * The process logger: JSON lines on stderr (stdout stays free for command output),
 * secret fields redacted by pino as a second line of defence.
 */
export function createLogger(options: { name: string; level?: string; destination?: number }): Logger {
  return pino(
    {
      name: options.name,
      level: options.level ?? process.env.VCSTOR_LOG_LEVEL ?? 'info',
      redact: { paths: ['*.password', '*.mutualPassword', '*.*.password', '*.*.mutualPassword'], censor: '***' },
      base: { pid: process.pid },
    },
    destination({ fd: options.destination ?? 2, sync: true }),
  );
}
