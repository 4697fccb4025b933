import { checkExit, formatCommandLine, type CommandResult, type CommandRunner, type RunOptions } from '../../common/runner.js';

/** One command a driver asked to run, as the recording runner saw it. */
export interface RecordedCall {
  command: string;
  args: readonly string[];
  /** The command line as one string (secrets masked), handy for assertions. */
  line: string;
  options: Omit<RunOptions, 'signal'>;
}

/** What a scripted command prints and returns. */
export interface ScriptedOutput {
  stdout?: string;
  stderr?: string;
  exitCode?: number;
}

type Matcher = (command: string, args: readonly string[]) => boolean;
type Reply = ScriptedOutput | Error | ((command: string, args: readonly string[]) => ScriptedOutput | Error);

/**
 * A CommandRunner test double for drivers that cannot run on this machine (LIO,
 * open-iscsi, kernel NFS, xl): it records every command line and answers with outputs
 * captured from the real tools. A command nobody scripted fails the test loudly.
 */
export class RecordingCommandRunner implements CommandRunner {
  readonly calls: RecordedCall[] = [];
  private readonly rules: Array<{ matches: Matcher; reply: Reply }> = [];

  /**
   * Answer commands whose program is `command` and whose arguments start with
   * `argsPrefix` (first matching rule wins).
   */
  on(command: string, argsPrefix: readonly string[], reply: Reply): this {
    return this.when((cmd, args) => cmd === command && argsPrefix.every((word, i) => args[i] === word), reply);
  }

  /** Answer commands for which `matches` is true. */
  when(matches: Matcher, reply: Reply): this {
    this.rules.push({ matches, reply });
    return this;
  }

  /** The recorded command lines, one string each. */
  get lines(): string[] {
    return this.calls.map((call) => call.line);
  }

  async run(command: string, args: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
    const { signal, ...rest } = options;
    this.calls.push({ command, args: [...args], line: formatCommandLine(command, args, options.sensitive), options: rest });
    if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('aborted');
    const rule = this.rules.find((r) => r.matches(command, args));
    if (!rule) {
      throw new Error(`RecordingCommandRunner: no scripted output for: ${formatCommandLine(command, args, options.sensitive)}`);
    }
    const reply = typeof rule.reply === 'function' ? rule.reply(command, args) : rule.reply;
    if (reply instanceof Error) throw reply;
    return checkExit(
      { command, args, exitCode: reply.exitCode ?? 0, stdout: reply.stdout ?? '', stderr: reply.stderr ?? '', durationMs: 0 },
      options,
    );
  }
}
