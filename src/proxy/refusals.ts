import type { ServerResponse } from 'node:http';
import { describeNetworkError } from '../util/net-errors.js';
import { TokenUnavailableError } from '../tokens/types.js';
import type { TokenNotHeaderSafeError } from './bearer.js';
import { SIDECAR_ERRORS, sendError, writeRawError, type SidecarErrorCode } from './errors.js';
import { secondsSince, type RawClient } from './exchange.js';
import type { UpstreamFailure } from './transport.js';
import type { ProxyMetrics } from './types.js';
import type { UpstreamAccount } from './upstream.js';
import { errnoOf } from '../util/errors.js';
import { displayUrl } from '../util/display-url.js';
import { proxyRefusalText } from '../flows/proxy-agent.js';

/** What the sidecar answers itself instead of an upstream answer (F5). */
export interface Refusal {
  code: SidecarErrorCode;
  message: string;
  account?: UpstreamAccount;
  /** Sent as `Retry-After` (a 503 token_unavailable, T7). */
  retryAfterSeconds?: number;
}

/** Answers an HTTP client with the refusal's JSON error (F5); a response whose head went out is cut. */
export function sendRefusal(res: ServerResponse, refusal: Refusal): void {
  sendError(res, refusal.code, refusal.message, refusal.account?.name, retryAfterHeader(refusal));
}

/** Answers a raw-socket client with the refusal's JSON error (F5) and counts it (unrouted until routed). */
export function writeRawRefusal(client: RawClient, refusal: Refusal, unrouted: ProxyMetrics): void {
  writeRawError(client.socket, refusal.code, refusal.message, client.account?.name);
  (client.account?.metrics ?? unrouted).observe(SIDECAR_ERRORS[refusal.code].status, secondsSince(client.started));
}

/** T7: no valid token could be had: 503 with the Retry-After the token manager suggests. */
export function tokenRefusal(account: UpstreamAccount, error: unknown): Refusal {
  if (error instanceof TokenUnavailableError) {
    return { code: 'token_unavailable', message: error.message, account, retryAfterSeconds: error.retryAfterSeconds };
  }
  return {
    code: 'token_unavailable',
    message: `no valid token for account ${account.name}`,
    account,
    retryAfterSeconds: 1,
  };
}

/** F5: the upstream could not be reached (502) or did not connect or answer in time (504). */
export function upstreamFailureRefusal(
  account: UpstreamAccount,
  { error, timedOut }: Pick<UpstreamFailure, 'error' | 'timedOut'>,
): Refusal {
  const where =
    account.proxy === undefined
      ? `upstream ${account.upstream.origin}`
      : `upstream ${account.upstream.origin} via proxy ${displayUrl(account.proxy.url)}`;
  const refused = account.proxy === undefined ? undefined : proxyRefusalText(error);
  if (refused !== undefined) return { code: 'upstream_unreachable', message: `${where}: ${refused}`, account };
  if (timedOut === 'connect' || error.code === 'ETIMEDOUT') {
    return {
      code: 'upstream_timeout',
      message: `${where} did not accept a connection within ${account.timeouts.connectMs}ms`,
      account,
    };
  }
  if (timedOut === 'response') {
    return {
      code: 'upstream_timeout',
      message: `${where} did not answer within ${account.timeouts.responseMs}ms`,
      account,
    };
  }
  return { code: 'upstream_unreachable', message: `${where}: ${describeNetworkError(error)}`, account };
}

/** R10: no connection of the account's pool came free within `timeouts.queue`: 503, try again in a second. */
export function busyRefusal(account: UpstreamAccount): Refusal {
  return {
    code: 'upstream_busy',
    message: `all connections to upstream ${account.upstream.origin} stayed busy for ${account.timeouts.queueMs}ms`,
    account,
    retryAfterSeconds: 1,
  };
}

/** R1: a token the writer refused is no valid token for the client: 503, as when none could be had (T7). */
export function unsafeTokenRefusal(account: UpstreamAccount, error: TokenNotHeaderSafeError): Refusal {
  return {
    code: 'token_unavailable',
    message: `the token of account ${account.name} cannot be sent: ${error.reason}`,
    account,
    retryAfterSeconds: 1,
  };
}

/** R3: the upstream's answer broke off before anything of it reached the client. */
export function brokenAnswerRefusal(account: UpstreamAccount): Refusal {
  return {
    code: 'upstream_unreachable',
    message: 'the upstream closed the connection before its answer was complete',
    account,
  };
}

/** F5: a throw while passing a request or an answer on is a 502 that names its code, never its text. */
export function passOnFailureRefusal(account: UpstreamAccount | undefined, error: unknown): Refusal {
  return {
    code: 'upstream_unreachable',
    message: `bearer-sidecar could not pass this exchange on (${errorCode(error)})`,
    account,
  };
}

/** The `Retry-After` header of a refusal that has one, else no extra header. */
export function retryAfterHeader(refusal: Refusal): Record<string, string> {
  return refusal.retryAfterSeconds === undefined ? {} : { 'retry-after': String(refusal.retryAfterSeconds) };
}

/** What identifies a thrown value in a log line or a message: its code or class name, never its text. */
export function errorCode(error: unknown): string {
  return errnoOf(error) ?? (error instanceof Error ? error.name : typeof error);
}
