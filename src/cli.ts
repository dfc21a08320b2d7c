#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import dotenv from 'dotenv';
import { Sidecar } from './app.js';
import { ConfigReloader } from './app-reload.js';
import type { SidecarConfig } from './config/resolve.js';
import { watchFileContent } from './util/file-watch.js';
import { allFlagVariables, flagsOf, helpText, parseCli, UsageError, type ParsedCli } from './cli-args.js';
import { AuthorizeError, DEFAULT_REDIRECT_TIMEOUT_MS, runAuthorize } from './commands/authorize.js';
import { runCheck } from './commands/check.js';
import { formatCheckReport } from './commands/check-report.js';
import { ConfigError, loadConfig } from './config/load.js';
import { flagLabel, withEnvTwins } from './config/quick-mode.js';
import { knownVariables, unknownVariableProblems } from './config/quick-mode-check.js';
import { demoInstructions, startDemo } from './demo/run.js';
import { parseDuration } from './util/duration.js';
import { createLogger, LOG_FORMATS, type LogFormat, type Logger } from './util/logger.js';
import { FILE_LIMITS, readRegularFileSync, UnsafeFileError } from './util/safe-file.js';
import { messageOf, asError } from './util/errors.js';

/** Exit codes (docs/contract.md §2) live here and nowhere else. */
const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: readonly string[]): Promise<number> {
  let cli: ParsedCli;
  let flags: Record<string, string | undefined>;
  let format: LogFormat | undefined;
  try {
    loadDotEnv();
    cli = parseCli(argv);
    flags = withEnvTwins(cli.flags, process.env, flagsOf(cli.command));
    format = logFormat(flags['log-format']);
    if (flags['log-level'] !== undefined && !LOG_LEVELS.includes(flags['log-level'])) {
      throw new UsageError(
        `${flagLabel('log-level')}: ${JSON.stringify(flags['log-level'])} is not a level (${LOG_LEVELS.join('|')})`,
      );
    }
  } catch (error) {
    return usageFailure(error);
  }
  if (cli.version) {
    process.stdout.write(`${version()}\n`);
    return EXIT.ok;
  }
  if (cli.help) {
    process.stdout.write(`${helpText(cli.command, version())}\n`);
    return EXIT.ok;
  }

  if (cli.command === 'check') return check(flags, format);
  if (cli.command === 'authorize') return authorize(cli.account ?? '', flags, format);

  // R5: from here on SIGTERM / SIGINT are a clean stop, even while start-up is still running.
  const signals = catchStopSignals();
  const logger = createLogger({ level: flags['log-level'] ?? 'info', format });
  if (cli.command === 'demo') {
    const unknown = unknownVariableProblems(process.env, new Set([...knownVariables(), ...allFlagVariables()]));
    if (unknown.length > 0) return usageFailure(new ConfigError(unknown));
    const starting = startDemo({ flags, logger });
    const stopped = signals.stopWith(async () => (await starting).stop(), logger);
    process.stdout.write(demoInstructions(await starting));
    return stopped;
  }

  return serve(flags, logger, signals);
}

/** The default command: the sidecar, until a stop signal; SIGHUP and --watch-config reload its config (H2). */
async function serve(flags: Record<string, string | undefined>, logger: Logger, signals: StopSignals): Promise<number> {
  let sidecar: Sidecar;
  const load = () => loadConfig({ file: flags.config, flags, knownEnv: allFlagVariables() });
  try {
    if (flags['watch-config'] === 'true' && flags.config === undefined)
      throw new UsageError(
        `${flagLabel('watch-config')} needs ${flagLabel('config')} FILE: quick mode has no file to watch`,
      );
    const config = load();
    logger.level = config.logLevel;
    sidecar = new Sidecar(config, { logger });
  } catch (error) {
    return usageFailure(error);
  }
  const unwatch = reloadOnRequest({
    sidecar,
    load,
    logger,
    file: flags.config,
    watch: flags['watch-config'] === 'true',
  });
  const stopped = signals.stopWith(async () => {
    unwatch();
    await sidecar.stop();
  }, logger);
  await sidecar.start();
  return stopped;
}

/**
 * H2: SIGHUP reloads the config file, and with --watch-config so does any change of its content.
 * In quick mode there is no file to read again: SIGHUP is logged and changes nothing. Returns the
 * function that stops both.
 */
function reloadOnRequest(options: {
  sidecar: Sidecar;
  load: () => SidecarConfig;
  logger: Logger;
  file: string | undefined;
  watch: boolean;
}): () => void {
  const { logger, file } = options;
  const reloader = new ConfigReloader({ ...options, applied: (config) => (logger.level = config.logLevel) });
  const onHangup = () => {
    if (file === undefined) logger.warn({ signal: 'SIGHUP' }, QUICK_MODE_RELOAD);
    else void reloader.reload('SIGHUP');
  };
  process.on('SIGHUP', onHangup);
  const unwatch =
    options.watch && file !== undefined
      ? watchFileContent(file, {
          onChange: () => void reloader.reload('file change'),
          onError: (error) => logger.error({ err: error }, 'watching the config file failed; SIGHUP still reloads it'),
        })
      : () => undefined;
  return () => {
    process.off('SIGHUP', onHangup);
    unwatch();
  };
}

const QUICK_MODE_RELOAD =
  'reload needs --config FILE: in quick mode the flags are the configuration, and they cannot change while running';

