/*
 * Quick mode (docs/contract.md §2): one account named `default` built from flags or their
 * BEARER_SIDECAR_* environment twins, for a laptop in front of curl.
 */

export interface FlagSpec {
  name: string;
  /** What the value is, for --help. Absent for boolean flags (`--json`). */
  value?: string;
  description: string;
  /** The value used when neither the flag nor its environment twin is given, for --help. */
  default?: string;
  /** Quick-mode flags build the `default` account; they cannot be mixed with --config. */
  quickMode?: boolean;
  /** May be given several times; the values arrive joined by commas, as in the environment twin. */
  multiple?: boolean;
}

export const LOG_LEVEL_FLAG: FlagSpec = {
  name: 'log-level',
  value: 'LEVEL',
  description: 'fatal|error|warn|info|debug|trace|silent (overrides logLevel of the file)',
  default: 'info',
};
export const LOG_FORMAT_FLAG: FlagSpec = {
  name: 'log-format',
  value: 'FORMAT',
  description: 'json|pretty',
  default: 'pretty on a terminal, else json',
};
export const LOG_FLAGS: readonly FlagSpec[] = [LOG_LEVEL_FLAG, LOG_FORMAT_FLAG];

/** Quick mode (docs/contract.md §2): these build one account named `default`. */
export const QUICK_MODE_FLAGS: readonly FlagSpec[] = [
  { name: 'upstream', value: 'URL', description: 'base URL of the API to call', quickMode: true },
  {
    name: 'flow',
    value: 'oauth2|session',
    description: 'token dialect',
    default: 'oauth2 (session with --login-url)',
    quickMode: true,
  },
  { name: 'token-url', value: 'URL', description: 'oauth2: token endpoint', quickMode: true },
  {
    name: 'grant',
    value: 'GRANT',
    description: 'oauth2: client_credentials|password|refresh_token',
    default: 'client_credentials',
    quickMode: true,
  },
  { name: 'client-id', value: 'ID', description: 'oauth2: client id', quickMode: true },
  { name: 'client-secret-file', value: 'FILE', description: 'oauth2: file holding the client secret', quickMode: true },
  { name: 'scope', value: 'SCOPE', description: 'oauth2: scope', quickMode: true },
  { name: 'audience', value: 'AUD', description: 'oauth2: audience', quickMode: true },
  { name: 'username', value: 'NAME', description: 'oauth2 password grant / session: user name', quickMode: true },
  { name: 'password-file', value: 'FILE', description: 'file holding the password', quickMode: true },
  {
    name: 'refresh-token-file',
    value: 'FILE',
    description: 'oauth2 refresh_token grant: file holding the refresh token',
    quickMode: true,
  },
  { name: 'login-url', value: 'URL', description: 'session: login endpoint', quickMode: true },
  {
    name: 'refresh-url',
    value: 'URL',
    description: 'session: refresh endpoint',
    default: 'none: every renewal is a login',
    quickMode: true,
  },
  { name: 'account-id', value: 'ID', description: 'session: account_id sent at login', quickMode: true },
  {
    name: 'allow',
    value: 'CIDR',
    description: 'client addresses that may use the sidecar (repeatable or comma-separated; replaces the default)',
    default: '127.0.0.0/8,::1/128',
    quickMode: true,
    multiple: true,
  },
  {
    name: 'host',
    value: 'NAME',
    description:
      'a Host name clients use besides localhost and IP addresses, e.g. a Service name (repeatable or comma-separated; others get 403)',
    default: 'none',
    quickMode: true,
    multiple: true,
  },
  {
    name: 'api-key-file',
    value: 'FILE',
    description: 'file of API keys (one a line): clients must then send X-Sidecar-Key: <key>',
    default: 'none: no key needed',
    quickMode: true,
  },
];

/**
 * Quick mode's secrets as environment variables (there is no flag: a secret in argv is visible
 * to every user of the machine through ps). Less safe than the …-file flags: the environment of a
 * process shows in /proc/PID/environ, `docker inspect` and crash dumps.
 */
export const SECRET_VARIABLES = {
  clientSecret: { variable: 'BEARER_SIDECAR_CLIENT_SECRET', fileFlag: 'client-secret-file', cliFlag: 'client-secret' },
  password: { variable: 'BEARER_SIDECAR_PASSWORD', fileFlag: 'password-file', cliFlag: 'password' },
  refreshToken: { variable: 'BEARER_SIDECAR_REFRESH_TOKEN', fileFlag: 'refresh-token-file', cliFlag: 'refresh-token' },
} as const;
export type SecretKey = keyof typeof SECRET_VARIABLES;

export const CONFIG_FLAG: FlagSpec = {
  name: 'config',
  value: 'FILE',
  description: 'YAML or JSON config file',
  default: 'quick mode from the flags below',
};

