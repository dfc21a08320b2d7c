import { accessSync, constants, lstatSync, type Stats } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import { dirname } from 'node:path';
import { TokenCodec } from '../stores/codec.js';
import { stateFileIsSymlink } from '../stores/file.js';
import { FILE_LIMITS, describeFileType, readRegularFileSync } from '../util/safe-file.js';
import { Secret } from '../util/secret.js';
import { readSecretFileAtStart, SecretFile } from '../util/secret-file.js';
import type { SecretSource } from '../util/secret-source.js';
import {
  DEFAULT_RETRY_ON,
  REFRESH_DEFAULTS,
  TIMEOUT_DEFAULTS,
  type ListenConfig,
  type OAuth2AuthConfig,
  type RawAccount,
  type RawConfig,
  type RefreshPolicyInput,
  type SessionAuthConfig,
  type TlsConfig,
  type InjectConfig,
} from './schema.js';
import { messageOf } from '../util/errors.js';
import { resolveEgress, type EgressPolicy } from './egress.js';

/** One problem with the configuration, named by its path (`accounts.crm.auth.tokenUrl`). */
export interface ConfigProblem {
  path: string;
  message: string;
}

export interface RefreshPolicy {
  at: number;
  minIntervalMs: number;
  timeoutMs: number;
  waitForTokenMs: number;
  retryOn: readonly number[];
  replayMaxBody: number;
  defaultLifetimeMs: number;
  maxLifetimeMs: number;
}

export interface SessionAuth extends Omit<SessionAuthConfig, 'password' | 'passwordFile'> {
  password: SecretSource;
}

export interface OAuth2Auth extends Omit<
  OAuth2AuthConfig,
  'clientSecret' | 'clientSecretFile' | 'password' | 'passwordFile' | 'refreshToken' | 'refreshTokenFile'
> {
  clientSecret?: SecretSource;
  password?: SecretSource;
  refreshToken?: SecretSource;
}

export type AuthConfig = SessionAuth | OAuth2Auth;

/** Every secret of an account that lives in a file (R6: watched for failed reads). */
export function secretFilesOf(auth: AuthConfig): SecretFile[] {
  const sources = auth.flow === 'session' ? [auth.password] : [auth.clientSecret, auth.password, auth.refreshToken];
  return sources.filter((source): source is SecretFile => source?.kind === 'file');
}

export interface AccountConfig {
  name: string;
  upstream: URL;
  isDefault: boolean;
  route: { pathPrefix?: string; port?: number };
  auth: AuthConfig;
  refresh: RefreshPolicy;
  tls: TlsConfig;
  timeouts: { connectMs: number; responseMs: number; queueMs: number };
  /** R10: the size of the account's upstream pool. */
  connections: number;
  /** E6: which proxy carries its token requests and upstream requests. */
  egress: EgressPolicy;
  /** E5: where the token goes (defaults filled in: `Authorization`, `{type} {token}`). */
  inject: TokenPlacement;
}

/** E5: the token in a header, written by `format`, or in a query parameter. */
export type TokenPlacement = { header: string; format: string } | { query: string };

function tokenPlacement(inject: InjectConfig | undefined): TokenPlacement {
  if (inject?.query !== undefined) return { query: inject.query };
  return { header: (inject?.header ?? 'authorization').toLowerCase(), format: inject?.format ?? '{type} {token}' };
}

export interface SidecarConfig {
  listen: ListenConfig;
  admin: { host: string; port: number };
  shutdownTimeoutMs: number;
  clientIdleTimeoutMs: number;
  /** R9: data-plane bounds. */
  limits: { headersTimeoutMs: number; maxConnections: number; replayBudgetBytes: number };
  store: RawConfig['store'];
  inbound: { allow: BlockList; apiKeys: readonly Secret[] };
  logLevel: RawConfig['logLevel'];
  accounts: AccountConfig[];
}

