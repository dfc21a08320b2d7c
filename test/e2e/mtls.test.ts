import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { closeServer } from '../../src/util/http-server.js';
import { startForwardProxy } from '../helpers/forward-proxy.js';
import { useHarness, writeAccountConfig } from '../helpers/harness.js';
import { launchAgainst, startClientAuthServer } from '../helpers/oidc-client-auth.js';
import { makeTestCertificates, startMtlsUpstream, type TestCertificates } from '../helpers/test-certificates.js';

/*
 * E2 through the real CLI: mutual TLS to the upstream (upstreamTls.certFile/keyFile) and
 * tls_client_auth to node-oidc-provider's token endpoint (RFC 8705), certificates made at run time.
 */
const harness = useHarness();
let certs: TestCertificates;
let dir: string;

beforeEach(() => {
  certs = makeTestCertificates();
  harness.defer(() => certs.remove());
  dir = harness.tempDir('bs-mtls-');
});

/** An https upstream that demands a client certificate from the test CA and answers with its subject; one request per connection. */
async function mtlsUpstream(): Promise<{ url: string; subjects: string[] }> {
  const upstream = await startMtlsUpstream(certs, { close: true, answer: (subject) => `hello ${subject}` });
  harness.defer(() => closeServer(upstream.server, { force: true }));
  return upstream;
}

/**
 * An mTLS upstream and a session token server (its password in `<dir>/pw`); `account(tls)` is a
 * sidecar account for the two, with upstreamTls `tls` beside the test CA.
 */
async function mtlsAccount(): Promise<{ account: (tls: Record<string, unknown>) => Record<string, unknown> }> {
  const upstream = await mtlsUpstream();
  const tokenServer = await harness.sessionTokenServer({ username: 'u' });
  writeFileSync(join(dir, 'pw'), tokenServer.password);
  const account = (tls: Record<string, unknown>) => ({
    upstream: upstream.url,
    default: true,
    upstreamTls: { caFile: certs.caFile, ...tls },
    auth: {
      flow: 'session',
      loginUrl: tokenServer.tokenServer.loginUrl,
      username: 'u',
      passwordFile: join(dir, 'pw'),
    },
  });
  return { account };
}

describe('E2 mutual TLS: the upstream and tls_client_auth', () => {
  /** The sidecar with upstreamTls.certFile/keyFile in `dir`, the pair rotated after the first request (through `env`'s proxy, if any). */
  async function rotationThrough(env: NodeJS.ProcessEnv = {}): Promise<void> {
    const { account } = await mtlsAccount();
    const certFile = join(dir, 'client.crt');
    const keyFile = join(dir, 'client.key');
    copyFileSync(certs.clientCertFile, certFile);
    copyFileSync(certs.clientKeyFile, keyFile);
    const config = writeAccountConfig(dir, 'api', account({ certFile, keyFile }));
    const { data, cli } = await harness.launchCli(['--config', config], { env });
    const first = await fetch(`${data}/a`);
    expect(first.status).toBe(200);
    expect(await first.text()).toBe('hello bearer-sidecar');

    const rotated = certs.issueClient('bearer-sidecar-rotated');
    copyFileSync(rotated.certFile, certFile);
    copyFileSync(rotated.keyFile, keyFile);
    await vi.waitFor(async () => expect(await (await fetch(`${data}/b`)).text()).toBe('hello bearer-sidecar-rotated'), {
      timeout: 10_000,
    });
    // A bad rewrite: the last good pair stays in use, and the log says so (the path, never the key).
    writeFileSync(keyFile, 'half-written');
    expect(await (await fetch(`${data}/c`)).text()).toBe('hello bearer-sidecar-rotated');
    await cli.waitForLog((entry) => entry.level === 40 && entry.path === certFile);
    expect(cli.stdout() + cli.stderr()).not.toContain('half-written');
  }

  it('E2: upstreamTls.certFile/keyFile are shown to an upstream that demands a client certificate; a rotated pair is used by new connections without a restart', async () => {
    await rotationThrough();
  });

  it('E2: behind an egress proxy (E6) too, new tunnels present the rotated certificate without a restart', async () => {
    const proxy = await startForwardProxy();
    harness.defer(() => proxy.close());
    // The token server is plain http: only the https upstream goes through HTTPS_PROXY.
    await rotationThrough({ HTTPS_PROXY: proxy.url });
    expect(proxy.requests().filter((line) => line.startsWith('CONNECT 127.0.0.1:')).length).toBeGreaterThanOrEqual(2);
  });

  it('E2: without a client certificate the same upstream refuses the handshake: 502, and a pair that does not match stops start-up (exit 2)', async () => {
    const { account } = await mtlsAccount();
    const plain = writeAccountConfig(dir, 'api', account({}), 'plain.json');
    const { data } = await harness.launchCli(['--config', plain]);
    expect((await fetch(`${data}/a`)).status).toBe(502);

    const other = certs.issueClient('other');
    const mismatched = join(dir, 'mismatched.json');
    writeFileSync(
      mismatched,
      JSON.stringify({ accounts: { api: account({ certFile: certs.clientCertFile, keyFile: other.keyFile }) } }),
    );
    const { code, stderr } = await harness.runCli(['--config', mismatched]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/accounts\.api\.upstreamTls\.certFile: .*are not a PEM certificate and its private key/);
  });

  it('E2: tls_client_auth presents auth.tls to the token endpoint: node-oidc-provider (mTLS) accepts the client by its certificate subject; another certificate is refused', async () => {
    const server = await startClientAuthServer(
      [
        {
          client_id: 'mtls-client',
          token_endpoint_auth_method: 'tls_client_auth',
          tls_client_auth_subject_dn: 'CN=bearer-sidecar',
        } as never,
      ],
      {},
      {
        cert: readFileSync(certs.serverCertFile, 'utf8'),
        key: readFileSync(certs.serverKeyFile, 'utf8'),
        ca: certs.ca,
      },
    );
    harness.defer(() => server.close());
    const { data, admin } = await launchAgainst(harness, server, {
      dir,
      account: 'billing',
      auth: {
        clientId: 'mtls-client',
        clientAuth: 'tls_client_auth',
        tls: { certFile: certs.clientCertFile, keyFile: certs.clientKeyFile },
      },
      upstreamTls: { caFile: certs.caFile },
    });
    const answer = await fetch(`${data}/x`);
    expect(answer.status).toBe(200);
    const status = (await (await fetch(`${admin}/status`)).json()) as { accounts: { billing: { clientAuth: string } } };
    expect(status.accounts.billing.clientAuth).toBe(`tls_client_auth (certificate ${certs.clientCertFile})`);

    const stranger = certs.issueClient('someone-else');
    const other = await launchAgainst(harness, server, {
      dir: harness.tempDir('bs-mtls-other-'),
      account: 'billing',
      auth: { clientId: 'mtls-client', clientAuth: 'tls_client_auth', tls: stranger },
      upstreamTls: { caFile: certs.caFile },
    });
    expect((await fetch(`${other.data}/x`)).status).toBe(503);
    expect(server.refusals).toContain('invalid_client');
  });
});
