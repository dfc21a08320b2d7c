import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { FILE_LIMITS, readRegularFileSync, UnsafeFileError } from '../util/safe-file.js';
import { expandEnv, referencedVariables } from './expand-env.js';
import { parseHostPort } from '../util/host-port.js';
import { flagLabel, quickModeConfig, SECRET_VARIABLES, SERVE_FLAGS } from './quick-mode.js';
import {
  addressFlagProblems,
  checkedFlow,
  knownVariables,
  quickModeLabelFor,
  quickModeProblems,
  unknownVariableProblems,
} from './quick-mode-check.js';
import { resolveConfig, type ConfigProblem, type SidecarConfig } from './resolve.js';
import { configSchema } from './schema.js';
import { checkFlows, resolveRelativePaths, withoutEchoes, zodProblems } from './schema-problems.js';
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
  /**
   * When given, BEARER_SIDECAR_* variables of `env` are checked (§2): known are these names, the
   * twins of serve's flags, the secret variables and every `${VAR}` the config file names.
   */
  knownEnv?: ReadonlySet<string>;
}

/** Reads, expands, validates and resolves the configuration, or throws ConfigError (§2, §3). */
export function loadConfig(options: LoadOptions): SidecarConfig {
  const env = options.env ?? process.env;
  const flags = options.flags ?? {};
  const problems: ConfigProblem[] = [];

  if (options.file === undefined) {
    const envProblems = variableProblems(env, options.knownEnv, undefined);
    if (flags.upstream !== undefined) return loadQuickMode(flags, env, options, envProblems);
    const given = SERVE_FLAGS.find((spec) => spec.quickMode && flags[spec.name] !== undefined);
    throw new ConfigError([
      ...envProblems,
      given === undefined
        ? {
            path: 'config',
            message:
              'no configuration: pass --config FILE, set BEARER_SIDECAR_CONFIG, or use quick mode (--upstream URL ...)',
          }
        : { path: flagLabel('upstream'), message: `required in quick mode (--${given.name} was given)` },
    ]);
  }

  const raw = readConfigFile(options.file, problems);
  // A secret variable the file itself names as ${VAR} is the file's own business.
  const referenced = referencedVariables(raw);
  const usedQuickFlags = [
    ...SERVE_FLAGS.filter((spec) => spec.quickMode && flags[spec.name] !== undefined).map((spec) => `--${spec.name}`),
    ...Object.values(SECRET_VARIABLES)
      .map(({ variable }) => variable)
      .filter((variable) => env[variable] !== undefined && !referenced.has(variable)),
  ];
  if (usedQuickFlags.length > 0) {
    problems.unshift({
      path: 'flags',
      message: `${usedQuickFlags.join(', ')} build a quick-mode account and cannot be combined with a config file`,
    });
  }
  problems.unshift(...variableProblems(env, options.knownEnv, raw));
  if (raw === undefined) throw new ConfigError(problems);
  return parseConfig(raw, {
    env,
    flags,
    problems,
    authorizing: options.authorizing,
    baseDir: dirname(resolve(options.file)),
  });
}

/** §2: unknown BEARER_SIDECAR_* variables, when the caller asks for the check (`known` given). */
function variableProblems(
  env: NodeJS.ProcessEnv,
  known: ReadonlySet<string> | undefined,
  raw: unknown,
): ConfigProblem[] {
  if (known === undefined) return [];
  return unknownVariableProblems(env, new Set([...knownVariables(), ...known, ...referencedVariables(raw)]));
}

/**
 * Quick mode: the flags are checked in their own words first (quick-mode-check.ts); what only
 * validation finds (a secret file that cannot be read) is then named by its flag too, once.
 */
function loadQuickMode(
  flags: Record<string, string | undefined>,
  env: NodeJS.ProcessEnv,
  options: LoadOptions,
  envProblems: readonly ConfigProblem[],
): SidecarConfig {
  const problems = [...envProblems, ...addressFlagProblems(flags), ...quickModeProblems(flags, env)];
  let found: readonly ConfigProblem[] = [];
  try {
    // A --flow typo is reported above; the account is built as the nearest flow to check the rest.
    const raw = quickModeConfig({ ...flags, flow: checkedFlow(flags) }, env);
    const config = parseConfig(raw, { env, flags, authorizing: options.authorizing });
    if (problems.length === 0) return config;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    found = error.problems;
  }
  const named = problems.map((problem) => problem.path);
  for (const problem of found) {
    const label = quickModeLabelFor(problem.path) ?? problem.path;
    if (named.some((path) => path.includes(label))) continue;
    problems.push({ path: label, message: problem.message });
    named.push(label);
  }
  throw new ConfigError(problems);
}

/** Expands, validates and resolves a config tree (from a file, quick mode, the demo or a test). */
export function parseConfig(
  raw: unknown,
  options: {
    env?: NodeJS.ProcessEnv;
    flags?: Record<string, string | undefined>;
    problems?: ConfigProblem[];
    authorizing?: string;
    /** The config file's directory: relative file paths in the tree resolve against it (§3). */
    baseDir?: string;
  } = {},
): SidecarConfig {
  const problems = options.problems ?? [];
  const before = problems.length;
  const expanded = expandEnv(raw, options.env ?? process.env, problems);
  const variablePaths = new Set(problems.slice(before).map((problem) => problem.path));
  if (options.baseDir !== undefined) resolveRelativePaths(expanded, options.baseDir);
  applyAddressFlags(expanded, options.flags ?? {}, problems);
  checkFlows(expanded, problems);
  const parsed = configSchema.safeParse(expanded);
  if (!parsed.success) {
    problems.push(...zodProblems(parsed.error, expanded));
    throw new ConfigError(withoutEchoes(problems, variablePaths));
  }
  const config = resolveConfig(parsed.data, problems, options.env ?? process.env);
  const bootstrapping =
    options.authorizing === undefined ? undefined : `accounts.${options.authorizing}.auth.refreshToken`;
  const remaining = withoutEchoes(
    bootstrapping === undefined ? problems : problems.filter((problem) => !problem.path.startsWith(bootstrapping)),
    variablePaths,
  );
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

function objectOrEmpty(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

/** --listen / --admin / --log-level override the file's values in both modes (a bad address is a problem at its flag). */
function applyAddressFlags(
  config: unknown,
  flags: Record<string, string | undefined>,
  problems: ConfigProblem[],
): void {
  if (config === null || typeof config !== 'object') return;
  const target = config as Record<string, unknown>;
  const bad = addressFlagProblems(flags);
  if (!problems.some((problem) => bad.some((other) => other.path === problem.path))) problems.push(...bad);
  const badPaths = new Set(bad.map((problem) => problem.path));
  if (flags.listen !== undefined && !badPaths.has(flagLabel('listen'))) target.listen = parseHostPort(flags.listen);
  // --admin sets the address only: the file's admin.allow and admin.apiKeys stay (S4).
  if (flags.admin !== undefined && !badPaths.has(flagLabel('admin')))
    target.admin = { ...objectOrEmpty(target.admin), host: undefined, ...parseHostPort(flags.admin) };
  if (flags['log-level'] !== undefined) target.logLevel = flags['log-level'];
}