/** `check`: the report goes to stdout (a table, or JSON for scripts); logs go to stderr. */
async function check(flags: Record<string, string | undefined>, format: LogFormat | undefined): Promise<number> {
  const logger = createLogger({ level: flags['log-level'] ?? 'warn', format, fd: 2 });
  let config;
  try {
    config = loadConfig({
      file: flags.config,
      flags: { ...flags, 'log-level': undefined },
      knownEnv: allFlagVariables(),
    });
  } catch (error) {
    return usageFailure(error);
  }
  const result = await runCheck(config, { login: flags.login === 'true', logger });
  process.stdout.write(flags.json === 'true' ? `${JSON.stringify(result, null, 2)}\n` : formatCheckReport(result));
  logger.flush();
  return result.ok ? EXIT.ok : EXIT.failure;
}

/** `authorize ACCOUNT`: instructions and the URL to open go to stdout; logs to stderr. */
async function authorize(
  account: string,
  flags: Record<string, string | undefined>,
  format: LogFormat | undefined,
): Promise<number> {
  const logger = createLogger({ level: flags['log-level'] ?? 'warn', format, fd: 2 });
  let config;
  let redirectTimeoutMs = DEFAULT_REDIRECT_TIMEOUT_MS;
  try {
    if (flags['redirect-timeout'] !== undefined) {
      const parsed = parseDuration(flags['redirect-timeout']);
      if (parsed === undefined || parsed <= 0)
        throw new UsageError(
          `${flagLabel('redirect-timeout')}: ${JSON.stringify(flags['redirect-timeout'])} is not a duration (use 90s, 5m, ...)`,
        );
      redirectTimeoutMs = parsed;
    }
    config = loadConfig({
      file: flags.config,
      flags: { ...flags, 'log-level': undefined },
      authorizing: account,
      knownEnv: allFlagVariables(),
    });
  } catch (error) {
    return usageFailure(error);
  }
  try {
    await runAuthorize(config, {
      account,
      out: flags.out,
      redirectTimeoutMs,
      logger,
      print: (text) => process.stdout.write(text),
    });
    return EXIT.ok;
  } catch (error) {
    if (error instanceof ConfigError) return usageFailure(error);
    if (error instanceof AuthorizeError) {
      process.stderr.write(`bearer-sidecar authorize: ${error.message}\n`);
      return EXIT.failure;
    }
    throw error;
  } finally {
    logger.flush();
  }
}

/**
 * §2: a `.env` file in the working directory is loaded first; real environment variables win
 * over it. R5: read like every other file (a FIFO there is a configuration error, not a hang).
 */
function loadDotEnv(): void {
  const path = resolve('.env');
  let text: string;
  try {
    text = readRegularFileSync(path, { maxBytes: FILE_LIMITS.config }).toString('utf8');
  } catch (error) {
    if (error instanceof UnsafeFileError && error.reason === 'missing') return;
    if (error instanceof UnsafeFileError) throw new ConfigError([{ path: '.env', message: error.message }]);
    throw error;
  }
  dotenv.populate(process.env, dotenv.parse(text));
}

function logFormat(value: string | undefined): LogFormat | undefined {
  if (value === undefined) return undefined;
  if ((LOG_FORMATS as readonly string[]).includes(value)) return value as LogFormat;
  throw new UsageError(
    `${flagLabel('log-format')}: ${JSON.stringify(value)} is not a format (${LOG_FORMATS.join('|')})`,
  );
}

interface StopSignals {
  /** Resolves with the exit code once `stop` has run after a signal (at once if one already came). */
  stopWith(stop: () => Promise<void>, logger: Logger): Promise<number>;
}

/**
 * SIGTERM / SIGINT: drain and stop (exit 0); a second signal exits at once. Handlers are
 * installed before start-up (R5): a signal that comes before there is anything to stop is kept
 * and acted on as soon as there is.
 */
function catchStopSignals(): StopSignals {
  let pending: NodeJS.Signals | undefined;
  let onSignal: ((signal: NodeJS.Signals) => void) | undefined;
  const handler = (signal: NodeJS.Signals) => {
    if (onSignal !== undefined) onSignal(signal);
    else pending ??= signal;
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  return {
    stopWith(stop, logger) {
      return new Promise((resolve) => {
        let stopping = false;
        onSignal = (signal) => {
          if (stopping) {
            logger.warn({ signal }, 'second signal: exiting now');
            logger.flush();
            process.exit(EXIT.failure);
          }
          stopping = true;
          logger.info({ signal }, 'stopping: no new connections, finishing in-flight requests');
          stop().then(
            () => resolve(EXIT.ok),
            (error: unknown) => {
              logger.error({ err: error }, 'error while stopping');
              resolve(EXIT.failure);
            },
          );
        };
        if (pending !== undefined) onSignal(pending);
      });
    },
  };
}

function usageFailure(error: unknown): number {
  if (error instanceof ConfigError || error instanceof UsageError) {
    process.stderr.write(
      `bearer-sidecar: ${error instanceof UsageError ? 'usage: ' : 'bad configuration:\n'}${error.message.replace(/^/gm, error instanceof ConfigError ? '  ' : '')}\n`,
    );
    return EXIT.usage;
  }
  throw error;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Timers are unref'd and servers closed: the process ends by itself; this is a backstop.
    setTimeout(() => process.exit(code), 1_000).unref();
  },
  (error: unknown) => {
    const code = (error as NodeJS.ErrnoException).code;
    process.stderr.write(
      `bearer-sidecar: ${code === 'EADDRINUSE' ? `address already in use: ${messageOf(error)}` : (asError(error).stack ?? String(error))}\n`,
    );
    process.exit(EXIT.failure);
  },
);
