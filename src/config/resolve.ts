import { accessSync, constants, lstatSync, type Stats } from 'node:fs';
import type { BlockList } from 'node:net';
import { dirname } from 'node:path';
import { TokenCodec } from '../stores/codec.js';
import { stateFileIsSymlink } from '../stores/file.js';
import type { RedisTlsFiles } from '../stores/index.js';
import { FILE_LIMITS, describeFileType, readRegularFileSync } from '../util/safe-file.js';
import { Secret } from '../util/secret.js';
import { readSecretFileAtStart, SecretFile } from '../util/secret-file.js';
import type { SecretSource } from '../util/secret-source.js';
import {
  DEFAULT_RETRY_ON,
  REFRESH_DEFAULTS,
  TIMEOUT_DEFAULTS,
  type ListenConfig,
  type RawAccount,
  type RawConfig,
  type RefreshPolicyInput,
  type SessionAuthConfig,
  type TlsConfig,
  type InjectConfig,
} from './schema.js';
import { messageOf } from '../util/errors.js';
import type { ConfigProblem } from './problems.js';
import { resolveOAuth2, type OAuth2Auth } from './resolve-oauth2.js';
import { checkCertificatePair, secretSource } from './secret-settings.js';
import { resolveEgress, type EgressPolicy } from './egress.js';
import { buildAddressList, coversAFamily } from './address-ranges.js';
import { resolveTracing } from './tracing.js';
import type { TracingOptions } from '../util/tracing.js';

export type { ConfigProblem } from './problems.js';
export type { OAuth2Auth } from './resolve-oauth2.js';

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

export type AuthConfig = SessionAuth | OAuth2Auth;

/** Every secret of an account that lives in a file (R6: watched for failed reads). */
export function secretFilesOf(auth: AuthConfig): SecretFile[] {
  const sources =
    auth.flow === 'session'
      ? [auth.password]
      : [
          auth.clientSecret,
          auth.password,
          auth.refreshToken,
          auth.privateKey,
          auth.assertion,
          auth.subjectToken,
          auth.actorToken,
        ];
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
  /** S4: `allowsAnyAddress` is true when `allow`'s ranges together cover all of IPv4 or all of IPv6 (the default does). */
  admin: { host: string; port: number; allow: BlockList; allowsAnyAddress: boolean; apiKeys: readonly Secret[] };
  shutdownTimeoutMs: number;
  clientIdleTimeoutMs: number;
  /** R9: data-plane bounds. */
  limits: { headersTimeoutMs: number; maxConnections: number; replayBudgetBytes: number };
  store: RawConfig['store'];
  /** F5, S1 and S2: who may use the data plane (addresses, keys), which Host names and origins it accepts, and whose forwarding headers are kept. */
  inbound: {
    allow: BlockList;
    apiKeys: readonly Secret[];
    hosts: readonly string[];
    origins: readonly string[];
    trustedProxies: BlockList;
  };
  logLevel: RawConfig['logLevel'];
  /** H3: where spans go; undefined: tracing is off (nothing of OpenTelemetry is loaded). */
  tracing: TracingOptions | undefined;
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
    admin: {
      host: raw.admin.host,
      port: raw.admin.port,
      allow: buildAddressList(raw.admin.allow, 'admin.allow', problems),
      allowsAnyAddress: coversAFamily(raw.admin.allow),
      apiKeys: apiKeysOf(raw.admin, 'admin', problems),
    },
    shutdownTimeoutMs: raw.shutdownTimeout,
    clientIdleTimeoutMs: raw.clientIdleTimeout,
    limits: {
      headersTimeoutMs: raw.limits.headersTimeout,
      maxConnections: raw.limits.maxConnections,
      replayBudgetBytes: raw.limits.replayBudget,
    },
    store: raw.store,
    inbound: {
      allow: buildAddressList(raw.inbound.allow, 'inbound.allow', problems),
      apiKeys: apiKeysOf(raw.inbound, 'inbound', problems),
      hosts: raw.inbound.hosts,
      origins: raw.inbound.origins,
      trustedProxies: buildAddressList(raw.inbound.trustedProxies, 'inbound.trustedProxies', problems),
    },
    logLevel: raw.logLevel,
    tracing: resolveTracing(raw.tracing, env, problems),
    accounts,
  };
}

/**
 * `apiKeys` and the keys in `apiKeyFiles` (one a line; blank lines ignored), read now: a file
 * that cannot be read, or holds no key, is a problem at `path.apiKeyFiles.INDEX` (R5, R6).
 */
function apiKeysOf(
  raw: { apiKeys: readonly string[]; apiKeyFiles: readonly string[] },
  path: string,
  problems: ConfigProblem[],
): Secret[] {
  const keys = raw.apiKeys.map((key) => new Secret(key));
  raw.apiKeyFiles.forEach((file, index) => {
    try {
      const lines = readSecretFileAtStart(file).secret.reveal().split(/\r?\n/);
      const found = lines.map((line) => line.trim()).filter((line) => line !== '');
      if (found.length === 0) problems.push({ path: `${path}.apiKeyFiles.${index}`, message: `${file} holds no key` });
      for (const key of found) keys.push(new Secret(key));
    } catch (error) {
      problems.push({ path: `${path}.apiKeyFiles.${index}`, message: messageOf(error) });
    }
  });
  return keys;
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
  checkCertificatePair(tls, `${path}.upstreamTls`, problems);

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
  if (store.tls !== undefined) checkRedisTls(store.tls, problems);
  if (store.passwordFile !== undefined) {
    try {
      readSecretFileAtStart(store.passwordFile);
    } catch (error) {
      problems.push({ path: 'store.passwordFile', message: messageOf(error) });
    }
  }
}

/** H1: `store.tls`: a certificate comes with its key, and every file named can be read. */
function checkRedisTls(tls: RedisTlsFiles, problems: ConfigProblem[]): void {
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined))
    problems.push({
      path: 'store.tls',
      message: 'give certFile and keyFile together (a client certificate and its key)',
    });
  for (const key of ['caFile', 'certFile', 'keyFile'] as const) {
    const path = tls[key];
    if (path === undefined) continue;
    try {
      readRegularFileSync(path, { maxBytes: FILE_LIMITS.secretOrKey });
    } catch (error) {
      problems.push({ path: `store.tls.${key}`, message: messageOf(error) });
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
