import { rootCertificates } from 'node:tls';
import { ClientCertificate } from '../util/client-certificate.js';
import { FILE_LIMITS, readRegularFileSync } from '../util/safe-file.js';
import type { AccountConfig } from './resolve.js';

/**
 * The trust an account's `upstreamTls` names, as Node's TLS options: used for the upstream (the
 * proxy's pool and WebSocket upgrades) and for the token endpoint (the manager, `check`, `authorize`).
 */
export interface TlsOptions {
  ca?: string[];
  rejectUnauthorized: boolean;
  /** E2: the client certificate to present (mutual TLS), read again when its files change. */
  clientCertificate?: ClientCertificate;
}

/** The upstream's TLS: its trust (F4) and, with `certFile`/`keyFile`, a client certificate (E2). */
export function upstreamTls(account: AccountConfig): TlsOptions {
  const { certFile, keyFile } = account.tls;
  const trust = tlsTrust(account);
  return certFile === undefined || keyFile === undefined
    ? trust
    : { ...trust, clientCertificate: new ClientCertificate(certFile, keyFile) };
}

/**
 * The TLS of the account's token endpoint: the upstream's trust (F4), and for `clientAuth:
 * tls_client_auth` the client certificate of `auth.tls` (E2, RFC 8705), never the upstream's.
 * Throws ClientCertificateError when the pair cannot be used (the configuration check said so).
 */
export function tokenEndpointTls(account: AccountConfig): TlsOptions {
  const trust = tlsTrust(account);
  const auth = account.auth;
  if (auth.flow !== 'oauth2' || auth.clientAuth !== 'tls_client_auth' || auth.tls === undefined) return trust;
  return { ...trust, clientCertificate: new ClientCertificate(auth.tls.certFile, auth.tls.keyFile) };
}

/** Extra CAs are added to Node's own, never replacing them (F4). R5: a regular file of at most 1 MiB. */
function tlsTrust(account: AccountConfig): TlsOptions {
  const caFile = account.tls.caFile;
  const rejectUnauthorized = !account.tls.insecureSkipVerify;
  if (caFile === undefined) return { rejectUnauthorized };
  const ca = readRegularFileSync(caFile, { maxBytes: FILE_LIMITS.secretOrKey }).toString('utf8');
  return { ca: [...rootCertificates, ca], rejectUnauthorized };
}
