import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';

/** PEM files of a throw-away CA, a server certificate it signed and a client certificate it signed. */
export interface TestCertificates {
  dir: string;
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** Contents of the CA certificate. */
  ca: string;
  /** Another client certificate from the same CA, with common name `cn` (a rotation). */
  issueClient(cn: string): { certFile: string; keyFile: string };
  remove(): void;
}

/**
 * A CA, a server certificate for `127.0.0.1` / `localhost` and a client certificate (CN
 * `bearer-sidecar`), made with openssl at run time in a temp directory: no key is ever committed.
 * EC P-256 keys, valid one day.
 */
export function makeTestCertificates(): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), 'bs-certs-'));
  const file = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  const newKey = (name: string) => openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', file(name));
  newKey('ca.key');
  openssl(
    'req',
    '-x509',
    '-new',
    '-key',
    file('ca.key'),
    '-days',
    '1',
    '-subj',
    '/CN=bearer-sidecar test CA',
    '-out',
    file('ca.crt'),
  );
  const issue = (name: string, subject: string, extensions: string) => {
    newKey(`${name}.key`);
    openssl('req', '-new', '-key', file(`${name}.key`), '-subj', subject, '-out', file(`${name}.csr`));
    writeFileSync(file(`${name}.ext`), extensions);
    openssl(
      'x509',
      '-req',
      '-in',
      file(`${name}.csr`),
      '-CA',
      file('ca.crt'),
      '-CAkey',
      file('ca.key'),
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      file(`${name}.ext`),
      '-out',
      file(`${name}.crt`),
    );
  };
  issue('server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  issue('client', '/CN=bearer-sidecar', 'extendedKeyUsage=clientAuth\n');
  return {
    dir,
    caFile: file('ca.crt'),
    serverCertFile: file('server.crt'),
    serverKeyFile: file('server.key'),
    clientCertFile: file('client.crt'),
    clientKeyFile: file('client.key'),
    ca: readFileSync(file('ca.crt'), 'utf8'),
    issueClient: (cn) => {
      const name = `client-${cn.replace(/[^a-z0-9]/gi, '_')}`;
      issue(name, `/CN=${cn}`, 'extendedKeyUsage=clientAuth\n');
      return { certFile: file(`${name}.crt`), keyFile: file(`${name}.key`) };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * An https upstream on a free port that demands a client certificate from `certs`' CA and answers
 * 200 with `answer(subject)`, the subject being the client certificate's CN; with `close`, one
 * request per connection. `subjects` lists each request's CN. The caller closes `server`.
 */
export async function startMtlsUpstream(
  certs: TestCertificates,
  options: { close: boolean; answer?: (subject: string) => string },
): Promise<{ url: string; subjects: string[]; server: Server }> {
  const subjects: string[] = [];
  const server = createServer(
    {
      cert: readFileSync(certs.serverCertFile),
      key: readFileSync(certs.serverKeyFile),
      ca: certs.ca,
      requestCert: true,
      rejectUnauthorized: true,
    },
    (req, res) => {
      const subject = String((req.socket as TLSSocket).getPeerCertificate().subject?.CN ?? '');
      subjects.push(subject);
      res.writeHead(200, { 'content-type': 'text/plain', ...(options.close ? { connection: 'close' } : {}) });
      res.end(options.answer?.(subject) ?? subject);
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, subjects, server };
}
