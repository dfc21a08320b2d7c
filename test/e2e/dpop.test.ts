import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EmbeddedJWK, jwtVerify } from 'jose';
import { beforeEach, describe, expect, it } from 'vitest';
import { startDpopUpstream, type DpopUpstream } from '../helpers/dpop-upstream.js';
import { metricSum, useHarness, writeAccountConfig } from '../helpers/harness.js';
import { startClientAuthServer, type ClientAuthServer } from '../helpers/oidc-client-auth.js';
import { rawRequest } from '../helpers/recording-upstream.js';

/*
 * E4, E7 through the real CLI: node-oidc-provider is the token server (DPoP with nonces required:
 * its validation decides), and a resource server that checks every proof with jose
 * (helpers/dpop-upstream.ts) is the upstream.
 */
const harness = useHarness();
let dir: string;

beforeEach(() => {
  dir = harness.tempDir('bs-dpop-');
});

const CLIENT = {
  client_id: 'billing-svc',
  client_secret: 'billing-secret-0123456789',
  token_endpoint_auth_method: 'client_secret_basic' as const,
};

interface Setup {
  provider: ClientAuthServer;
  upstream: DpopUpstream;
  data: string;
  admin: string;
  stdout: () => string;
  metrics: () => Promise<string>;
}

function keyFile(name: string, key: KeyObject, format: 'jwk' | 'pem'): string {
  const path = join(dir, name);
  const text =
    format === 'jwk'
      ? JSON.stringify(key.export({ format: 'jwk' }))
      : key.export({ format: 'pem', type: 'pkcs8' }).toString();
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

async function setup(
  dpop: Record<string, unknown>,
  account: Record<string, unknown> = {},
  client: { client_id: string; client_secret: string; token_endpoint_auth_method: string } = CLIENT,
  auth: Record<string, unknown> = {},
): Promise<Setup> {
  const provider = await startClientAuthServer([client as typeof CLIENT], {}, undefined, { dpop: true });
  harness.defer(() => provider.close());
  const upstream = await startDpopUpstream((token) => provider.jktOf(token));
  harness.defer(() => upstream.close());
  const config = writeAccountConfig(dir, 'billing', {
    upstream: upstream.url,
    refresh: { minInterval: '1s' },
    ...account,
    auth: {
      flow: 'oauth2',
      tokenUrl: provider.tokenUrl,
      clientId: client.client_id,
      clientSecret: client.client_secret,
      ...auth,
      dpop,
    },
  });
  const { cli, data, admin } = await harness.launchCli(['--config', config]);
  const metrics = async () => (await fetch(`${admin}/metrics`)).text();
  return { provider, upstream, data, admin, stdout: cli.stdout, metrics };
}

describe('E4 DPoP token requests (oidc-provider requires nonces)', () => {
  it('E4: the token request carries a proof, the nonce the provider asks for is used in one retry of the same token request (trigger retry), and the provider binds the token (token_type DPoP)', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const s = await setup({ keyFile: keyFile('dpop.jwk', privateKey, 'jwk') });
    expect((await fetch(`${s.data}/invoices`)).status).toBe(200);
    expect(s.provider.tokenAnswers.map((a) => [a.status, a.error ?? a.tokenType])).toEqual([
      [400, 'use_dpop_nonce'],
      [200, 'DPoP'],
    ]);
    // Every proof is good for jose too, and the second carries the nonce.
    const claims = [];
    for (const proof of s.provider.tokenProofs) {
      const { payload, protectedHeader } = await jwtVerify(proof!, EmbeddedJWK, { typ: 'dpop+jwt' });
      expect(protectedHeader.alg).toBe('ES256');
      claims.push(payload);
    }
    expect(claims[0]).toMatchObject({ htm: 'POST', htu: s.provider.tokenUrl });
    expect(claims[0]!.nonce).toBeUndefined();
    expect(typeof claims[1]!.nonce).toBe('string');
    expect(claims[0]!.jti).not.toBe(claims[1]!.jti);
    const text = await s.metrics();
    expect(metricSum(text, 'bearer_sidecar_token_requests_total', 'trigger="startup"')).toBe(1);
    expect(metricSum(text, 'bearer_sidecar_token_requests_total', 'outcome="success",trigger="retry"')).toBe(1);
    expect(metricSum(text, 'bearer_sidecar_token_requests_suppressed_total')).toBe(0);
    expect(metricSum(text, 'bearer_sidecar_dpop_nonce_retries_total', 'where="token"')).toBe(1);
  });

  it('E4, E1: the nonce retry of a token request carries a new client assertion too (the provider refuses a reused jti)', async () => {
    const client = {
      client_id: 'jwt-client',
      client_secret: 'jwt-client-secret-0123456789-abcdefghijklmnop',
      token_endpoint_auth_method: 'client_secret_jwt' as const,
    };
    const s = await setup({}, {}, client, { clientAuth: 'client_secret_jwt' });
    expect((await fetch(`${s.data}/invoices`)).status).toBe(200);
    expect(s.provider.tokenAnswers.map((a) => [a.status, a.error ?? a.tokenType])).toEqual([
      [400, 'use_dpop_nonce'],
      [200, 'DPoP'],
    ]);
  });

  it("E4: every proxied request gets a fresh proof (jti unique, ath of the token, htu the upstream URL without query); the client's own DPoP header is dropped", async () => {
    const s = await setup({});
    for (const path of ['/invoices?page=2&x=y', '/invoices/7', '/invoices?page=3']) {
      const answer = await fetch(`${s.data}${path}`, { headers: { dpop: 'client-made-proof' } });
      expect(answer.status).toBe(200);
    }
    const upload = await fetch(`${s.data}/upload`, { method: 'POST', body: 'payload' });
    expect(upload.status).toBe(200);
    expect(s.upstream.refused).toEqual([]);
    expect(s.upstream.accepted.map((p) => [p.htm, p.htu])).toEqual([
      ['GET', `${s.upstream.url}/invoices`],
      ['GET', `${s.upstream.url}/invoices/7`],
      ['GET', `${s.upstream.url}/invoices`],
      ['POST', `${s.upstream.url}/upload`],
    ]);
    expect(new Set(s.upstream.accepted.map((p) => p.jti)).size).toBe(4);
    // One proof per request, never the client's.
    expect(s.upstream.proofHeaders.every((values) => values.length === 1 && values[0] !== 'client-made-proof')).toBe(
      true,
    );
  });
});

