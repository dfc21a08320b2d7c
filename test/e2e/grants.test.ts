import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeJwt, decodeProtectedHeader, jwtVerify, SignJWT } from 'jose';
import type { ClientMetadata } from 'oidc-provider';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { generatedSecret, useHarness } from '../helpers/harness.js';
import {
  JWT_BEARER,
  launchAgainst,
  startClientAuthServer,
  TOKEN_EXCHANGE,
  type ClientAuthServer,
  type ExtraGrants,
} from '../helpers/oidc-client-auth.js';

/*
 * E3 through the real CLI against node-oidc-provider: the provider authenticates the client as
 * registered; each grant's handler checks the assertion or subject token the sidecar sent.
 */
const harness = useHarness();
let dir: string;
let clientSecret: string;

beforeEach(() => {
  dir = harness.tempDir('bs-grants-');
  clientSecret = generatedSecret('cs');
});

function writeFile(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content, { mode: 0o600 });
  return path;
}

async function provider(
  grantTypes: string[],
  grants: ExtraGrants,
  authMethod: ClientMetadata['token_endpoint_auth_method'] = 'client_secret_basic',
): Promise<ClientAuthServer> {
  const server = await startClientAuthServer(
    [
      {
        client_id: 'workload',
        client_secret: clientSecret,
        grant_types: grantTypes,
        token_endpoint_auth_method: authMethod,
      },
    ],
    grants,
  );
  harness.defer(() => server.close());
  return server;
}

function launch(server: ClientAuthServer, auth: Record<string, unknown>) {
  const client = { clientId: 'workload', clientSecretFile: writeFile('client-secret', clientSecret) };
  return launchAgainst(harness, server, { dir, account: 'api', auth: { ...client, ...auth } });
}

/** A stand-in for the cluster's service-account token issuer: signs projected tokens. */
function clusterIssuer() {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const sign = (sub: string) =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'ES256' })
      .setIssuer('https://kubernetes.default.svc')
      .setSubject(sub)
      .setAudience('idp')
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(privateKey);
  return { sign, publicKey };
}

