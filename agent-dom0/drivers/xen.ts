import { stat } from 'node:fs/promises';
import { VcstorError, invalidArgument } from '../../common/errors.js';
import { CommandError, type CommandResult, type CommandRunner } from '../../common/runner.js';
import type { AttachedDisk, DomainDisk, DomainRunState, DomainSpec, DomainStatus, HypervisorDriver } from '../hypervisor.js';
import { checkAbsolutePath, renderDiskSpec, renderXlConfig, validateDomainName, vbdDeviceNumber } from './xl-config.js';
import { disksOfLibxlConfig, isNoSuchDomain, libxlConfigOf, parseJson, parseXlBlockList, parseXlList, pathsOfDryRun, xlComplaint, type XlBlockDevice } from './xl-output.js';

export { renderDiskSpec, renderVifSpec, renderXlConfig, validateDomainName, vbdDeviceNumber } from './xl-config.js';
export { parseXlBlockList, parseXlList, type XlBlockDevice } from './xl-output.js';

/**
 * The Xen hypervisor driven through xl (libxl's command line tool) on a real dom0.
 * Domains are described by xl config files (xl-config.ts writes them) and xl's output is
 * read by xl-output.ts. Every program runs through the injected CommandRunner, so a host
 * without xl gets the runner's UNAVAILABLE error.
 */

/** xl's own file name of domain 0 in `xl list`. */
const DOMAIN0_NAME = 'Domain-0';


/** How long a domain whose destroy failed may take to disappear by itself (see stop). */
const DESTROY_SETTLE_MS = 5_000;

/**
 * The Xen hypervisor, through xl. How vcstor's disk kinds map onto xl's disk syntax is
 * told at the top of xl-config.ts.
 */
export class XenHypervisor implements HypervisorDriver {
  /** Always 'xen'. */
  readonly driver = 'xen' as const;
  private readonly runner: CommandRunner;
  private readonly xl: string;

  /**
   * @param options.runner runs xl.
   * @param options.xl the xl program (default `xl`, found on PATH; Debian's is a wrapper
   *   around /usr/lib/xen-<version>/bin/xl).
   */
  constructor(options: { runner: CommandRunner; xl?: string }) {
    this.runner = options.runner;
    this.xl = options.xl ?? 'xl';
  }

  /**
   * The xl config text of `spec` ({@link renderXlConfig}). Pure: the same spec gives the
   * same text.
   * @throws VcstorError INVALID_ARGUMENT for a value xl's syntax cannot carry safely.
   */
  renderConfig(spec: DomainSpec): string {
    return renderXlConfig(spec);
  }

