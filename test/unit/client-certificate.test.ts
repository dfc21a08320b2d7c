import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { ClientCertificate, readCertificatePair } from '../../src/util/client-certificate.js';
import { problemsOf } from '../helpers/config-problems.js';
import { makeTestCertificates } from '../helpers/test-certificates.js';

const certs = makeTestCertificates();
afterAll(() => certs.remove());

describe('E2 client certificates', () => {
  it('E2: a pair is read again only when its files change; a bad rewrite keeps the last good pair and says why', () => {
    const certFile = join(certs.dir, 'live.crt');
    const keyFile = join(certs.dir, 'live.key');
    copyFileSync(certs.clientCertFile, certFile);
    copyFileSync(certs.clientKeyFile, keyFile);
    const certificate = new ClientCertificate(certFile, keyFile);
    const first = certificate.current();
    expect(certificate.current()).toBe(first); // unchanged files: the same pair, nothing read
    const rotated = certs.issueClient('rotated');
    copyFileSync(rotated.certFile, certFile);
    copyFileSync(rotated.keyFile, keyFile);
    const second = certificate.current();
    expect(second).not.toBe(first);
    expect(second).toEqual(readCertificatePair(rotated.certFile, rotated.keyFile));
    writeFileSync(keyFile, 'not a key\n');
    expect(certificate.current()).toBe(second);
    expect(certificate.problem).toMatch(/are not a PEM certificate and its private key/);
    expect(certificate.problem).not.toContain('not a key');
  });

  it('E2: tls_client_auth needs auth.tls and a clientId; auth.tls is only for tls_client_auth; upstreamTls needs certFile and keyFile together', () => {
    const base = { flow: 'oauth2', tokenUrl: 'https://idp.example/token', clientId: 'svc' };
    const messages = (auth: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
      problemsOf(() =>
        parseConfig({ accounts: { a: { upstream: 'https://api.example', auth, ...extra } } }, { env: {} }),
      ).map((problem) => `${problem.path}: ${problem.message}`);
    const tls = { certFile: certs.clientCertFile, keyFile: certs.clientKeyFile };
    expect(messages({ ...base, clientAuth: 'tls_client_auth' })).toEqual([
      'accounts.a.auth.tls: required for clientAuth tls_client_auth: { certFile, keyFile }',
    ]);
    expect(messages({ ...base, tls, clientSecret: 's' })).toEqual([
      'accounts.a.auth.tls: only used with clientAuth tls_client_auth (it is basic)',
    ]);
    expect(() =>
      parseConfig(
        { accounts: { a: { upstream: 'https://api.example', auth: { ...base, clientAuth: 'tls_client_auth', tls } } } },
        { env: {} },
      ),
    ).not.toThrow();
    expect(messages({ ...base, clientSecret: 's' }, { upstreamTls: { certFile: certs.clientCertFile } })).toEqual([
      'accounts.a.upstreamTls: give certFile and keyFile together (a client certificate and its key)',
    ]);
  });
});
