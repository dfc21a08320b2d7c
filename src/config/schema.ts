import { SIGNING_ALGS } from '../util/signing-key.js';
import { nearestName } from '../util/nearest.js';
import { z } from 'zod';
import { parseDuration } from '../util/duration.js';
import { parseSize } from '../util/size.js';
import { HOST_NAME } from '../util/host-port.js';

/*
 * The configuration file's schema (docs/contract.md §3). Defaults live here and nowhere else.
 * Objects are strict so a typo is an error that names its path, not a silently ignored key.
 */

const duration = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const ms = parseDuration(value);
  if (ms === undefined) {
    ctx.addIssue({
      code: 'custom',
      message: `not a duration: ${JSON.stringify(value)} (use 500ms, 10s, 5m, 1h or a number of seconds)`,
    });
    return z.NEVER;
  }
  return ms;
});

const size = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const bytes = parseSize(value);
  if (bytes === undefined) {
    ctx.addIssue({
      code: 'custom',
      message: `not a size: ${JSON.stringify(value)} (use a number of bytes, or 512KiB, 32MiB, 1GiB)`,
    });
    return z.NEVER;
  }
  return bytes;
});

const httpUrl = z.string().refine(isHttpUrl, { message: 'not a URL (expected http:// or https://)' });

/** An absolute http:// or https:// URL (upstreams and token endpoints). */
export function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

const port = z.number().int().min(0).max(65535);

const hostPort = z.strictObject({
  host: z.string().min(1).default('127.0.0.1'),
  port,
});

/** S4: the admin port's address and who may use it (docs/contract.md S4). */
const adminSchema = z.strictObject({
  host: z.string().min(1).default('127.0.0.1'),
  port,
  /** Addresses and CIDR ranges that may connect at all (default: any). */
  allow: z.array(z.string()).default(['0.0.0.0/0', '::/0']),
  /** If any: /status and every POST need `Authorization: Bearer <key>`. */
  apiKeys: z.array(z.string().min(1)).default([]),
  /** More keys from files, one a line (read at start). */
  apiKeyFiles: z.array(z.string().min(1)).default([]),
});

const listenSchema = z.union([hostPort, z.strictObject({ path: z.string().min(1) })], {
  error: 'expected { host, port } (the port a number) or { path } (a unix socket)',
});

/** The loop guard needs a floor: with 0, a zero lifetime would be a busy loop (T6). */
const MIN_GUARD_MS = 1_000;

export const refreshPolicySchema = z.strictObject({
  at: z.number().gt(0).lt(1).optional(),
  minInterval: duration
    .refine((ms) => ms >= MIN_GUARD_MS, { message: 'must be at least 1s (the loop guard needs a floor)' })
    .optional(),
  timeout: duration.optional(),
  waitForToken: duration.optional(),
  retryOn: z.array(z.number().int().min(400).max(599)).optional(),
  replayMaxBody: z.number().int().min(0).optional(),
  defaultLifetime: duration.optional(),
  maxLifetime: duration.optional(),
});

/**
 * Upstream timeouts (resilience issue): to connect, and from the last byte sent to the response head;
 * R10: `queue`, the longest a request waits for a free connection of the account's pool.
 */
const timeoutsSchema = z.strictObject({
  connect: duration.optional(),
  response: duration.optional(),
  queue: duration.optional(),
});

/** R9: bounds on what clients can hold of the data plane (defaults: README, Configuration). */
const limitsSchema = z.strictObject({
  headersTimeout: duration
    .refine((ms) => ms >= 1, { message: 'must be greater than 0 (a request head needs a deadline)' })
    .default(20_000),
  maxConnections: z.number().int().min(1).default(4096),
  replayBudget: size.default(32 * 1024 * 1024),
});

const tlsSchema = z.strictObject({
  caFile: z.string().min(1).optional(),
  insecureSkipVerify: z.boolean().default(false),
  /** E2: a client certificate and its key for mutual TLS to the upstream. */
  certFile: z.string().min(1).optional(),
  keyFile: z.string().min(1).optional(),
});

/** E2: the client certificate of `tls_client_auth` (RFC 8705), shown to the token endpoint. */
const clientCertificateSchema = z.strictObject({
  certFile: z.string().min(1),
  keyFile: z.string().min(1),
});

