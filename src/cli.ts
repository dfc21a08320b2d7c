#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import dotenv from 'dotenv';
import { Sidecar } from './app.js';
import { parseCli, helpText, UsageError, type ParsedCli } from './cli-args.js';
import { ConfigError, loadConfig } from './config/load.js';
import { withEnvTwins } from './config/quick-mode.js';
import { demoInstructions, startDemo } from './demo/run.js';
import { createLogger, type Logger } from './util/logger.js';

/** Exit codes (CONTRACT §2) live here and nowhere else. */
const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: readonly string[]): Promise<number> {
  // .env first; real environment variables win over it (dotenv never overrides by default).
  dotenv.config({ quiet: true });
  let cli: ParsedCli;
  try {
    cli = parseCli(argv);
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
  const flags = withEnvTwins(cli.flags, process.env);
  const logger = createLogger({ level: flags['log-level'] ?? 'info' });

  if (cli.command === 'demo') {
    const demo = await startDemo({ flags, logger });
    process.stdout.write(demoInstructions(demo));
    return runUntilSignal(() => demo.stop(), logger);
  }

  let sidecar: Sidecar;
  try {
    const config = loadConfig({ file: cli.flags.config ?? nonEmpty(process.env.BEARER_SIDECAR_CONFIG), flags });
    logger.level = config.logLevel;
    sidecar = new Sidecar(config, { logger });
  } catch (error) {
    return usageFailure(error);
  }
  await sidecar.start();
  return runUntilSignal(() => sidecar.stop(), logger);
}

/** SIGTERM / SIGINT: drain and stop (exit 0); a second signal exits at once. */
function runUntilSignal(stop: () => Promise<void>, logger: Logger): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
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
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

function usageFailure(error: unknown): number {
  if (error instanceof ConfigError || error instanceof UsageError) {
    process.stderr.write(`bearer-sidecar: ${error instanceof UsageError ? 'usage: ' : 'bad configuration:\n'}${error.message.replace(/^/gm, error instanceof ConfigError ? '  ' : '')}\n`);
    return EXIT.usage;
  }
  throw error;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Timers are unref'd and servers closed: the process ends by itself; this is a backstop.
    setTimeout(() => process.exit(code), 1_000).unref();
  },
  (error: unknown) => {
    const code = (error as NodeJS.ErrnoException).code;
    process.stderr.write(`bearer-sidecar: ${code === 'EADDRINUSE' ? `address already in use: ${(error as Error).message}` : ((error as Error).stack ?? String(error))}\n`);
    process.exit(EXIT.failure);
  },
);
