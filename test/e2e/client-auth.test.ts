import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { launchAgainst, startClientAuthServer, type ClientAuthServer } from '../helpers/oidc-client-auth.js';
import { generatedSecret, useHarness } from '../helpers/harness.js';

/*
 * E1 through the real CLI against node-oidc-provider: its own client authentication decides
 * whether the sidecar's assertions are good (signature, iss/sub, aud, exp, a jti never reused).
 */
const harness = useHarness();
let dir: string;

beforeEach(() => {
  dir = harness.tempDir('bs-client-auth-');
});

function keyPair(kind: 'rsa' | 'ec-p256' | 'ec-p384' | 'ed25519'): { privateKey: KeyObject; publicKey: KeyObject } {
  if (kind === 'rsa') return generateKeyPairSync('rsa', { modulusLength: 2048 });
  if (kind === 'ed25519') return generateKeyPairSync('ed25519');
  return generateKeyPairSync('ec', { namedCurve: kind === 'ec-p256' ? 'P-256' : 'P-384' });
}

function publicJwk(key: KeyObject, kid: string): Record<string, unknown> {
  return { ...key.export({ format: 'jwk' }), kid, use: 'sig' };
}

function writeFile(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content, { mode: 0o600 });
  return path;
}

function launch(provider: ClientAuthServer, auth: Record<string, unknown>) {
  return launchAgainst(harness, provider, { dir, account: 'billing', auth });
}

async function serve(provider: ClientAuthServer) {
  harness.defer(() => provider.close());
  return provider;
}