const responseFieldsSchema = z.strictObject({
  token: z.string().default('token'),
  tokenLifetime: z.string().default('tokenLifetime'),
  tokenExpiration: z.string().default('tokenExpiration'),
  refreshToken: z.string().default('refreshToken'),
  refreshTokenExpiration: z.string().default('refreshTokenExpiration'),
});

const requestFieldsSchema = z.strictObject({
  username: z.string().default('username'),
  password: z.string().default('password'),
  accountId: z.string().default('account_id'),
  refreshToken: z.string().default('refreshToken'),
});

const sessionAuthSchema = z.strictObject({
  flow: z.literal('session'),
  loginUrl: httpUrl,
  refreshUrl: httpUrl.optional(),
  username: z.string().min(1),
  password: z.string().optional(),
  passwordFile: z.string().min(1).optional(),
  accountId: z.union([z.string(), z.number().int()]).optional(),
  fields: responseFieldsSchema.prefault({}),
  requestFields: requestFieldsSchema.prefault({}),
});

const oauth2AuthSchema = z.strictObject({
  flow: z.literal('oauth2'),
  tokenUrl: httpUrl,
  grant: z
    .enum(['client_credentials', 'password', 'refresh_token', 'jwt_bearer', 'token_exchange'])
    .default('client_credentials'),
  /** E3 jwt_bearer: the assertion (e.g. a projected service-account token), read at every token request. */
  assertionFile: z.string().min(1).optional(),
  /** E3 token_exchange (RFC 8693): the token to exchange, read at every token request, and its type. */
  subjectTokenFile: z.string().min(1).optional(),
  subjectTokenType: z.string().min(1).default('urn:ietf:params:oauth:token-type:jwt'),
  actorTokenFile: z.string().min(1).optional(),
  actorTokenType: z.string().min(1).optional(),
  requestedTokenType: z.string().min(1).optional(),
  resource: z.string().min(1).optional(),
  clientId: z.string().min(1).optional(),
  clientSecret: z.string().optional(),
  clientSecretFile: z.string().min(1).optional(),
  scope: z.string().optional(),
  audience: z.string().optional(),
  username: z.string().optional(),
  password: z.string().optional(),
  passwordFile: z.string().min(1).optional(),
  refreshToken: z.string().optional(),
  refreshTokenFile: z.string().min(1).optional(),
  /** How the client proves itself (E1): a secret (basic, body), a signed JWT, or nothing (a public client). */
  clientAuth: z
    .enum(['basic', 'body', 'client_secret_jwt', 'private_key_jwt', 'tls_client_auth', 'none'])
    .default('basic'),
  tls: clientCertificateSchema.optional(),
  /** private_key_jwt: a PKCS#8 PEM or a private JWK, read again at every token request. */
  privateKeyFile: z.string().min(1).optional(),
  signingAlg: z.enum(SIGNING_ALGS).optional(),
  /** The `kid` of the assertion's header (default: the JWK's own). */
  keyId: z.string().min(1).optional(),
  bodyEncoding: z.enum(['form', 'json']).default('form'),
  /** E4 DPoP (RFC 9449): the proof key, an EC P-256 or Ed25519 private key file; `{}`: an ES256 key made at start. */
  dpop: z.strictObject({ keyFile: z.string().min(1).optional() }).optional(),
  extraParams: z.record(z.string(), z.union([z.string(), z.null()])).default({}),
  authorizeUrl: httpUrl.optional(),
  redirectPort: port.optional(),
});

const authSchema = z.discriminatedUnion('flow', [sessionAuthSchema, oauth2AuthSchema]);

/** The token dialects (`auth.flow`). */
export const FLOWS = ['oauth2', 'session'] as const;
export type FlowName = (typeof FLOWS)[number];

/**
 * The flow to check an account against when `given` is not one: the nearest by name to a typo,
 * else `session` when a login URL is given, else `oauth2`; so one bad flow hides no other problem.
 */
export function guessFlow(given: unknown, hasLoginUrl: boolean): FlowName {
  if (typeof given === 'string' && (FLOWS as readonly string[]).includes(given)) return given as FlowName;
  const nearest = typeof given === 'string' ? (nearestName(given, FLOWS) as FlowName | undefined) : undefined;
  return nearest ?? (hasLoginUrl ? 'session' : 'oauth2');
}

