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

/** Extra CAs are added to Node's own, never replacing them (F4). R5: a regular file of at most 1 MiB. */
export function upstreamTls(account: AccountConfig): TlsOptions {
  const caFile = account.tls.caFile;
  const ca =
    caFile === undefined
      ? undefined
      : [...rootCertificates, readRegularFileSync(caFile, { maxBytes: FILE_LIMITS.secretOrKey }).toString('utf8')];
  const { certFile, keyFile } = account.tls;
  return {
    ...(ca === undefined ? {} : { ca }),
    rejectUnauthorized: !account.tls.insecureSkipVerify,
    ...(certFile === undefined || keyFile === undefined
      ? {}
      : { clientCertificate: new ClientCertificate(certFile, keyFile) }),
  };
}

/**
 * The TLS of the account's token endpoint: the upstream's trust (F4), and for `clientAuth:
 * tls_client_auth` the client certificate of `auth.tls` (E2, RFC 8705), never the upstream's.
 * Throws ClientCertificateError when the pair cannot be used (the configuration check said so).
 */
export function tokenEndpointTls(account: AccountConfig): TlsOptions {
  const { clientCertificate: _upstreamOnly, ...trust } = upstreamTls(account);
  const auth = account.auth;
  if (auth.flow !== 'oauth2' || auth.clientAuth !== 'tls_client_auth' || auth.tls === undefined) return trust;
  return { ...trust, clientCertificate: new ClientCertificate(auth.tls.certFile, auth.tls.keyFile) };
}