export const SERVE_FLAGS: readonly FlagSpec[] = [
  CONFIG_FLAG,
  {
    name: 'watch-config',
    description: 'reload the config file whenever it changes (SIGHUP always reloads it)',
    default: 'off: reload on SIGHUP only',
  },
  ...LOG_FLAGS,
  {
    name: 'listen',
    value: '[HOST:]PORT',
    description: 'data plane address (overrides listen of the file)',
    default: '127.0.0.1:8080',
  },
  {
    name: 'admin',
    value: '[HOST:]PORT',
    description: 'admin address (overrides admin of the file)',
    default: '127.0.0.1:9464',
  },
  ...QUICK_MODE_FLAGS,
];

/** The environment twin of a flag: `token-url` -> `BEARER_SIDECAR_TOKEN_URL`. */
export function envTwin(flag: string): string {
  return `BEARER_SIDECAR_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/** How a problem names a flag: `--token-url (BEARER_SIDECAR_TOKEN_URL)`. */
export function flagLabel(flag: string): string {
  return `--${flag} (${envTwin(flag)})`;
}

/** Environment values that switch a boolean flag on (`BEARER_SIDECAR_JSON=1`). */
const TRUE_VALUES = new Set(['1', 'true', 'yes', 'on']);

/**
 * Flag values with their env twins filled in where the flag itself was not given.
 * Boolean flags hold 'true' when on, undefined when off.
 */
export function withEnvTwins(
  flags: Record<string, string | undefined>,
  env: NodeJS.ProcessEnv,
  specs: readonly FlagSpec[] = SERVE_FLAGS,
): Record<string, string | undefined> {
  const merged: Record<string, string | undefined> = {};
  for (const spec of specs) {
    const fromEnv = nonEmpty(env[envTwin(spec.name)]);
    if (spec.value === undefined) {
      merged[spec.name] =
        flags[spec.name] ?? (fromEnv !== undefined && TRUE_VALUES.has(fromEnv.toLowerCase()) ? 'true' : undefined);
    } else {
      merged[spec.name] = flags[spec.name] ?? fromEnv;
    }
  }
  return merged;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** Which flag sets which `auth` key, per flow (quick mode builds one account named `default`). */
export const SESSION_AUTH_FLAGS = {
  loginUrl: 'login-url',
  refreshUrl: 'refresh-url',
  username: 'username',
  passwordFile: 'password-file',
  accountId: 'account-id',
} as const;
export const OAUTH2_AUTH_FLAGS = {
  tokenUrl: 'token-url',
  grant: 'grant',
  clientId: 'client-id',
  clientSecretFile: 'client-secret-file',
  scope: 'scope',
  audience: 'audience',
  username: 'username',
  passwordFile: 'password-file',
  refreshTokenFile: 'refresh-token-file',
} as const;

/** The flow quick mode builds: --flow, else session when --login-url is given, else oauth2. */
export function quickModeFlow(flags: Record<string, string | undefined>): string {
  return flags.flow ?? (flags['login-url'] !== undefined ? 'session' : 'oauth2');
}

/**
 * Builds the raw config (before validation) of quick mode from flag values and, for the secrets,
 * the environment (SECRET_VARIABLES). Secrets are taken as they are: `$` is escaped so the
 * `${VAR}` expansion of the config tree leaves them alone.
 */
export function quickModeConfig(
  flags: Record<string, string | undefined>,
  env: NodeJS.ProcessEnv = {},
): Record<string, unknown> {
  const flow = quickModeFlow(flags);
  const keys: Record<string, string> = flow === 'session' ? SESSION_AUTH_FLAGS : OAUTH2_AUTH_FLAGS;
  const auth = Object.fromEntries(Object.entries(keys).map(([key, flag]) => [key, flags[flag]]));
  for (const [key, { variable }] of Object.entries(SECRET_VARIABLES)) {
    const value = env[variable];
    if (value !== undefined && value !== '' && (flow !== 'session' || key === 'password'))
      auth[key] = value.replace(/\$/g, '$$$$');
  }
  const allow = listFlag(flags.allow);
  const hosts = listFlag(flags.host);
  const keyFile = flags['api-key-file'];
  const inbound = dropUndefined({ allow, hosts, apiKeyFiles: keyFile === undefined ? undefined : [keyFile] });
  return {
    ...(Object.keys(inbound).length === 0 ? {} : { inbound }),
    accounts: { default: { upstream: flags.upstream, default: true, auth: dropUndefined({ flow, ...auth }) } },
  };
}

/** A repeatable flag's entries (`a, b` -> `[a, b]`), or undefined when the flag is not given. */
export function listFlag(value: string | undefined): string[] | undefined {
  return value
    ?.split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
}

export function dropUndefined(record: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).filter(([, value]) => value !== undefined));
}
