import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { FILE_LIMITS, readRegularFileSync, UnsafeFileError } from '../util/safe-file.js';
import { expandEnv } from './expand-env.js';
import { quickModeConfig, quickModeFlagFor, parseHostPort, SERVE_FLAGS } from './quick-mode.js';
import { resolveConfig, type ConfigProblem, type SidecarConfig } from './resolve.js';
import { configSchema } from './schema.js';
import { SidecarError, messageOf } from '../util/errors.js';

/** Bad configuration: every problem at once, each naming its path. The CLI exits 2 on it. */
export class ConfigError extends SidecarError {
  readonly problems: readonly ConfigProblem[];

  constructor(problems: readonly ConfigProblem[]) {
    super('BS_ERR_CONFIG', problems.map(formatProblem).join('\n'));
    this.problems = problems;
  }
}

export function formatProblem(problem: ConfigProblem): string {
  return `${problem.path}: ${problem.message}`;
}

export interface LoadOptions {
  /** Path of the config file, if any (from --config or BEARER_SIDECAR_CONFIG). */
  file?: string;
  /** Flag values (env twins already merged in), by flag name. */
  flags?: Record<string, string | undefined>;
  env?: NodeJS.ProcessEnv;
  /** `bearer-sidecar authorize NAME`: the account's refresh token is what is being made, so its absence is no problem. */
  authorizing?: string;
}

/** Reads, expands, validates and resolves the configuration, or throws ConfigError. */
export function loadConfig(options: LoadOptions): SidecarConfig {
  const env = options.env ?? process.env;
  const flags = options.flags ?? {};
  const problems: ConfigProblem[] = [];

  let raw: unknown;
  if (options.file !== undefined) {
    const usedQuickFlags = SERVE_FLAGS.filter((spec) => spec.quickMode && flags[spec.name] !== undefined).map(
      (spec) => `--${spec.name}`,
    );
    if (usedQuickFlags.length > 0) {
      problems.push({
        path: 'flags',
        message: `${usedQuickFlags.join(', ')} build a quick-mode account and cannot be combined with a config file`,
      });
    }
    raw = readConfigFile(options.file, problems);
  } else if (flags.upstream !== undefined) {
    return withQuickModeFlags(() =>
      parseConfig(quickModeConfig(flags), { env, flags, problems, authorizing: options.authorizing }),
    );
  } else {
    throw new ConfigError([
      {
        path: 'config',
        message:
          'no configuration: pass --config FILE, set BEARER_SIDECAR_CONFIG, or use quick mode (--upstream URL ...)',
      },
    ]);
  }
  if (raw === undefined) throw new ConfigError(problems);
  return parseConfig(raw, { env, flags, problems, authorizing: options.authorizing });
}

/** Quick mode: each problem also names the flag (or env twin) the user actually typed. */
function withQuickModeFlags(load: () => SidecarConfig): SidecarConfig {
  try {
    return load();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new ConfigError(
      error.problems.map((problem) => {
        const flag = quickModeFlagFor(problem.path);
        return flag === undefined ? problem : { ...problem, message: `${problem.message} (--${flag})` };
      }),
    );
  }
}

/** Expands, validates and resolves a config tree (from a file, quick mode, the demo or a test). */
export function parseConfig(
  raw: unknown,
  options: {
    env?: NodeJS.ProcessEnv;
    flags?: Record<string, string | undefined>;
    problems?: ConfigProblem[];
    authorizing?: string;
  } = {},
): SidecarConfig {
  const problems = options.problems ?? [];
  const expanded = expandEnv(raw, options.env ?? process.env, problems);
  applyAddressFlags(expanded, options.flags ?? {});
  const parsed = configSchema.safeParse(expanded);
  if (!parsed.success) {
    problems.push(...zodProblems(parsed.error));
    throw new ConfigError(problems);
  }
  const config = resolveConfig(parsed.data, problems);
  const bootstrapping =
    options.authorizing === undefined ? undefined : `accounts.${options.authorizing}.auth.refreshToken`;
  const remaining =
    bootstrapping === undefined ? problems : problems.filter((problem) => !problem.path.startsWith(bootstrapping));
  if (remaining.length > 0) throw new ConfigError(remaining);
  return config;
}

function readConfigFile(file: string, problems: ConfigProblem[]): unknown {
  let text: string;
  try {
    // R5: a regular file of at most 1 MiB; a FIFO is refused at once instead of blocking start-up.
    text = readRegularFileSync(file, { maxBytes: FILE_LIMITS.config }).toString('utf8');
  } catch (error) {
    if (!(error instanceof UnsafeFileError)) throw error;
    problems.push({ path: 'config', message: error.message });
    return undefined;
  }
  try {
    // YAML 1.2 is a superset of JSON, so one parser reads both.
    const value: unknown = parseYaml(text);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      problems.push({ path: 'config', message: `${file} must hold a mapping (accounts: ...)` });
      return undefined;
    }
    return value;
  } catch (error) {
    problems.push({
      path: 'config',
      message: `${file} is not valid YAML or JSON: ${messageOf(error).split('\n')[0]}`,
    });
    return undefined;
  }
}

/** --listen / --admin / --log-level override the file's values in both modes. */
function applyAddressFlags(config: unknown, flags: Record<string, string | undefined>): void {
  if (config === null || typeof config !== 'object') return;
  const target = config as Record<string, unknown>;
  if (flags.listen !== undefined) target.listen = parseHostPort(flags.listen);
  if (flags.admin !== undefined) target.admin = parseHostPort(flags.admin);
  if (flags['log-level'] !== undefined) target.logLevel = flags['log-level'];
}

function zodProblems(error: z.ZodError): ConfigProblem[] {
  return error.issues.map((issue) => {
    const path = issue.path.map(String).join('.') || '(root)';
    if (issue.code === 'unrecognized_keys') {
      return {
        path,
        message: `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((key) => JSON.stringify(key)).join(', ')}`,
      };
    }
    if (issue.code === 'invalid_union' && 'discriminator' in issue) {
      // zod already puts the discriminator at the end of the path; name it once.
      const discriminator = String(issue.discriminator);
      return {
        path: path.endsWith(`.${discriminator}`) || path === discriminator ? path : `${path}.${discriminator}`,
        message: issue.message,
      };
    }
    return { path, message: issue.message };
  });
}