describe('E3 jwt_bearer and token_exchange against oidc-provider', () => {
  it('E3: jwt_bearer with assertionFile (a projected service-account token): accepted, and the file is read again for every token request (a rotated token is sent)', async () => {
    const cluster = clusterIssuer();
    const seen: string[] = [];
    const server = await provider([JWT_BEARER], {
      jwtBearer: async (assertion) => {
        await jwtVerify(assertion, cluster.publicKey, { audience: 'idp' });
        seen.push(decodeJwt(assertion).sub ?? '');
      },
    });
    const tokenFile = writeFile('token', await cluster.sign('system:serviceaccount:apps:billing'));
    const { data, admin } = await launch(server, { grant: 'jwt_bearer', assertionFile: tokenFile });
    expect((await fetch(`${data}/x`)).status).toBe(200);

    writeFile('token', await cluster.sign('system:serviceaccount:apps:billing-rotated'));
    expect((await fetch(`${admin}/accounts/api/refresh`, { method: 'POST' })).status).toBe(202);
    await vi.waitFor(
      () => expect(seen).toEqual(['system:serviceaccount:apps:billing', 'system:serviceaccount:apps:billing-rotated']),
      {
        timeout: 10_000,
      },
    );
    expect(server.refusals).toEqual([]);
  });

  it('E3: jwt_bearer without assertionFile signs its own assertion with privateKeyFile: iss = sub = clientId, aud = tokenUrl', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const server = await provider([JWT_BEARER], {
      jwtBearer: async (assertion, tokenUrl) => {
        await jwtVerify(assertion, publicKey, { issuer: 'workload', subject: 'workload', audience: tokenUrl });
      },
    });
    const { data } = await launch(server, {
      grant: 'jwt_bearer',
      privateKeyFile: writeFile('key.pem', privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()),
    });
    expect((await fetch(`${data}/x`)).status).toBe(200);
    expect(server.refusals).toEqual([]);
  });

  it('E3: jwt_bearer signed with privateKeyFile (signingAlg names the key) works with clientAuth client_secret_jwt (HS256)', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const server = await provider(
      [JWT_BEARER],
      {
        jwtBearer: async (assertion, tokenUrl) => {
          await jwtVerify(assertion, publicKey, { issuer: 'workload', audience: tokenUrl, algorithms: ['ES256'] });
        },
      },
      'client_secret_jwt',
    );
    const { data } = await launch(server, {
      grant: 'jwt_bearer',
      clientAuth: 'client_secret_jwt',
      signingAlg: 'ES256',
      privateKeyFile: writeFile('key.pem', privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()),
    });
    expect((await fetch(`${data}/x`)).status).toBe(200);
    expect(server.refusals).toEqual([]);
    expect(server.assertions.map((assertion) => decodeProtectedHeader(assertion).alg)).toEqual(['HS256']);
  });

  it('E3: a jwt_bearer assertion the server does not accept is a rejected login: 503 to clients, the reason in /status, no crash', async () => {
    const cluster = clusterIssuer();
    const stranger = clusterIssuer();
    const server = await provider([JWT_BEARER], {
      jwtBearer: async (assertion) => void (await jwtVerify(assertion, cluster.publicKey)),
    });
    const { data, admin } = await launch(server, {
      grant: 'jwt_bearer',
      assertionFile: writeFile('token', await stranger.sign('x')),
    });
    expect((await fetch(`${data}/x`)).status).toBe(503);
    const status = (await (await fetch(`${admin}/status`)).json()) as {
      accounts: { api: { state: string; reason: string } };
    };
    expect(status.accounts.api.state).toBe('rejected');
    expect(status.accounts.api.reason).toMatch(/invalid_grant/);
  });

  it('E3: token_exchange sends the subject token file with its type (and the actor token); an answer without expires_in takes its lifetime from the JWT', async () => {
    const subject = `subject-${generatedSecret('st')}`;
    const server = await provider([TOKEN_EXCHANGE], {
      tokenExchange: { subjectToken: () => subject, lifetimeSeconds: 600 },
    });
    const { data, admin } = await launch(server, {
      grant: 'token_exchange',
      subjectTokenFile: writeFile('subject', `${subject}\n`),
      actorTokenFile: writeFile('actor', 'actor-token'),
      audience: 'billing-api',
    });
    expect((await fetch(`${data}/x`)).status).toBe(200);
    const status = (await (await fetch(`${admin}/status`)).json()) as {
      accounts: { api: { lifetimeSeconds: number } };
    };
    expect(status.accounts.api.lifetimeSeconds).toBe(600);
    const token = [...server.issued][0]!;
    expect(decodeJwt(token)).toMatchObject({ aud: 'billing-api', act: { sub: 'actor' } });
  });

  it('E3: a grant without its input stops start-up (exit 2) naming the setting', async () => {
    const server = await provider([JWT_BEARER], {});
    for (const [auth, message] of [
      [{ grant: 'jwt_bearer' }, /accounts\.api\.auth\.assertionFile: required for grant jwt_bearer/],
      [{ grant: 'token_exchange' }, /accounts\.api\.auth\.subjectTokenFile: required for grant token_exchange/],
      [
        { grant: 'client_credentials', subjectTokenFile: writeFile('s', 'x') },
        /subjectTokenFile: only used with grant token_exchange/,
      ],
    ] as const) {
      const config = writeFile(
        'bad.json',
        JSON.stringify({
          accounts: {
            api: {
              upstream: 'http://127.0.0.1:9',
              auth: { flow: 'oauth2', tokenUrl: server.tokenUrl, clientId: 'w', ...auth },
            },
          },
        }),
      );
      const { code, stderr } = await harness.runCli(['--config', config]);
      expect(code).toBe(2);
      expect(stderr).toMatch(message);
    }
  });
});
