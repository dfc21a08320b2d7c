import { randomBytes } from 'node:crypto';
import { generateKeyPairSync } from 'node:crypto';
import { X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { SignJWT } from 'jose';
import Provider, { type ClientMetadata } from 'oidc-provider';
import { closeServer } from '../../src/util/http-server.js';
import { writeAccountConfig, type Harness, type LaunchedCli } from './harness.js';
import { SIGNING_ALGS } from '../../src/util/signing-key.js';

/**
 * A real OAuth 2 authorization server (node-oidc-provider) for client authentication (E1):
 * the client_credentials grant, with clients registered for private_key_jwt (their public JWKs)
 * or client_secret_jwt. The provider's own checks decide: signature, `iss`/`sub`, `aud`, `exp`,
 * and a `jti` seen twice is refused. `issued` holds every access token it handed out, and
 * `assertions` every client assertion it accepted (to read their claims).
 */
export interface ClientAuthServer {
  issuer: string;
  tokenUrl: string;
  issued: Set<string>;
  assertions: string[];
  /** Token requests the provider refused, with its error code. */
  refusals: string[];
  /** E4: every token response the provider sent (status, token_type, DPoP-Nonce header). */
  tokenAnswers: Array<{ status: number; tokenType: string | undefined; error: string | undefined }>;
  /** E4: the DPoP proof header of every token request (undefined when it had none). */
  tokenProofs: Array<string | undefined>;
  /** E4: the thumbprint (`cnf.jkt`) an issued access token is bound to, as the provider stored it. */
  jktOf(token: string): Promise<string | undefined>;
  close(): Promise<void>;
}

/** E4: DPoP at the provider: nonces required on every token request (RFC 9449 §8). */
export interface ProviderOptions {
  dpop?: boolean;
}

/** Every algorithm the sidecar may sign with: the provider accepts them all. */
const ALL_ALGS = [...SIGNING_ALGS];

/** E3: the extra grants, each with the check that decides whether its input is good. */
export interface ExtraGrants {
  /** RFC 7523 §2.1: verifies the assertion (throws when it is bad). */
  jwtBearer?: (assertion: string, tokenUrl: string) => Promise<void>;
  /** RFC 8693: the subject token that may be exchanged; answered with a JWT access token and no expires_in. */
  tokenExchange?: { subjectToken: () => string; lifetimeSeconds: number };
}

export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

/** E2: serve over TLS, asking every client for a certificate (the provider judges it). */
export interface ProviderTls {
  cert: string;
  key: string;
  ca: string;
}

export async function startClientAuthServer(
  clients: ClientMetadata[],
  grants: ExtraGrants = {},
  tls?: ProviderTls,
  options: ProviderOptions = {},
): Promise<ClientAuthServer> {
  const server: Server =
    tls === undefined ? createServer() : createHttpsServer({ ...tls, requestCert: true, rejectUnauthorized: false });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const provider = new Provider(issuer, {
    clients: clients.map((client) => ({
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      ...client,
    })),
    jwks: { keys: [{ ...signingKey, use: 'sig', alg: 'RS256' }] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    features: {
      clientCredentials: { enabled: true },
      dPoP: { enabled: options.dpop === true, nonceSecret: randomBytes(32), requireNonce: () => true },
      devInteractions: { enabled: false },
      mTLS: {
        enabled: tls !== undefined,
        tlsClientAuth: true,
        getCertificate: (ctx) => peerCertificate(ctx.req.socket),
        certificateAuthorized: (ctx) => (ctx.req.socket as TLSSocket).authorized,
        certificateSubjectMatches: (ctx, property, expected) =>
          property === 'tls_client_auth_subject_dn' && peerCertificate(ctx.req.socket)?.subject === expected,
      },
    },
    enabledJWA: { clientAuthSigningAlgValues: ALL_ALGS as never },
    clientAuthMethods: [
      'client_secret_basic',
      'client_secret_post',
      'client_secret_jwt',
      'private_key_jwt',
      'none',
      ...(tls === undefined ? [] : ['tls_client_auth']),
    ] as never,
    ttl: { ClientCredentials: 600 },
  });
  const issued = new Set<string>();
  const assertions: string[] = [];
  const refusals: string[] = [];
  provider.on('grant.success', (ctx) => {
    const body = ctx.body as { access_token?: string } | undefined;
    if (body?.access_token !== undefined) issued.add(body.access_token);
    const assertion = (ctx.oidc.params as { client_assertion?: string } | undefined)?.client_assertion;
    if (assertion !== undefined) assertions.push(assertion);
  });
  provider.on('grant.error', (_ctx, error: { error?: string }) => refusals.push(error.error ?? 'error'));
  registerExtraGrants(provider, grants, `${issuer}/token`, issued, refusals);
  const tokenAnswers: ClientAuthServer['tokenAnswers'] = [];
  const tokenProofs: Array<string | undefined> = [];
  provider.use(async (ctx, next) => {
    const isToken = ctx.path === '/token';
    if (isToken) tokenProofs.push(ctx.get('DPoP') || undefined);
    await next();
    if (!isToken) return;
    const body = ctx.body as { token_type?: string; error?: string } | undefined;
    tokenAnswers.push({ status: ctx.status, tokenType: body?.token_type, error: body?.error });
  });
  server.on('request', provider.callback());
  return {
    issuer,
    tokenUrl: `${issuer}/token`,
    issued,
    assertions,
    refusals,
    tokenAnswers,
    tokenProofs,
    jktOf: async (token) => {
      const found = (await provider.ClientCredentials.find(token)) as { jkt?: string } | undefined;
      return found?.jkt;
    },
    close: () => closeServer(server, { force: true }),
  };
}

/**
 * The extra grants as node-oidc-provider extensions: the provider authenticates the client as
 * registered; the handler checks the grant's own input and issues a token, or answers
 * invalid_grant.
 */
function registerExtraGrants(
  provider: Provider,
  grants: ExtraGrants,
  tokenUrl: string,
  issued: Set<string>,
  refusals: string[],
): void {
  const refuse = (ctx: { status: number; body: unknown }, description: string) => {
    refusals.push('invalid_grant');
    ctx.status = 400;
    ctx.body = { error: 'invalid_grant', error_description: description };
  };
  const { jwtBearer, tokenExchange } = grants;
  if (jwtBearer !== undefined)
    provider.registerGrantType(
      JWT_BEARER,
      async (ctx, next) => {
        const assertion = String((ctx.oidc.params as { assertion?: unknown }).assertion ?? '');
        try {
          await jwtBearer(assertion, tokenUrl);
        } catch (error) {
          refuse(ctx, (error as Error).message);
          return next();
        }
        const token = new provider.ClientCredentials({ client: ctx.oidc.client!, scope: '' } as never);
        const value = await token.save();
        issued.add(value);
        ctx.body = { access_token: value, token_type: 'Bearer', expires_in: token.expiration };
        return next();
      },
      ['assertion'],
    );
  if (tokenExchange !== undefined)
    provider.registerGrantType(
      TOKEN_EXCHANGE,
      async (ctx, next) => {
        const params = ctx.oidc.params as Record<string, unknown>;
        if (
          params.subject_token !== tokenExchange.subjectToken() ||
          params.subject_token_type !== 'urn:ietf:params:oauth:token-type:jwt'
        ) {
          refuse(ctx, 'subject token not accepted');
          return next();
        }
        const now = Math.floor(Date.now() / 1000);
        const jwt = await new SignJWT({ act: params.actor_token === undefined ? undefined : { sub: 'actor' } })
          .setProtectedHeader({ alg: 'HS256' })
          .setIssuedAt(now)
          .setExpirationTime(now + tokenExchange.lifetimeSeconds)
          .setAudience(String(params.audience ?? ''))
          .sign(new TextEncoder().encode(randomBytes(32).toString('hex')));
        issued.add(jwt);
        // No expires_in: the sidecar takes the lifetime from the JWT's exp - iat.
        ctx.body = {
          access_token: jwt,
          token_type: 'Bearer',
          issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        };
        return next();
      },
      [
        'subject_token',
        'subject_token_type',
        'actor_token',
        'actor_token_type',
        'requested_token_type',
        'resource',
        'audience',
      ],
    );
}

/**
 * The real CLI with one oauth2 account `account` against `server` (grant client_credentials
 * unless `auth` says otherwise), in front of a demo upstream that accepts only tokens the server
 * issued. The config file is written to `dir`.
 */
export async function launchAgainst(
  harness: Harness,
  server: ClientAuthServer,
  options: { dir: string; account: string; auth: Record<string, unknown>; upstreamTls?: Record<string, unknown> },
): Promise<LaunchedCli> {
  const upstream = await harness.demoUpstream((token) => server.issued.has(token));
  const config = writeAccountConfig(options.dir, options.account, {
    upstream: upstream.url,
    refresh: { minInterval: '1s' },
    ...(options.upstreamTls === undefined ? {} : { upstreamTls: options.upstreamTls }),
    auth: { flow: 'oauth2', tokenUrl: server.tokenUrl, grant: 'client_credentials', ...options.auth },
  });
  return harness.launchCli(['--config', config]);
}

/** The certificate the client presented on this TLS connection, if any. */
function peerCertificate(socket: Socket): X509Certificate | undefined {
  const raw = (socket as TLSSocket).getPeerCertificate?.(true)?.raw;
  return raw === undefined ? undefined : new X509Certificate(raw);
}
