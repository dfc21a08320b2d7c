import { rootCertificates } from 'node:tls';
import { FILE_LIMITS, readRegularFileSync } from '../util/safe-file.js';
import type { AccountConfig } from './resolve.js';

/**
 * The trust an account's `upstreamTls` names, as Node's TLS options: used for the upstream (the
 * proxy's pool and WebSocket upgrades) and for the token endpoint (the manager, `check`, `authorize`).
 */
export interface TlsOptions {
  ca?: string[];
  rejectUnauthorized: boolean;
}

/** Extra CAs are added to Node's own, never replacing them (F4). R5: a regular file of at most 1 MiB. */
export function upstreamTls(account: AccountConfig): TlsOptions {
  const caFile = account.tls.caFile;
  const ca =
    caFile === undefined
      ? undefined
      : [...rootCertificates, readRegularFileSync(caFile, { maxBytes: FILE_LIMITS.secretOrKey }).toString('utf8')];
  return ca === undefined
    ? { rejectUnauthorized: !account.tls.insecureSkipVerify }
    : { ca, rejectUnauthorized: !account.tls.insecureSkipVerify };
}