describe('E4 DPoP nonces at the upstream', () => {
  /**
   * A first request (the token obtained and bound), then `arm` readies the upstream, then a
   * POST /upload of `body`: its answer.
   */
  async function uploadAfter(s: Setup, arm: (upstream: DpopUpstream) => void, body = 'replayable body') {
    expect((await fetch(`${s.data}/warm`)).status).toBe(200);
    arm(s.upstream);
    return fetch(`${s.data}/upload`, { method: 'POST', body });
  }

  it('E4: a use_dpop_nonce 401 from the upstream is retried once at once with its nonce: no token request, no T8 rejection or replay, counted as where="upstream"', async () => {
    const s = await setup({});
    const answer = await uploadAfter(s, (upstream) => upstream.demandNonce());
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ body: 'replayable body' });
    expect(s.upstream.refused).toEqual(['use_dpop_nonce']);
    // The nonce is kept: the next request carries it at once.
    expect((await fetch(`${s.data}/again`)).status).toBe(200);
    expect(s.upstream.refused).toEqual(['use_dpop_nonce']);
    const text = await s.metrics();
    expect(metricSum(text, 'bearer_sidecar_dpop_nonce_retries_total', 'where="upstream"')).toBe(1);
    expect(metricSum(text, 'bearer_sidecar_token_requests_total')).toBe(2); // the start-up request and its nonce retry
    expect(metricSum(text, 'bearer_sidecar_upstream_rejections_total')).toBe(0);
    expect(metricSum(text, 'bearer_sidecar_replays_total')).toBe(0);
  });

  it('E4: a use_dpop_nonce 401 met by a T8 replay is retried with its nonce, not counted as the new token rejected again', async () => {
    const s = await setup({});
    const answer = await uploadAfter(s, (upstream) => upstream.revokeOnceThenDemandNonce());
    expect(answer.status).toBe(200);
    expect(s.upstream.refused).toEqual(['token revoked', 'use_dpop_nonce']);
    const text = await s.metrics();
    expect(metricSum(text, 'bearer_sidecar_replays_total', 'outcome="success"')).toBe(1);
    expect(metricSum(text, 'bearer_sidecar_replays_total', 'outcome="rejected_again"')).toBe(0);
    expect(metricSum(text, 'bearer_sidecar_dpop_nonce_retries_total', 'where="upstream"')).toBe(1);
  });

  it("E4: when the body cannot be replayed, the upstream's use_dpop_nonce 401 goes to the client as it came", async () => {
    const s = await setup({}, { refresh: { minInterval: '1s', replayMaxBody: 4 } });
    const answer = await uploadAfter(s, (upstream) => upstream.demandNonce(), 'a body longer than four bytes');
    expect(answer.status).toBe(401);
    expect(answer.headers.get('www-authenticate')).toContain('use_dpop_nonce');
    const text = await s.metrics();
    expect(metricSum(text, 'bearer_sidecar_dpop_nonce_retries_total', 'where="upstream"')).toBe(0);
    expect(metricSum(text, 'bearer_sidecar_token_requests_total')).toBe(2);
    expect(metricSum(text, 'bearer_sidecar_upstream_rejections_total')).toBe(0);
  });

  it('E4: a WebSocket upgrade carries a proof too (htm GET)', async () => {
    const s = await setup({});
    expect((await fetch(`${s.data}/warm`)).status).toBe(200);
    const upgrade = `GET /room?x=1 HTTP/1.1\r\nhost: localhost\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;
    expect((await rawRequest(s.data, upgrade)).status).toBe(101);
    expect(s.upstream.refused).toEqual([]);
    expect(s.upstream.accepted.at(-1)).toMatchObject({ htm: 'GET', htu: `${s.upstream.url}/room` });
  });
});

describe('E4 DPoP keys', () => {
  it("E4: an Ed25519 PEM key signs EdDSA proofs; /status and check show the key and its thumbprint (jkt, the token's cnf.jkt); the private key never reaches logs, /status, metrics or error bodies", async () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const path = keyFile('dpop.pem', privateKey, 'pem');
    const s = await setup({ keyFile: path });
    expect((await fetch(`${s.data}/invoices`)).status).toBe(200);
    const status = (await (await fetch(`${s.admin}/status`)).json()) as {
      accounts: Record<string, { dpop: { alg: string; key: string; jkt: string } }>;
    };
    const issued = [...s.provider.issued].at(-1)!;
    expect(status.accounts.billing!.dpop).toEqual({ alg: 'EdDSA', key: path, jkt: await s.provider.jktOf(issued) });
    const proof = s.provider.tokenProofs[0]!;
    expect((await jwtVerify(proof, EmbeddedJWK)).protectedHeader.alg).toBe('EdDSA');
    const refused = await fetch(`${s.data}/x`, { headers: { host: 'evil.example' } });
    const jwk = privateKey.export({ format: 'jwk' });
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const pemBody = pem.split('\n')[1]!;
    const seen = [
      s.stdout(),
      JSON.stringify(status),
      await s.metrics(),
      await refused.text(),
      await (await fetch(`${s.admin}/status`, { headers: { accept: 'text/html' } })).text(),
    ].join('\n');
    expect(seen).not.toContain(jwk.d!);
    expect(seen).not.toContain(pemBody);
    const check = await harness.runCli(['check', '--config', join(dir, 'sidecar.json')]);
    expect(check.stdout).toMatch(
      new RegExp(`dpop key\\s+EdDSA, .*dpop\\.pem, jkt ${status.accounts.billing!.dpop.jkt}`),
    );
    expect(check.stdout + check.stderr).not.toContain(jwk.d!);
  });

  it('E4: dpop {} generates an ES256 key at start; a key that is not EC P-256 or Ed25519 stops start-up naming the setting', async () => {
    const s = await setup({});
    expect((await fetch(`${s.data}/invoices`)).status).toBe(200);
    const status = (await (await fetch(`${s.admin}/status`)).json()) as {
      accounts: Record<string, { dpop: { alg: string; key: string; jkt: string } }>;
    };
    expect(status.accounts.billing!.dpop).toMatchObject({ alg: 'ES256', key: 'generated at start' });
    expect(status.accounts.billing!.dpop.jkt).toBe(await s.provider.jktOf([...s.provider.issued].at(-1)!));
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const config = join(dir, 'bad.json');
    writeFileSync(
      config,
      JSON.stringify({
        accounts: {
          billing: {
            upstream: s.upstream.url,
            auth: {
              flow: 'oauth2',
              tokenUrl: s.provider.tokenUrl,
              clientId: 'c',
              clientSecret: 's',
              dpop: { keyFile: keyFile('p384.pem', privateKey, 'pem') },
            },
          },
        },
      }),
    );
    const bad = await harness.runCli(['check', '--config', config]);
    expect(bad.code).toBe(2);
    expect(bad.stderr + bad.stdout).toMatch(/auth\.dpop\.keyFile.*EC P-256/);
  });
});
