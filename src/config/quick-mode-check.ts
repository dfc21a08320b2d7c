/*
 * Quick mode's problems in the words the user typed (docs/contract.md §2): each names the flag
 * and its environment twin (`--token-url (BEARER_SIDECAR_TOKEN_URL): required for --flow oauth2`),
 * never the path of the account quick mode builds behind the scenes.
 */
import { parseHostPort } from '../util/host-port.js';
import { nearestName } from '../util/nearest.js';
import {
  envTwin,
  flagLabel,
  listFlag,
  OAUTH2_AUTH_FLAGS,
  quickModeFlow,
  SECRET_VARIABLES,
  SERVE_FLAGS,
  SESSION_AUTH_FLAGS,
  type SecretKey,
} from './quick-mode.js';
import { addressRangeOf } from './address-ranges.js';
import type { ConfigProblem } from './resolve.js';
import { FLOWS, guessFlow, HOST_NAME_FIX, isHostName, isHttpUrl } from './schema.js';

const GRANTS = ['client_credentials', 'password', 'refresh_token'] as const;
const URL_FLAGS = ['upstream', 'token-url', 'login-url', 'refresh-url'];
const ADDRESS_FLAGS = ['listen', 'admin'] as const;

/** Flags that belong to one dialect only (`--username` and `--password-file` serve both). */
const DIALECT_FLAGS: Record<(typeof FLOWS)[number], readonly string[]> = {
  oauth2: Object.values(OAUTH2_AUTH_FLAGS).filter((flag) => !Object.values(SESSION_AUTH_FLAGS).includes(flag as never)),
  session: Object.values(SESSION_AUTH_FLAGS).filter(
    (flag) => !Object.values(OAUTH2_AUTH_FLAGS).includes(flag as never),
  ),
};

/** `--password-file (BEARER_SIDECAR_PASSWORD_FILE) or BEARER_SIDECAR_PASSWORD`: the two ways to give a secret. */
export function secretLabel(key: SecretKey): string {
  const { fileFlag, variable } = SECRET_VARIABLES[key];
  return `${flagLabel(fileFlag)} or ${variable}`;
}

/**
 * --listen / --admin (both modes): a value that is not [HOST:]PORT, or a port out of range, is a
 * problem named by the flag. Returns the problems; the good values are for the caller to apply.
 */
export function addressFlagProblems(flags: Record<string, string | undefined>): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const flag of ADDRESS_FLAGS) {
    const text = flags[flag];
    if (text === undefined) continue;
    const { port } = parseHostPort(text);
    if (typeof port !== 'number')
      problems.push({ path: flagLabel(flag), message: `${JSON.stringify(text)} is not [HOST:]PORT` });
    else if (port > 65_535)
      problems.push({
        path: flagLabel(flag),
        message: `${JSON.stringify(text)} is not [HOST:]PORT (a port is 0-65535)`,
      });
  }
  return problems;
}

/**
 * Everything wrong with quick mode's flags and secret variables, in flag order: values that are
 * empty or of the wrong form, flags of the other dialect, then what the flow and grant require.
 * A --flow that is no flow is reported, and the rest checked against the nearest flow.
 */
export function quickModeProblems(flags: Record<string, string | undefined>, env: NodeJS.ProcessEnv): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const add = (path: string, message: string) => problems.push({ path, message });
  const given = (flag: string) => flags[flag] !== undefined;
  for (const spec of SERVE_FLAGS.filter((flagSpec) => flagSpec.quickMode)) {
    const value = flags[spec.name];
    if (value === undefined) continue;
    if (value.trim() === '') add(flagLabel(spec.name), 'is empty');
    else if (URL_FLAGS.includes(spec.name) && !isHttpUrl(value))
      add(flagLabel(spec.name), `${JSON.stringify(value)} is not an http:// or https:// URL`);
    else if (spec.name === 'flow' && !(FLOWS as readonly string[]).includes(value))
      add(flagLabel('flow'), `${JSON.stringify(value)} is not a flow (oauth2 or session)`);
    else if (spec.name === 'grant' && !(GRANTS as readonly string[]).includes(value))
      add(
        flagLabel('grant'),
        `${JSON.stringify(value)} is not a grant (client_credentials, password or refresh_token)`,
      );
    else if (spec.name === 'allow') {
      for (const entry of value.split(',').filter((item) => item.trim() !== '')) {
        if (addressRangeOf(entry) === undefined)
          add(flagLabel('allow'), `${JSON.stringify(entry.trim())} is not an address or CIDR range`);
      }
    } else if (spec.name === 'host') {
      for (const entry of listFlag(value) ?? []) {
        if (!isHostName(entry))
          add(flagLabel('host'), `${JSON.stringify(entry)} is not a host name (${HOST_NAME_FIX})`);
      }
    }
  }
  const secrets = secretVariableProblems(flags, env, add);
  const flow = checkedFlow(flags);
  const why = flags.flow === undefined && flow === 'session' ? ', chosen because --login-url is given' : '';
  const other = flow === 'session' ? 'oauth2' : 'session';
  for (const flag of DIALECT_FLAGS[other].filter(given))
    add(flagLabel(flag), `not a flag of --flow ${flow}${why} (it is for --flow ${other})`);
  for (const key of ['clientSecret', 'refreshToken'] as const) {
    if (flow === 'session' && secrets.has(key))
      add(SECRET_VARIABLES[key].variable, `not used by --flow session${why} (it is for --flow oauth2)`);
  }
  requiredProblems(flow, flags, secrets, add);
  return problems;
}

