import { execa } from 'execa';
import type { Logger } from 'pino';
import { VcstorError, type ErrorCode } from './errors.js';

/** How one command is run. Every field is optional; the defaults are safe. */
export interface RunOptions {
  /** Kill the command after this long (ms). Default 60 s. */
  timeoutMs?: number;
  /** Abort the command (SIGTERM, then SIGKILL after `killGraceMs`). */
  signal?: AbortSignal;
  /** After SIGTERM, wait this long (ms) before SIGKILL. Default 2 s. */
  killGraceMs?: number;
  /** Text written to the command's standard input. */
  input?: string;
  /** Extra environment; LC_ALL=C is always set so outputs parse the same everywhere. */
  env?: Readonly<Record<string, string>>;
  cwd?: string;
  /** Exit codes that count as success. Default [0]. */
  okExitCodes?: readonly number[];
  /** Strings (passwords, secrets) masked as *** in logs and error messages. */
  sensitive?: readonly string[];
}

/** What a finished command produced. */
export interface CommandResult {
  command: string;
  args: readonly string[];
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/**
 * Runs programs with argument arrays, never through a shell. Drivers get one injected,
 * so tests of real-host drivers can record the exact command lines instead.
 */
export interface CommandRunner {
  /**
   * Run `command` with `args` and wait for it.
   * @throws CommandError: UNAVAILABLE when the program is not installed,
   *   DEADLINE_EXCEEDED on timeout, CANCELLED when the signal aborted it, and
   *   INTERNAL when it exited with a code not in `okExitCodes`.
   */
  run(command: string, args: readonly string[], options?: RunOptions): Promise<CommandResult>;
}

/** How a command failed, as data: the exit code, its stderr, whether it timed out. */
export class CommandError extends VcstorError {
  readonly commandLine: string;
  readonly exitCode: number | undefined;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  readonly canceled: boolean;

