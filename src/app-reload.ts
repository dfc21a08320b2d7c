import { performance } from 'node:perf_hooks';
import type { Sidecar } from './app.js';
import { ConfigError, formatProblem } from './config/load.js';
import type { ConfigChanges } from './config/reload-diff.js';
import type { SidecarConfig } from './config/resolve.js';
import { messageOf } from './util/errors.js';
import type { Logger } from './util/logger.js';

/** What starts a reload: the signal, or a change of the watched file. */
export type ReloadTrigger = 'SIGHUP' | 'file change';

export interface ConfigReloaderOptions {
  sidecar: Sidecar;
  /** Reads and validates the configuration again; throws ConfigError with every problem. */
  load: () => SidecarConfig;
  logger: Logger;
  /** Called with the new configuration once it is applied (the CLI sets the log level). */
  applied?: (config: SidecarConfig) => void;
}

export const RELOAD_APPLIED = 'configuration reload applied';
export const RELOAD_REJECTED = 'configuration reload rejected; the running configuration stays';
export const RELOAD_FAILED =
  'configuration reload failed while it was being applied; restart the sidecar so that every account runs on one configuration';

/**
 * H2: reloads the configuration when asked: reads it, validates it, hands it to the sidecar, and
 * counts and logs the outcome (what changed, by account and setting names; never a value). One
 * reload runs at a time; asks that come meanwhile make one more reload after it.
 */
export class ConfigReloader {
  readonly #o: ConfigReloaderOptions;
  #running: Promise<void> | undefined;
  #again: ReloadTrigger | undefined;

  constructor(options: ConfigReloaderOptions) {
    this.#o = options;
  }

  /** Reloads now, or once the reload in progress ends; resolves when the configuration asked for is in place or refused. */
  reload(trigger: ReloadTrigger): Promise<void> {
    if (this.#running !== undefined) {
      this.#again = trigger;
      return this.#running;
    }
    this.#running = (async () => {
      let next: ReloadTrigger | undefined = trigger;
      while (next !== undefined) {
        this.#again = undefined;
        await this.#reloadOnce(next);
        next = this.#again;
      }
    })().finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #reloadOnce(trigger: ReloadTrigger): Promise<void> {
    const { sidecar, logger } = this.#o;
    // A signal during start-up is acted on once the sidecar serves.
    await sidecar.start();
    const started = performance.now();
    let config: SidecarConfig;
    try {
      config = this.#o.load();
    } catch (error) {
      const problems = error instanceof ConfigError ? error.problems.map(formatProblem) : [messageOf(error)];
      this.#rejected(trigger, problems);
      return;
    }
    let result: Awaited<ReturnType<Sidecar['reload']>>;
    try {
      result = await sidecar.reload(config);
    } catch (error) {
      // A file read between validation and use failed (a certificate rotated away meanwhile):
      // never a crash; part of the new configuration may be in place, so the log says to restart.
      sidecar.metrics.configReload('rejected');
      logger.error({ trigger, err: error }, RELOAD_FAILED);
      return;
    }
    if (result.outcome === 'rejected') {
      this.#rejected(trigger, result.reasons);
      return;
    }
    this.#o.applied?.(config);
    sidecar.metrics.configReload('applied');
    logger.info(
      {
        trigger,
        ...describeChanges(result.changes),
        rebound: result.rebound,
        data: sidecar.dataUrl(),
        admin: sidecar.adminUrl(),
        durationMs: Math.round((performance.now() - started) * 10) / 10,
      },
      RELOAD_APPLIED,
    );
  }

  #rejected(trigger: ReloadTrigger, problems: string[]): void {
    this.#o.sidecar.metrics.configReload('rejected');
    this.#o.logger.error({ trigger, problems }, RELOAD_REJECTED);
  }
}

/** The log fields of a reload: accounts added, removed and changed (with the settings that changed), top-level settings. */
export function describeChanges(changes: ConfigChanges): Record<string, unknown> {
  return {
    added: changes.added,
    removed: changes.removed,
    changed: Object.fromEntries(changes.changed.map(({ account, parts }) => [account, parts])),
    settings: changes.settings,
  };
}