/** The flow to check quick mode's flags against: the given one, or the nearest valid one to a typo. */
export function checkedFlow(flags: Record<string, string | undefined>): (typeof FLOWS)[number] {
  const flow = quickModeFlow(flags);
  return guessFlow(flow, flags['login-url'] !== undefined);
}

/** R6 for secret variables: empty is an error, and so is a variable together with its file flag. Returns the secrets given. */
function secretVariableProblems(
  flags: Record<string, string | undefined>,
  env: NodeJS.ProcessEnv,
  add: (path: string, message: string) => void,
): Set<SecretKey> {
  const secrets = new Set<SecretKey>();
  for (const key of Object.keys(SECRET_VARIABLES) as SecretKey[]) {
    const { variable, fileFlag } = SECRET_VARIABLES[key];
    const value = env[variable];
    if (flags[fileFlag] !== undefined) secrets.add(key);
    if (value === undefined) continue;
    secrets.add(key);
    if (value === '') add(variable, 'is empty (an empty secret is never sent)');
    else if (flags[fileFlag] !== undefined) add(variable, `set either it or ${flagLabel(fileFlag)}, not both`);
  }
  return secrets;
}

function requiredProblems(
  flow: (typeof FLOWS)[number],
  flags: Record<string, string | undefined>,
  secrets: ReadonlySet<SecretKey>,
  add: (path: string, message: string) => void,
): void {
  const need = (flag: string, reason: string) => {
    if (flags[flag] === undefined) add(flagLabel(flag), `required for ${reason}`);
  };
  const needSecret = (key: SecretKey, reason: string) => {
    if (!secrets.has(key)) add(secretLabel(key), `required for ${reason}`);
  };
  if (flow === 'session') {
    need('login-url', '--flow session');
    need('username', '--flow session');
    needSecret('password', '--flow session');
    return;
  }
  need('token-url', '--flow oauth2');
  const grant = flags.grant ?? 'client_credentials';
  if (grant === 'client_credentials') need('client-id', '--grant client_credentials');
  else if (secrets.has('clientSecret') && flags['client-id'] === undefined)
    add(flagLabel('client-id'), 'required when a client secret is given');
  if (grant === 'password') {
    need('username', '--grant password');
    needSecret('password', '--grant password');
  }
  if (grant === 'refresh_token') needSecret('refreshToken', '--grant refresh_token');
}

/**
 * The flag (or secret variable) behind a path of the account quick mode builds, for the problems
 * only validation finds (an unreadable secret file): `accounts.default.auth.clientSecretFile` ->
 * `--client-secret-file (BEARER_SIDECAR_CLIENT_SECRET_FILE)`. Undefined for other paths.
 */
export function quickModeLabelFor(path: string): string | undefined {
  const [first, second, third, key] = path.split('.');
  if (first === 'listen' || first === 'admin') return flagLabel(first);
  if (first === 'inbound' && second === 'allow') return flagLabel('allow');
  if (first === 'inbound' && second === 'hosts') return flagLabel('host');
  if (first === 'inbound' && second === 'apiKeyFiles') return flagLabel('api-key-file');
  if (first !== 'accounts' || second !== 'default') return undefined;
  if (third === 'upstream') return flagLabel('upstream');
  if (third !== 'auth' || key === undefined) return undefined;
  if (key === 'flow') return flagLabel('flow');
  if (key in SECRET_VARIABLES) return SECRET_VARIABLES[key as SecretKey].variable;
  const flag =
    (OAUTH2_AUTH_FLAGS as Record<string, string>)[key] ?? (SESSION_AUTH_FLAGS as Record<string, string>)[key];
  return flag === undefined ? undefined : flagLabel(flag);
}

/** Every BEARER_SIDECAR_* variable quick mode and serve read: the flags' twins and the secret variables. */
export function knownVariables(): Set<string> {
  return new Set([
    ...SERVE_FLAGS.map((spec) => envTwin(spec.name)),
    ...Object.values(SECRET_VARIABLES).map(({ variable }) => variable),
  ]);
}

/**
 * §2: a BEARER_SIDECAR_* variable (from the environment or .env) that is not known is a typo
 * until proven otherwise: a problem naming it and the nearest known name. Values are never shown.
 */
export function unknownVariableProblems(env: NodeJS.ProcessEnv, known: ReadonlySet<string>): ConfigProblem[] {
  return Object.keys(env)
    .filter((name) => name.startsWith('BEARER_SIDECAR_') && !known.has(name))
    .sort()
    .map((name) => {
      const nearest = nearestName(name.slice('BEARER_SIDECAR_'.length), [...known].map(withoutPrefix));
      return {
        path: name,
        message:
          nearest === undefined
            ? 'not a variable bearer-sidecar knows (see bearer-sidecar --help)'
            : `not a variable bearer-sidecar knows; did you mean BEARER_SIDECAR_${nearest}?`,
      };
    });
}

function withoutPrefix(name: string): string {
  return name.replace(/^BEARER_SIDECAR_/, '');
}