/** Turns a schema-valid config into the typed form the app runs on, checking what spans fields. */
export function resolveConfig(
  raw: RawConfig,
  problems: ConfigProblem[],
  env: NodeJS.ProcessEnv = process.env,
): SidecarConfig {
  const accounts = Object.entries(raw.accounts).map(([name, account]) =>
    resolveAccount(name, account, { global: raw, env }, problems),
  );
  if (accounts.length === 0) problems.push({ path: 'accounts', message: 'at least one account is required' });
  checkRoutes(raw, accounts, problems);
  checkStore(raw.store, problems);
  return {
    listen: raw.listen,
    admin: raw.admin,
    shutdownTimeoutMs: raw.shutdownTimeout,
    clientIdleTimeoutMs: raw.clientIdleTimeout,
    limits: {
      headersTimeoutMs: raw.limits.headersTimeout,
      maxConnections: raw.limits.maxConnections,
      replayBudgetBytes: raw.limits.replayBudget,
    },
    store: raw.store,
    inbound: {
      allow: buildAllowList(raw.inbound.allow, problems),
      apiKeys: raw.inbound.apiKeys.map((key) => new Secret(key)),
    },
    logLevel: raw.logLevel,
    accounts,
  };
}

function resolveAccount(
  name: string,
  raw: RawAccount,
  { global, env }: { global: RawConfig; env: NodeJS.ProcessEnv },
  problems: ConfigProblem[],
): AccountConfig {
  const path = `accounts.${name}`;
  const globalRefresh: RefreshPolicyInput = global.refresh;
  // The account's own value, else the top-level `refresh:`, else the built-in default.
  const pick = <K extends keyof RefreshPolicyInput>(key: K) => raw.refresh[key] ?? globalRefresh[key];
  const refresh: RefreshPolicy = {
    at: pick('at') ?? REFRESH_DEFAULTS.at,
    minIntervalMs: pick('minInterval') ?? REFRESH_DEFAULTS.minInterval,
    timeoutMs: pick('timeout') ?? REFRESH_DEFAULTS.timeout,
    waitForTokenMs: pick('waitForToken') ?? REFRESH_DEFAULTS.waitForToken,
    retryOn: pick('retryOn') ?? DEFAULT_RETRY_ON[raw.auth.flow],
    replayMaxBody: pick('replayMaxBody') ?? REFRESH_DEFAULTS.replayMaxBody,
    defaultLifetimeMs: pick('defaultLifetime') ?? REFRESH_DEFAULTS.defaultLifetime,
    maxLifetimeMs: pick('maxLifetime') ?? REFRESH_DEFAULTS.maxLifetime,
  };
  if (refresh.defaultLifetimeMs <= 0)
    problems.push({ path: `${path}.refresh.defaultLifetime`, message: 'must be greater than 0' });
  if (refresh.maxLifetimeMs < refresh.defaultLifetimeMs) {
    problems.push({ path: `${path}.refresh.maxLifetime`, message: 'must be at least refresh.defaultLifetime' });
  }
  const tls = raw.upstreamTls ?? global.upstreamTls;
  if (tls.caFile !== undefined) checkRegularFile(tls.caFile, `${path}.upstreamTls.caFile`, problems);

  return {
    name,
    upstream: new URL(raw.upstream),
    isDefault: raw.default,
    route: raw.route,
    auth:
      raw.auth.flow === 'session'
        ? resolveSession(raw.auth, `${path}.auth`, problems)
        : resolveOAuth2(raw.auth, `${path}.auth`, problems, { chainInStore: global.store.type !== 'memory' }),
    refresh,
    tls,
    timeouts: {
      connectMs: raw.timeouts.connect ?? global.timeouts.connect ?? TIMEOUT_DEFAULTS.connect,
      responseMs: raw.timeouts.response ?? global.timeouts.response ?? TIMEOUT_DEFAULTS.response,
      queueMs: raw.timeouts.queue ?? global.timeouts.queue ?? TIMEOUT_DEFAULTS.queue,
    },
    connections: raw.connections,
    egress: resolveEgress(raw, env, path, problems),
    inject: tokenPlacement(raw.inject),
  };
}

function resolveSession(auth: SessionAuthConfig, path: string, problems: ConfigProblem[]): SessionAuth {
  const { password: inline, passwordFile, ...rest } = auth;
  const password = secretSource(inline, passwordFile, `${path}.password`, problems);
  if (password === undefined)
    problems.push({ path: `${path}.password`, message: 'required for flow session (password or passwordFile)' });
  return { ...rest, password: password ?? { kind: 'value', secret: new Secret('') } };
}