/** RFC 9110 §5.1 field-name characters. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Headers the sidecar writes or that frame the request: never a place for the token (E5). */
const RESERVED_INJECT_HEADERS: ReadonlySet<string> = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'expect',
  'proxy-authorization',
  'proxy-connection',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-sidecar-account',
  'x-sidecar-key',
]);

/** E5: where the token goes upstream. `header` + `format`, or `query`; defaults: Authorization, `{type} {token}`. */
const injectSchema = z
  .strictObject({
    header: z
      .string()
      .regex(HEADER_NAME, 'not a header name')
      .refine((name) => !RESERVED_INJECT_HEADERS.has(name.toLowerCase()), {
        message: 'the sidecar writes or removes this header itself; choose another',
      })
      .optional(),
    format: z
      .string()
      .refine((format) => format.includes('{token}'), { message: 'must contain {token}' })
      .refine((format) => /^[\x21-\x7e]([\t\x20-\x7e]*[\x21-\x7e])?$/.test(format), {
        message: 'must be visible ASCII, without leading or trailing whitespace',
      })
      .optional(),
    query: z.string().min(1).optional(),
  })
  .refine((inject) => inject.query === undefined || (inject.header === undefined && inject.format === undefined), {
    message: 'query cannot be combined with header or format (the token goes in one place)',
  });

const accountSchema = z.strictObject({
  upstream: httpUrl,
  default: z.boolean().default(false),
  route: z
    .strictObject({
      pathPrefix: z
        .string()
        .regex(/^\/[^?#]*[^/?#]$/, 'must start with "/" and not end with "/" (e.g. /crm)')
        .optional(),
      port: port.optional(),
    })
    .prefault({}),
  auth: authSchema,
  refresh: refreshPolicySchema.prefault({}),
  upstreamTls: tlsSchema.optional(),
  timeouts: timeoutsSchema.prefault({}),
  /** R10: the most connections open to this upstream at once; more requests queue (`timeouts.queue`). */
  connections: z.number().int().min(1).default(128),
  /** E6: this account's egress proxy (http:// or https://), or null for none; unset: HTTPS_PROXY/HTTP_PROXY/NO_PROXY. */
  proxy: z.union([httpUrl, z.null()]).optional(),
  /** E6: `user:password` for whichever proxy the account uses. */
  proxyAuthFile: z.string().min(1).optional(),
  inject: injectSchema.optional(),
});

const redisUrl = z.string().refine((value) => /^(rediss?:\/\/[^\s]+|unix:\/\/\/[^\s]+)$/.test(value), {
  message: 'not a Redis URL (redis://host:port/db, rediss://… for TLS, or unix:///path/to/redis.sock)',
});

/** `host:port` of a sentinel or a cluster node (IPv6 in brackets: `[::1]:26379`). */
const redisAddress = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):\d{1,5}$/, 'not host:port (e.g. 10.0.0.1:26379)');

/** S1: a browser origin as the `Origin` header shows it: scheme://host[:port], nothing after. */
const ORIGIN = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::\d{1,5})?\/?$/;

/** A string that must match `pattern`; else a problem quoting it, with `fix`. */
function matching(pattern: RegExp, what: string, fix: string) {
  return z.string().superRefine((value, ctx) => {
    if (!pattern.test(value))
      ctx.addIssue({ code: 'custom', message: `not ${what}: ${JSON.stringify(value)} (${fix})` });
  });
}

/** How to write an `inbound.hosts` entry (or a `--host`), for the problem that refuses one. */
export const HOST_NAME_FIX = 'write the name alone, without scheme, port or path, e.g. bearer-sidecar.tools.svc';

/** S1: a Host name as `inbound.hosts` and `--host` take it (`bearer-sidecar.tools.svc`). */
export function isHostName(value: string): boolean {
  return HOST_NAME.test(value);
}

const hostName = matching(HOST_NAME, 'a host name', HOST_NAME_FIX);
const browserOrigin = matching(
  ORIGIN,
  'an origin',
  'write scheme://host[:port] as the browser sends it in Origin, with nothing after it, e.g. https://app.example',
);

const storeSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('memory') }),
  z.strictObject({
    type: z.literal('file'),
    path: z.string().min(1),
    /** 32 bytes (raw, hex or base64): secrets at rest are encrypted with AES-256-GCM. */
    encryptionKeyFile: z.string().min(1).optional(),
  }),
  z.strictObject({
    type: z.literal('redis'),
    /** One server. H1: or `sentinels` + `name` (Redis Sentinel), or `cluster` (Redis Cluster): exactly one of the three. */
    url: redisUrl.optional(),
    sentinels: z.array(redisAddress).min(1).optional(),
    /** The name of the master the sentinels monitor. */
    name: z.string().min(1).optional(),
    cluster: z.array(redisAddress).min(1).optional(),
    /** ACL user; the password comes from `passwordFile` (or the URL). */
    username: z.string().min(1).optional(),
    passwordFile: z.string().min(1).optional(),
    /** TLS to Redis (and to the sentinels): CA, and a client certificate when Redis asks for one. */
    tls: z
      .strictObject({
        caFile: z.string().min(1).optional(),
        certFile: z.string().min(1).optional(),
        keyFile: z.string().min(1).optional(),
      })
      .optional(),
    keyPrefix: z.string().default('bearer-sidecar:'),
    encryptionKeyFile: z.string().min(1).optional(),
  }),
]);

export const configSchema = z.strictObject({
  listen: listenSchema.prefault({ host: '127.0.0.1', port: 8080 }),
  admin: adminSchema.prefault({ host: '127.0.0.1', port: 9464 }),
  shutdownTimeout: duration.default(20_000),
  store: storeSchema.prefault({ type: 'memory' }),
  inbound: z
    .strictObject({
      allow: z.array(z.string()).default(['127.0.0.0/8', '::1/128']),
      apiKeys: z.array(z.string().min(1)).default([]),
      /** S5: files holding more keys, one a line (`--api-key-file` in quick mode). */
      apiKeyFiles: z.array(z.string().min(1)).default([]),
      /** S1: more Host names accepted besides loopback names, IP literals and the listen hosts (data plane and admin port). */
      hosts: z.array(hostName).default([]),
      /** S1: browser origins whose requests are accepted (none by default: web pages are refused). */
      origins: z.array(browserOrigin).default([]),
      /** S2: CIDRs of proxies whose Forwarded and X-Forwarded-* are kept (X-Forwarded-For appended to). */
      trustedProxies: z.array(z.string()).default([]),
    })
    .prefault({}),
  refresh: refreshPolicySchema.prefault({}),
  upstreamTls: tlsSchema.prefault({}),
  timeouts: timeoutsSchema.prefault({}),
  /** A client that sends no request-body bytes for this long is disconnected (stalled uploads). */
  clientIdleTimeout: duration.default(60_000),
  limits: limitsSchema.prefault({}),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** H3: OpenTelemetry tracing to this OTLP/HTTP base URL (`/v1/traces` is appended); off when absent. */
  tracing: z.strictObject({ endpoint: httpUrl.optional() }).optional(),
  accounts: z.record(
    z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'account names use letters, digits, "_", "." and "-"'),
    accountSchema,
  ),
});

export type RawConfig = z.output<typeof configSchema>;
export type RawAccount = z.output<typeof accountSchema>;
export type SessionAuthConfig = z.output<typeof sessionAuthSchema>;
export type OAuth2AuthConfig = z.output<typeof oauth2AuthSchema>;
export type RefreshPolicyInput = z.output<typeof refreshPolicySchema>;
export type TlsConfig = z.output<typeof tlsSchema>;
export type InjectConfig = z.output<typeof injectSchema>;
export type ListenConfig = z.output<typeof listenSchema>;
export type StoreConfig = z.output<typeof storeSchema>;

/** Built-in refresh defaults (docs/contract.md §3), before the top-level `refresh:` and the account's own. */
export const REFRESH_DEFAULTS = {
  at: 0.8,
  minInterval: 5_000,
  timeout: 10_000,
  waitForToken: 10_000,
  replayMaxBody: 1024 * 1024,
  defaultLifetime: 300_000,
  maxLifetime: 24 * 3_600_000,
} as const;

export const TIMEOUT_DEFAULTS = { connect: 5_000, response: 60_000, queue: 5_000 } as const;

export const DEFAULT_RETRY_ON = { oauth2: [401], session: [401, 403] } as const;