  constructor(
    code: ErrorCode,
    message: string,
    details: {
      commandLine: string;
      exitCode?: number;
      stdout?: string;
      stderr?: string;
      timedOut?: boolean;
      canceled?: boolean;
      cause?: unknown;
    },
  ) {
    super(code, message, { cause: details.cause });
    this.name = 'CommandError';
    this.commandLine = details.commandLine;
    this.exitCode = details.exitCode;
    this.stdout = details.stdout ?? '';
    this.stderr = details.stderr ?? '';
    this.timedOut = details.timedOut ?? false;
    this.canceled = details.canceled ?? false;
  }
}

export const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;
const DEFAULT_KILL_GRACE_MS = 2_000;

/** Mask every sensitive string in `text`. */
export function maskSensitive(text: string, sensitive: readonly string[] | undefined): string {
  let masked = text;
  for (const secret of sensitive ?? []) {
    if (secret.length > 0) masked = masked.split(secret).join('***');
  }
  return masked;
}

/** A command line for logs and messages: arguments quoted where needed, secrets masked. */
export function formatCommandLine(command: string, args: readonly string[], sensitive?: readonly string[]): string {
  const quote = (word: string) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`);
  return maskSensitive([command, ...args].map(quote).join(' '), sensitive);
}

function lastLines(text: string, count: number): string {
  return text.trim().split('\n').slice(-count).join(' | ');
}

/**
 * Decide whether a finished command succeeded; shared by the real runner and the
 * recording double so both fail the same way.
 */
export function checkExit(result: CommandResult, options: RunOptions): CommandResult {
  const ok = options.okExitCodes ?? [0];
  if (ok.includes(result.exitCode)) return result;
  const commandLine = formatCommandLine(result.command, result.args, options.sensitive);
  const why = lastLines(maskSensitive(result.stderr || result.stdout, options.sensitive), 3);
  return Promise.reject(
    new CommandError('INTERNAL', `${commandLine} exited with ${result.exitCode}${why ? `: ${why}` : ''}`, {
      commandLine,
      exitCode: result.exitCode,
      stdout: maskSensitive(result.stdout, options.sensitive),
      stderr: maskSensitive(result.stderr, options.sensitive),
    }),
  ) as never;
}

/** The real runner: execa, argument arrays, no shell, timeout, cancellation, kill escalation. */
export class ExecaCommandRunner implements CommandRunner {
  constructor(private readonly log?: Logger) {}

  async run(command: string, args: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
    const commandLine = formatCommandLine(command, args, options.sensitive);
    const timeoutMs = options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    if (options.signal?.aborted) {
      throw new CommandError('CANCELLED', `${commandLine} was not started: the operation was cancelled`, { commandLine, canceled: true });
    }
    this.log?.debug({ cmd: commandLine }, 'run');
    const started = performance.now();
    // The command runs in its own process group, and timeouts and cancellation signal
    // the whole group: a child it left running (holding our pipes) must not outlive it.
    const subprocess = execa(command, [...args], {
      shell: false,
      reject: false,
      detached: true,
      env: { ...options.env, LC_ALL: 'C' },
      cwd: options.cwd,
      input: options.input,
      stdin: options.input === undefined ? 'ignore' : 'pipe',
      stripFinalNewline: false,
      maxBuffer: 64 * 1024 * 1024,
    });
    let stoppedFor: 'timeout' | 'cancel' | undefined;
    let escalation: NodeJS.Timeout | undefined;
    const signalGroup = (signal: NodeJS.Signals) => {
      if (subprocess.pid === undefined) return;
      try {
        process.kill(-subprocess.pid, signal);
      } catch {
        // the group is gone already
      }
    };
    const stop = (why: 'timeout' | 'cancel') => {
      if (stoppedFor) return;
      stoppedFor = why;
      signalGroup('SIGTERM');
      escalation = setTimeout(() => signalGroup('SIGKILL'), options.killGraceMs ?? DEFAULT_KILL_GRACE_MS);
    };
    const timer = setTimeout(() => stop('timeout'), timeoutMs);
    const onAbort = () => stop('cancel');
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const result = await subprocess;
    clearTimeout(timer);
    clearTimeout(escalation);
    options.signal?.removeEventListener('abort', onAbort);
    const durationMs = Math.round(performance.now() - started);
    const rawStdout = String(result.stdout ?? '');
    const rawStderr = String(result.stderr ?? '');
    // What goes into an error is masked: tools echo secrets (targetcli prints passwords).
    const stdout = maskSensitive(rawStdout, options.sensitive);
    const stderr = maskSensitive(rawStderr, options.sensitive);
    if ((result as { code?: string }).code === 'ENOENT') {
      // No `cause`: execa's result holds the raw arguments, secrets included.
      throw new CommandError('UNAVAILABLE', `${command} is not installed on this host (not found in PATH)`, { commandLine });
    }
    if (stoppedFor === 'timeout') {
      throw new CommandError('DEADLINE_EXCEEDED', `${commandLine} did not finish within ${timeoutMs} ms and was killed`, {
        commandLine,
        stdout,
        stderr,
        timedOut: true,
      });
    }
    if (stoppedFor === 'cancel') {
      throw new CommandError('CANCELLED', `${commandLine} was cancelled`, { commandLine, stdout, stderr, canceled: true });
    }
    if (result.exitCode === undefined) {
      const why = result.signal ? `was killed by ${result.signal}` : `could not run: ${maskSensitive(String(result.originalMessage ?? ''), options.sensitive)}`;
      throw new CommandError('INTERNAL', `${commandLine} ${why}`, { commandLine, stdout, stderr });
    }
    this.log?.debug({ cmd: commandLine, exitCode: result.exitCode, ms: durationMs }, 'ran');
    return checkExit({ command, args, exitCode: result.exitCode, stdout: rawStdout, stderr: rawStderr, durationMs }, options);
  }
}
