import { randomBytes } from 'node:crypto';
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider, { type ClientMetadata } from 'oidc-provider';
import { closeServer } from '../../src/util/http-server.js';

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
  close(): Promise<void>;
}

const ALL_ALGS = [
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
];

export async function startClientAuthServer(clients: ClientMetadata[]): Promise<ClientAuthServer> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
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
    features: { clientCredentials: { enabled: true }, devInteractions: { enabled: false } },
    enabledJWA: { clientAuthSigningAlgValues: ALL_ALGS as never },
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
  server.on('request', provider.callback());
  return {
    issuer,
    tokenUrl: `${issuer}/token`,
    issued,
    assertions,
    refusals,
    close: () => closeServer(server, { force: true }),
  };
}