function resolveOAuth2(
  auth: OAuth2AuthConfig,
  path: string,
  problems: ConfigProblem[],
  context: { chainInStore: boolean },
): OAuth2Auth {
  const { clientSecret, clientSecretFile, password, passwordFile, refreshToken, refreshTokenFile, ...rest } = auth;
  const resolved: OAuth2Auth = {
    ...rest,
    clientSecret: secretSource(clientSecret, clientSecretFile, `${path}.clientSecret`, problems),
    password: secretSource(password, passwordFile, `${path}.password`, problems),
    refreshToken: secretSource(refreshToken, refreshTokenFile, `${path}.refreshToken`, problems),
  };
  if (resolved.grant === 'password') {
    if (resolved.username === undefined)
      problems.push({ path: `${path}.username`, message: 'required for grant password' });
    if (resolved.password === undefined)
      problems.push({ path: `${path}.password`, message: 'required for grant password (password or passwordFile)' });
  }
  // With a file/redis store the chain may live there alone (put there by `bearer-sidecar authorize`).
  if (resolved.grant === 'refresh_token' && resolved.refreshToken === undefined && !context.chainInStore) {
    problems.push({
      path: `${path}.refreshToken`,
      message:
        'required for grant refresh_token with the memory store (refreshToken or refreshTokenFile; bearer-sidecar authorize makes one)',
    });
  }
  if (resolved.grant === 'client_credentials' && resolved.clientId === undefined) {
    problems.push({ path: `${path}.clientId`, message: 'required for grant client_credentials' });
  }
  if (resolved.clientSecret !== undefined && resolved.clientId === undefined) {
    problems.push({ path: `${path}.clientId`, message: 'required when a client secret is set' });
  }
  return resolved;
}

/**
 * A secret given both inline and as a file is ambiguous: which one would a rotation change?
 * R6: an empty secret is a problem, never sent; a file is read now (R5: a regular file or a pipe,
 * at most 1 MiB) and its value kept as the last good one.
 */
function secretSource(
  inline: string | undefined,
  file: string | undefined,
  path: string,
  problems: ConfigProblem[],
): SecretSource | undefined {
  if (inline !== undefined && file !== undefined) {
    problems.push({ path, message: `set either ${lastKey(path)} or ${lastKey(path)}File, not both` });
  }
  if (file !== undefined) return secretFile(file, `${path}File`, problems);
  if (inline === '') problems.push({ path, message: 'is empty (an empty secret is never sent)' });
  return inline === undefined ? undefined : { kind: 'value', secret: new Secret(inline) };
}

function secretFile(file: string, path: string, problems: ConfigProblem[]): SecretFile {
  try {
    return new SecretFile(file, readSecretFileAtStart(file));
  } catch (error) {
    problems.push({ path, message: messageOf(error) });
    return new SecretFile(file);
  }
}

function lastKey(path: string): string {
  return path.slice(path.lastIndexOf('.') + 1);
}

/** R5: a CA, key or certificate file must be a regular file of at most 1 MiB. */
function checkRegularFile(file: string, path: string, problems: ConfigProblem[]): void {
  try {
    readRegularFileSync(file, { maxBytes: FILE_LIMITS.secretOrKey });
  } catch (error) {
    problems.push({ path, message: messageOf(error) });
  }
}

function checkRoutes(raw: RawConfig, accounts: AccountConfig[], problems: ConfigProblem[]): void {
  const defaults = accounts.filter((account) => account.isDefault);
  if (defaults.length > 1) {
    problems.push({
      path: `accounts.${defaults[1]?.name}.default`,
      message: `only one account may be the default (also set on ${defaults[0]?.name})`,
    });
  }
  const taken = new Map<number, string>();
  if ('port' in raw.listen && raw.listen.port !== 0) taken.set(raw.listen.port, 'listen.port');
  if (raw.admin.port !== 0) {
    if (taken.has(raw.admin.port))
      problems.push({ path: 'admin.port', message: `port ${raw.admin.port} is already used by listen.port` });
    taken.set(raw.admin.port, 'admin.port');
  }
  const prefixes = new Map<string, string>();
  for (const account of accounts) {
    const { port, pathPrefix } = account.route;
    if (port !== undefined && port !== 0) {
      const owner = taken.get(port);
      if (owner !== undefined)
        problems.push({
          path: `accounts.${account.name}.route.port`,
          message: `port ${port} is already used by ${owner}`,
        });
      taken.set(port, `accounts.${account.name}.route.port`);
    }
    if (pathPrefix !== undefined) {
      const owner = prefixes.get(pathPrefix);
      if (owner !== undefined)
        problems.push({
          path: `accounts.${account.name}.route.pathPrefix`,
          message: `${pathPrefix} is already the prefix of ${owner}`,
        });
      prefixes.set(pathPrefix, account.name);
    }
  }
}