describe('E1 private_key_jwt and client_secret_jwt against oidc-provider', () => {
  for (const [kind, alg] of [
    ['rsa', 'RS256'],
    ['ec-p256', 'ES256'],
    ['ec-p384', 'ES384'],
    ['ed25519', 'EdDSA'],
  ] as const) {
    it(`E1: private_key_jwt with a ${kind} PKCS#8 PEM key (${alg} from the key): the provider accepts the assertion, the proxied request gets 200`, async () => {
      const { privateKey, publicKey } = keyPair(kind);
      const provider = await serve(
        await startClientAuthServer([
          {
            client_id: 'billing-svc',
            token_endpoint_auth_method: 'private_key_jwt',
            jwks: { keys: [publicJwk(publicKey, 'k1')] } as never,
          },
        ]),
      );
      const { data } = await launch(provider, {
        clientId: 'billing-svc',
        clientAuth: 'private_key_jwt',
        privateKeyFile: writeFile('key.pem', privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()),
      });
      const answer = await fetch(`${data}/invoices`);
      expect(answer.status).toBe(200);
      expect(provider.assertions).toHaveLength(1);
      const header = decodeProtectedHeader(provider.assertions[0]!);
      expect(header.alg).toBe(alg);
      const claims = decodeJwt(provider.assertions[0]!);
      expect(claims).toMatchObject({ iss: 'billing-svc', sub: 'billing-svc', aud: provider.tokenUrl });
      expect(claims.exp! - claims.iat!).toBeLessThanOrEqual(300);
      expect(typeof claims.jti).toBe('string');
    });
  }

  it('E1: a private JWK file gives its kid to the assertion header; each token request gets a fresh assertion (the provider refuses a reused jti)', async () => {
    const { privateKey, publicKey } = keyPair('ec-p256');
    const provider = await serve(
      await startClientAuthServer([
        {
          client_id: 'billing-svc',
          token_endpoint_auth_method: 'private_key_jwt',
          jwks: { keys: [publicJwk(publicKey, 'billing-2026')] } as never,
        },
      ]),
    );
    const { data, admin } = await launch(provider, {
      clientId: 'billing-svc',
      clientAuth: 'private_key_jwt',
      privateKeyFile: writeFile(
        'key.jwk',
        JSON.stringify({ ...privateKey.export({ format: 'jwk' }), kid: 'billing-2026' }),
      ),
    });
    expect((await fetch(`${data}/a`)).status).toBe(200);
    expect((await fetch(`${admin}/accounts/billing/refresh`, { method: 'POST' })).status).toBe(202);
    await vi.waitFor(() => expect(provider.assertions).toHaveLength(2), { timeout: 10_000 });
    expect(provider.refusals).toEqual([]);
    expect(decodeProtectedHeader(provider.assertions[1]!).kid).toBe('billing-2026');
    const [first, second] = provider.assertions.map((assertion) => decodeJwt(assertion).jti);
    expect(first).not.toBe(second);
    const status = (await (await fetch(`${admin}/status`)).json()) as { accounts: { billing: { clientAuth: string } } };
    expect(status.accounts.billing.clientAuth).toBe(
      `private_key_jwt (key ${join(dir, 'key.jwk')}, algorithm from the key)`,
    );
    const check = await harness.runCli(['check', '--config', join(dir, 'sidecar.json')]);
    expect(check.code).toBe(0);
    expect(check.stdout).toMatch(/client auth\s+private_key_jwt \(key .*key\.jwk, algorithm from the key\)/);
  });

  it('E1: the key file is read again at every token request: a key the provider does not know is refused (invalid_client); the registered one written back is used within seconds (a credential change ends the backoff)', async () => {
    const registered = keyPair('ec-p256');
    const stranger = keyPair('ec-p256');
    const provider = await serve(
      await startClientAuthServer([
        {
          client_id: 'billing-svc',
          token_endpoint_auth_method: 'private_key_jwt',
          jwks: { keys: [publicJwk(registered.publicKey, 'k1')] } as never,
        },
      ]),
    );
    const pem = (key: KeyObject) => key.export({ format: 'pem', type: 'pkcs8' }).toString();
    const keyFile = writeFile('key.pem', pem(registered.privateKey));
    const { data, admin } = await launch(provider, {
      clientId: 'billing-svc',
      clientAuth: 'private_key_jwt',
      privateKeyFile: keyFile,
    });
    expect((await fetch(`${data}/a`)).status).toBe(200);

    writeFile('key.pem', pem(stranger.privateKey));
    await fetch(`${admin}/accounts/billing/refresh`, { method: 'POST' });
    await vi.waitFor(() => expect(provider.refusals).toContain('invalid_client'), { timeout: 10_000 });
    const status = (await (await fetch(`${admin}/status`)).json()) as {
      accounts: { billing: { lastError: string | null } };
    };
    expect(JSON.stringify(status)).not.toContain('PRIVATE KEY');

    // The rewritten key file is new credentials: it is used within seconds, without waiting out the backoff.
    writeFile('key.pem', pem(registered.privateKey));
    await vi.waitFor(() => expect(provider.issued.size).toBe(2), { timeout: 20_000, interval: 200 });
    expect((await fetch(`${data}/b`)).status).toBe(200);
  });

  it('E1: client_secret_jwt signs with HS256 over the client secret: the provider accepts it, and the secret itself is never sent', async () => {
    const secret = generatedSecret('cs');
    const provider = await serve(
      await startClientAuthServer([
        { client_id: 'reports', client_secret: secret, token_endpoint_auth_method: 'client_secret_jwt' },
      ]),
    );
    const { data } = await launch(provider, {
      clientId: 'reports',
      clientAuth: 'client_secret_jwt',
      clientSecretFile: writeFile('client-secret', `${secret}\n`),
    });
    expect((await fetch(`${data}/r`)).status).toBe(200);
    expect(decodeProtectedHeader(provider.assertions[0]!).alg).toBe('HS256');
    expect(provider.assertions[0]).not.toContain(secret);
  });

  it('E1: a key that is not a private key stops start-up: exit 2 naming the setting', async () => {
    const provider = await serve(await startClientAuthServer([]));
    const config = writeFile(
      'bad.json',
      JSON.stringify({
        accounts: {
          billing: {
            upstream: 'http://127.0.0.1:9',
            auth: {
              flow: 'oauth2',
              tokenUrl: provider.tokenUrl,
              clientId: 'b',
              clientAuth: 'private_key_jwt',
              privateKeyFile: writeFile(
                'pub.pem',
                keyPair('rsa').publicKey.export({ format: 'pem', type: 'spki' }).toString(),
              ),
            },
          },
        },
      }),
    );
    const { code, stderr } = await harness.runCli(['--config', config]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/accounts\.billing\.auth\.privateKeyFile: private key .*pub\.pem is not a private key/);
  });
});