  /**
   * Let xl parse a config file without creating anything: `xl -N create PATH`. xl prints
   * "Parsing config from PATH" on stderr and the resulting libxl domain config as JSON on
   * stdout. It fails (exit 1) on syntax errors and bad disk parameters but only warns on
   * stderr, exit 0, about unknown keys and some bad values, so any stderr line besides
   * the "Parsing config" one counts as a complaint. xl does not check that files exist:
   * the disk targets, kernel and ramdisk of the parsed config are checked here.
   * Idempotent and read-only.
   * @throws VcstorError INVALID_ARGUMENT with xl's complaint or naming the missing path;
   *   UNAVAILABLE when xl is not installed or cannot reach the hypervisor ("cannot init
   *   xl context": no /dev/xen/privcmd or xenstored); CANCELLED, DEADLINE_EXCEEDED.
   */
  async checkConfig(configPath: string, signal: AbortSignal): Promise<void> {
    checkAbsolutePath('configPath', configPath);
    let result: CommandResult;
    try {
      result = await this.runner.run(this.xl, ['-N', 'create', configPath], { signal });
    } catch (err) {
      if (err instanceof CommandError && err.code === 'INTERNAL' && err.exitCode !== undefined) {
        if (/cannot init xl context/.test(err.stderr)) {
          throw new VcstorError('UNAVAILABLE', `xl cannot reach the Xen hypervisor on this host: ${xlComplaint(err.stderr)}`, { cause: err });
        }
        const complaint = xlComplaint(err.stderr) || xlComplaint(err.stdout) || `exit code ${err.exitCode}`;
        throw new VcstorError('INVALID_ARGUMENT', `xl rejects ${configPath}: ${complaint}`, { cause: err });
      }
      throw err;
    }
    const complaint = xlComplaint(result.stderr);
    if (complaint !== '') throw new VcstorError('INVALID_ARGUMENT', `xl complains about ${configPath}: ${complaint}`);
    for (const [what, file] of pathsOfDryRun(result.stdout)) {
      try {
        await stat(file);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const why = code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? String(err)})`;
        throw new VcstorError('INVALID_ARGUMENT', `${configPath}: ${what} ${file} ${why}`);
      }
    }
  }

  /**
   * Start a domain: `xl create PATH`, unless `xl list NAME` shows a domain of that name.
   * Idempotent: a running, blocked or paused domain is left as it is (false).
   * @throws VcstorError FAILED_PRECONDITION when the domain exists but has shut down,
   *   crashed or is dying (stop it with force to clear it first); INVALID_ARGUMENT for a
   *   bad name or path; the runner's CommandErrors for xl failures (INTERNAL with xl's
   *   stderr, UNAVAILABLE without xl, CANCELLED, DEADLINE_EXCEEDED).
   */
  async start(name: string, configPath: string, signal: AbortSignal): Promise<boolean> {
    validateDomainName('name', name);
    checkAbsolutePath('configPath', configPath);
    const current = await this.domainState(name, signal);
    if (current !== undefined) {
      if (current === 'shutdown' || current === 'crashed' || current === 'dying') {
        throw new VcstorError('FAILED_PRECONDITION', `domain ${name} exists but is ${current}: stop it with force before starting it again`);
      }
      return false;
    }
    try {
      await this.runner.run(this.xl, ['create', configPath], { signal });
    } catch (err) {
      // Another caller created it between our look and our create.
      if (err instanceof CommandError && /already exists/i.test(err.stderr)) return false;
      throw err;
    }
    return true;
  }

  /**
   * Stop a domain: `xl shutdown -w -F NAME` (ask the guest to power off and wait until it
   * has; -F falls back to the ACPI power button for HVM guests without PV drivers), killed
   * after `timeoutMs`; or `xl destroy NAME` when `force`. A domain that has already shut
   * down or crashed but still exists is destroyed to clear it, and counts as not running.
   * Idempotent: false when no such domain runs (including one that vanished meanwhile).
   * @throws VcstorError FAILED_PRECONDITION when the guest offers no way to ask it to shut
   *   down (use force); DEADLINE_EXCEEDED when it did not shut down within `timeoutMs`
   *   (it may still do so); the runner's other CommandErrors.
   */
  async stop(name: string, force: boolean, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    validateDomainName('name', name);
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw invalidArgument('timeoutMs', `${timeoutMs} is not a positive whole number of ms`);
    const current = await this.domainState(name, signal);
    if (current === undefined || current === 'dying') return false;
    const stillRunning = current !== 'shutdown' && current !== 'crashed';
    try {
      if (force || !stillRunning) {
        await this.runner.run(this.xl, ['destroy', name], { signal, timeoutMs });
      } else {
        await this.runner.run(this.xl, ['shutdown', '-w', '-F', name], { signal, timeoutMs });
      }
    } catch (err) {
      if (err instanceof CommandError && isNoSuchDomain(err.stderr)) return false;
      // Right after a shutdown, xl's own clean-up (the block scripts) may still hold the
      // domain: a destroy then fails ("Unable to destroy guest") and the domain is gone a
      // moment later (seen under Xen 4.17). Gone soon is stopped; still there is a failure.
      if (err instanceof CommandError && /Unable to destroy guest/.test(err.stderr) && (await this.goneWithin(name, DESTROY_SETTLE_MS, signal))) return false;
      if (err instanceof CommandError && /PV control interface not available/.test(err.stderr)) {
        throw new VcstorError(
          'FAILED_PRECONDITION',
          `domain ${name} cannot be asked to shut down (no PV drivers running in it yet, and no ACPI): stop it with force`,
          { cause: err },
        );
      }
      throw err;
    }
    return stillRunning;
  }

  /**
   * The domains `xl list` shows, without Domain-0.
   * @throws the runner's CommandErrors; VcstorError INTERNAL for output not understood.
   */
  async list(signal: AbortSignal): Promise<DomainStatus[]> {
    const result = await this.runner.run(this.xl, ['list'], { signal });
    return parseXlList(result.stdout).filter((domain) => domain.id !== 0 && domain.name !== DOMAIN0_NAME);
  }

  /**
   * Hot-plug a disk: `xl block-attach DOMAIN 'format=raw, vdev=…, access=…,
   * backendtype=…, target=…'`. Idempotent: when `xl block-list DOMAIN` already has the
   * vdev's device number and the domain's config (`xl list -l DOMAIN`) gives it the same
   * target, nothing runs. When the config cannot be read as JSON (xl.conf's
   * output_format=sxp) the vdev alone decides. The guest sees the disk as /dev/<vdev>
   * (Linux blkfront names xvd disks after the vdev).
   * @throws VcstorError INVALID_ARGUMENT for a disk that cannot be written
   *   ({@link renderDiskSpec}); NOT_FOUND when the domain does not exist;
   *   FAILED_PRECONDITION when the vdev holds another target; the runner's CommandErrors
   *   for xl failures (INTERNAL with xl's stderr, e.g. a hotplug script that failed).
   */
  async attachDisk(domain: string, disk: DomainDisk, signal: AbortSignal): Promise<AttachedDisk> {
    validateDomainName('domain', domain);
    const spec = renderDiskSpec(disk);
    const attached: AttachedDisk = { guestDevice: `/dev/${disk.vdev}` };
    const devices = await this.blockDevices(domain, signal);
    if (devices === undefined) throw new VcstorError('NOT_FOUND', `domain ${domain} does not exist`);
    if (devices.some((device) => device.deviceNumber === vbdDeviceNumber(disk.vdev))) {
      const target = await this.configuredTarget(domain, disk.vdev, signal);
      if (target !== undefined && target !== disk.target) {
        throw new VcstorError('FAILED_PRECONDITION', `${disk.vdev} of domain ${domain} already holds ${target}, not ${disk.target}`);
      }
      return attached;
    }
    await this.runner.run(this.xl, ['block-attach', domain, spec], { signal });
    return attached;
  }

  /**
   * Unplug a disk: `xl block-detach DOMAIN VDEV` (xl waits for the guest to release it).
   * Idempotent: false when `xl block-list` has no disk with that vdev, or the domain
   * does not exist (any more).
   * @throws VcstorError INVALID_ARGUMENT for a bad vdev or name; the runner's
   *   CommandErrors for xl failures (INTERNAL with xl's stderr).
   */
  async detachDisk(domain: string, vdev: string, signal: AbortSignal): Promise<boolean> {
    validateDomainName('domain', domain);
    const deviceNumber = vbdDeviceNumber(vdev);
    const devices = await this.blockDevices(domain, signal);
    if (!devices?.some((device) => device.deviceNumber === deviceNumber)) return false;
    try {
      await this.runner.run(this.xl, ['block-detach', domain, vdev], { signal });
    } catch (err) {
      // Detached (or the domain gone) between our look and our detach.
      if (err instanceof CommandError && (/not connected/.test(err.stderr) || isNoSuchDomain(err.stderr))) return false;
      throw err;
    }
    return true;
  }

  /** True when `xl list` stops showing the domain (or shows it dying) within `ms`. */
  private async goneWithin(name: string, ms: number, signal: AbortSignal): Promise<boolean> {
    const until = Date.now() + ms;
    for (;;) {
      const state = await this.domainState(name, signal);
      if (state === undefined || state === 'dying') return true;
      if (Date.now() >= until) return false;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  /** The state of the domain named `name`, or undefined when there is none. */
  private async domainState(name: string, signal: AbortSignal): Promise<DomainRunState | undefined> {
    const result = await this.runAboutDomain(['list', name], signal);
    return result && parseXlList(result.stdout).find((domain) => domain.name === name)?.state;
  }

  /**
   * The VBDs of a domain, or undefined when it does not exist. xl block-list reports an
   * unknown domain on stderr but still exits 0.
   */
  private async blockDevices(domain: string, signal: AbortSignal): Promise<XlBlockDevice[] | undefined> {
    const result = await this.runAboutDomain(['block-list', domain], signal);
    if (!result || isNoSuchDomain(result.stderr)) return undefined;
    return parseXlBlockList(result.stdout);
  }

  /** Run xl about one domain: undefined when it fails saying there is no such domain. */
  private async runAboutDomain(args: string[], signal: AbortSignal): Promise<CommandResult | undefined> {
    try {
      return await this.runner.run(this.xl, args, { signal });
    } catch (err) {
      if (err instanceof CommandError && isNoSuchDomain(err.stderr)) return undefined;
      throw err;
    }
  }

  /**
   * The target the domain's libxl config gives `vdev` (libxl keeps it up to date on
   * hot-plug), or undefined when the config is not JSON or has no such disk.
   */
  private async configuredTarget(domain: string, vdev: string, signal: AbortSignal): Promise<string | undefined> {
    const result = await this.runner.run(this.xl, ['list', '-l', domain], { signal });
    const entries = parseJson(result.stdout);
    for (const entry of Array.isArray(entries) ? entries : [entries]) {
      for (const disk of disksOfLibxlConfig(libxlConfigOf(entry))) {
        if (disk.vdev === vdev) return disk.pdevPath;
      }
    }
    return undefined;
  }
}
