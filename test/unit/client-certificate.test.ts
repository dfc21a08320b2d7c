import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { ClientCertificate, readCertificatePair } from '../../src/util/client-certificate.js';
import * as safeFile from '../../src/util/safe-file.js';
import { reportSecretReads, type SecretReadEvent } from '../../src/util/secret-file.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { problemsOf } from '../helpers/config-problems.js';
import { makeTestCertificates } from '../helpers/test-certificates.js';

vi.mock('../../src/util/safe-file.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../src/util/safe-file.js')>();
  return { ...original, readRegularFileSync: vi.fn(original.readRegularFileSync) };
});

const certs = makeTestCertificates();
afterAll(() => certs.remove());

/** A copy of the test client pair as `<name>.crt` and `<name>.key`, and a ClientCertificate that reads them. */
function copiedPair(name: string): { certFile: string; keyFile: string; certificate: ClientCertificate } {
  const certFile = join(certs.dir, `${name}.crt`);
  const keyFile = join(certs.dir, `${name}.key`);
  copyFileSync(certs.clientCertFile, certFile);
  copyFileSync(certs.clientKeyFile, keyFile);
  return { certFile, keyFile, certificate: new ClientCertificate(certFile, keyFile) };
}

describe('E2 client certificates', () => {
  it('E2: a pair is read again only when its files change; a bad rewrite keeps the last good pair and says why', () => {
    const { certFile, keyFile, certificate } = copiedPair('live');
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

  it('E2: a bad rotation is reported once per bad version (path, never content) and not read again for every connection', () => {
    const { certFile, keyFile, certificate } = copiedPair('bad-rotation');
    const good = certificate.current();
    const events: SecretReadEvent[] = [];
    certificate.watch((event) => events.push(event));
    const { logger, lines, text } = captureLogger();
    let counted = 0;
    reportSecretReads(certificate, { logger, countFailure: () => (counted += 1) });
    const reads = vi.mocked(safeFile.readRegularFileSync);
    const other = certs.issueClient('other');
    copyFileSync(other.keyFile, keyFile); // a key that does not belong to the certificate
    reads.mockClear();
    for (let connection = 0; connection < 5; connection += 1) expect(certificate.current()).toBe(good);
    expect(reads.mock.calls.length).toBeLessThanOrEqual(2); // one look at the bad version, not one per connection
    expect(events).toEqual([expect.objectContaining({ type: 'failed', path: certFile, first: true })]);
    expect(counted).toBe(1);
    expect(lines().filter((line) => line.level === 40)).toHaveLength(1);
    expect(text()).toContain(certFile);
    expect(text()).not.toContain('PRIVATE KEY');
    writeFileSync(keyFile, 'half-written\n'); // another bad version: said once more
    expect(certificate.current()).toBe(good);
    expect(certificate.current()).toBe(good);
    expect(events.filter((event) => event.type === 'failed')).toHaveLength(2);
    expect(counted).toBe(2);
    copyFileSync(other.certFile, certFile);
    copyFileSync(other.keyFile, keyFile);
    expect(certificate.current()).toEqual(readCertificatePair(other.certFile, other.keyFile));
    expect(events.at(-1)).toEqual({ type: 'recovered', path: certFile });
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