function checkStore(store: RawConfig['store'], problems: ConfigProblem[]): void {
  if (store.type === 'memory') return;
  if (store.encryptionKeyFile !== undefined) {
    try {
      TokenCodec.fromKeyFile(store.encryptionKeyFile);
    } catch (error) {
      problems.push({ path: 'store.encryptionKeyFile', message: messageOf(error) });
    }
  }
  if (store.type === 'file') checkStatePath(store.path, problems);
  if (store.type === 'redis') checkRedisShape(store, problems);
}

/** H1: one server (`url`), a Sentinel group (`sentinels` + `name`) or a Cluster (`cluster`): exactly one. */
function checkRedisShape(store: Extract<RawConfig['store'], { type: 'redis' }>, problems: ConfigProblem[]): void {
  const shapes = [store.url, store.sentinels, store.cluster].filter((shape) => shape !== undefined).length;
  if (shapes !== 1)
    problems.push({
      path: 'store',
      message: 'give exactly one of url (one server), sentinels with name (Redis Sentinel) or cluster (Redis Cluster)',
    });
  if (store.sentinels !== undefined && store.name === undefined)
    problems.push({ path: 'store.name', message: 'the name of the master the sentinels monitor is required' });
  if (store.name !== undefined && store.sentinels === undefined)
    problems.push({ path: 'store.name', message: 'only used with sentinels' });
  if (store.passwordFile !== undefined) {
    try {
      readSecretFileAtStart(store.passwordFile);
    } catch (error) {
      problems.push({ path: 'store.passwordFile', message: messageOf(error) });
    }
  }
}

/**
 * R5: the state file may not exist yet, but what is there must be a regular file, and not a
 * symlink: the store replaces and chmods it, and must never do so to whatever a link points to.
 */
function checkStatePath(path: string, problems: ConfigProblem[]): void {
  const dir = dirname(path);
  try {
    accessSync(dir, constants.W_OK);
  } catch (error) {
    problems.push({
      path: 'store.path',
      message: `cannot write in ${dir} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    });
  }
  let stats: Stats;
  try {
    stats = lstatSync(path);
  } catch {
    return; // Missing (created at the first save), or its directory is unusable (reported above).
  }
  if (stats.isSymbolicLink()) {
    problems.push({ path: 'store.path', message: stateFileIsSymlink(path) });
  } else if (!stats.isFile()) {
    problems.push({ path: 'store.path', message: `${path} is ${describeFileType(stats)}, not a regular file` });
  }
}

function buildAllowList(entries: readonly string[], problems: ConfigProblem[]): BlockList {
  const list = new BlockList();
  entries.forEach((entry, index) => {
    const range = addressRangeOf(entry);
    if (range === undefined) {
      problems.push({
        path: `inbound.allow.${index}`,
        message: `not an address or CIDR range: ${JSON.stringify(entry)}`,
      });
      return;
    }
    list.addSubnet(range.address, range.prefix, range.family);
  });
  return list;
}

/**
 * An `inbound.allow` entry (`10.0.0.0/8`, `::1`, `192.168.1.7`) as a subnet, or undefined when it
 * is not exactly an address or a CIDR range. Strict: "10.0.0.0/" or "10.0.0.0/8/16" must not
 * quietly become a wider range.
 */
export function addressRangeOf(
  entry: string,
): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const match = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(entry.trim());
  const address = match?.[1] ?? '';
  const family = isIP(address);
  const maxPrefix = family === 6 ? 128 : 32;
  const prefix = match?.[2] === undefined ? maxPrefix : Number(match[2]);
  if (match === null || family === 0 || prefix > maxPrefix) return undefined;
  return { address, prefix, family: family === 6 ? 'ipv6' : 'ipv4' };
}
