import { performance } from 'node:perf_hooks';
import { USE_DPOP_NONCE } from '../flows/dpop.js';
import { TokenTransportError } from '../flows/http-client.js';
import { retryAfterMs } from '../flows/retry-after.js';
import {
  CredentialUnavailableError,
  parseJsonObject,
  type IssuedToken,
  type ParsedTokenResponse,
  type TokenFlow,
  type TokenHttpRequest,
  type TokenHttpResponse,
  type TokenRequestKind,
} from '../flows/types.js';
import type { TokenState } from '../stores/types.js';
import type { Clock, ClockReading } from '../util/clock.js';
import { scrubServerText } from '../util/scrub.js';
import type { Secret } from '../util/secret.js';
import { resolveLifetime, type LifetimePolicy, type ResolvedLifetime } from './lifetime.js';
import { messageOf, asError } from '../util/errors.js';

/** Transport failures where the request certainly never reached the server (nothing was consumed). */
const NOT_DELIVERED = new Set([
  'ECONNREFUSED',
  // E6: the egress proxy refused the request (407, or a CONNECT it would not open).
  'proxy_refused',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  // TLS failed before any request byte was sent.
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'EPROTO',
]);

const ALREADY_SPENT = 'the configured refresh token was already used; put a new one in refreshTokenFile';

/** A token request, built: what it is, what goes on the wire, and the refresh token it spends. */
export interface BuiltRequest {
  kind: TokenRequestKind;
  request: TokenHttpRequest;
  /** The refresh token this request spends, if any. */
  spends: Secret | undefined;
}

/** The request that starts a chain: a login, or for grant refresh_token a refresh with the configured token. */
export async function initialRequest(flow: TokenFlow): Promise<BuiltRequest> {
  const initial = await flow.buildInitialRequest();
  return { kind: initial.kind, request: initial.request, spends: initial.sentRefreshToken };
}

/** The steps of one exchange that differ between callers (serve, check, authorize). */
export interface ExchangeSteps {
  /** Builds the request (reading secret files); a throw means nothing was sent. */
  build(): Promise<BuiltRequest>;
  /** Sends it (timeout and TLS bound by the caller). */
  send(request: TokenHttpRequest): Promise<TokenHttpResponse>;
  /** The dialect's parser (R1, R2); `secrets` are redacted from any server text it quotes (R4). */
  parse(response: TokenHttpResponse, secrets: Iterable<Secret | undefined>): ParsedTokenResponse;
  /** True when a refresh spends its refresh token even when no new one comes (session). */
  rotatesRefreshTokens: boolean;
  /** What the account holds besides the request's own secrets (access and refresh token): redacted too (R4). */
  heldSecrets?: ReadonlyArray<Secret | undefined>;
  /** T3: a request that would spend a refresh token for which this is true is not sent. */
  isSpent?(refreshToken: Secret): boolean;
  /** Told as the request goes out, with `sentAt` and both clocks' reading then (the loop guard counts from then, T6, R8). */
  onSend?(sentAt: number, reading: ClockReading): void;
}

export interface ExchangeContext {
  /**
   * The local clock: when the exchange began (T1) and Retry-After's "now" (R2); its monotonic
   * reading then is where the token's age starts (R8; default `monotonicNow`).
   */
  clock: Pick<Clock, 'now'> & Partial<Pick<Clock, 'monotonic'>>;
  policy: LifetimePolicy;
  /** A monotonic clock in ms, for the request's duration (default performance.now). */
  monotonicNow?: () => number;
}

/** What every exchange that sent its request has. */
interface Sent {
  kind: TokenRequestKind;
  /** When the exchange began, before the request was built: the token's obtainedAt, the guard's last request time. */
  sentAt: number;
  /** The same moment on both clocks: where the token's age starts (R8). */
  sentReading: ClockReading;
  /** From sending to the answer (or the failure), in ms on the monotonic clock. */
  durationMs: number;
  /** The answer's status; undefined when no answer came. */
  httpStatus: number | undefined;
  /** The refresh token the request carried, if any. */
  sentRefreshToken: Secret | undefined;
  /** The refresh token this exchange spent (T3): it must never be sent again. */
  spentRefreshToken: Secret | undefined;
  /**
   * E4: the first attempt, when the token endpoint asked for a DPoP nonce and the request was
   * sent again at once with it (the fields above then describe the second attempt).
   */
  nonceRetry?: { durationMs: number; httpStatus: number | undefined };
}

export interface ExchangeSuccess extends Sent {
  outcome: 'success';
  /** The token as the server issued it (its refresh token only when one came). */
  issued: IssuedToken;
  /** T1: the lifetime on the local clock, its source, the anomalies (§8) and the server's clock skew. */
  lifetime: ResolvedLifetime;
  /** The new state: the refresh token is the issued one, or the one sent when the dialect keeps it. */
  state: TokenState;
}

export interface ExchangeRejected extends Sent {
  outcome: 'rejected';
  reason: string;
}

export interface ExchangeFailed extends Sent {
  outcome: 'error';
  /** The parser's reason, or the transport failure (server text scrubbed, R4). */
  reason: string;
  /** What was thrown instead of an answer (a transport failure), if that is how it failed. */
  thrown: Error | undefined;
  /** False when the request certainly never reached the server (its refresh token is not spent). */
  delivered: boolean;
  /** R2: the server's Retry-After (429, 503), in ms. */
  retryAfterMs: number | undefined;
}

/** Nothing was sent: a secret could not be read (`error`), or the refresh token was spent already (T3). */
export type ExchangeNotSent =
  | { outcome: 'unbuildable'; at: number; reason: string; error: Error }
  | { outcome: 'already_spent'; at: number; reason: string };

export type ExchangeResult = ExchangeNotSent | ExchangeSuccess | ExchangeRejected | ExchangeFailed;

/**
 * One token exchange: build the request, send it, parse the answer, resolve the token's
 * lifetime (T1) and produce the new state, with which refresh token is now spent (T3), the
 * server's Retry-After (R2) and whether a failed request reached the server (T5). Pure apart
 * from `steps` (secret files, the socket) and the injected clocks: the token manager (serve),
 * `check` and `authorize` all exchange tokens through it, and decide what follows themselves.
 */
export async function exchangeToken(steps: ExchangeSteps, context: ExchangeContext): Promise<ExchangeResult> {
  const sentAt = context.clock.now();
  const sentReading = { wall: sentAt, mono: readMonotonic(context) };
  let built: BuiltRequest;
  try {
    built = await steps.build();
  } catch (error) {
    // An unreadable secret file is a rejected login (§8): nothing was sent.
    const reason =
      error instanceof CredentialUnavailableError ? error.message : `cannot read a secret: ${messageOf(error)}`;
    return { outcome: 'unbuildable', at: sentAt, reason, error: asError(error) };
  }
  if (built.spends !== undefined && steps.isSpent?.(built.spends) === true)
    return { outcome: 'already_spent', at: sentAt, reason: ALREADY_SPENT };

  steps.onSend?.(sentAt, sentReading);
  // R4: whatever the server says back is scrubbed of what we sent it and what we hold.
  const secrets = [...built.request.secrets, ...(steps.heldSecrets ?? [])];
  let answer = await sendAndParse(built.request, secrets, steps, context);
  let nonceRetry: Sent['nonceRetry'];
  if (answer.asksForNonce) {
    // E4: one more attempt at once with the nonce, part of this exchange (no loop guard between).
    nonceRetry = { durationMs: answer.durationMs, httpStatus: answer.httpStatus };
    // Built anew: a client assertion's jti is single-use (E1), and the server has seen this one.
    const again = await steps.build().catch(() => built);
    answer = await sendAndParse(
      again.request,
      [...again.request.secrets, ...(steps.heldSecrets ?? [])],
      steps,
      context,
    );
  }
  const sent = {
    kind: built.kind,
    sentAt,
    sentReading,
    durationMs: answer.durationMs,
    httpStatus: answer.httpStatus,
    sentRefreshToken: built.spends,
    ...(nonceRetry === undefined ? {} : { nonceRetry }),
  };
  const { parsed } = answer;
  if (parsed.outcome === 'success')
    return produceNewState(built, parsed.token, { sent, steps, policy: context.policy });
  // A rejected refresh token is dead (T3, T4).
  if (parsed.outcome === 'rejected')
    return { ...sent, outcome: 'rejected', reason: parsed.reason, spentRefreshToken: built.spends };
  return {
    ...sent,
    outcome: 'error',
    reason: parsed.reason,
    // R1: an answer with tokens we cannot use spent the refresh token that was sent.
    spentRefreshToken: parsed.consumed === true ? built.spends : undefined,
    thrown: answer.thrown,
    delivered: answer.delivered,
    retryAfterMs: answer.retryAfterMs,
  };
}

interface Answer {
  parsed: ParsedTokenResponse;
  httpStatus: number | undefined;
  durationMs: number;
  delivered: boolean;
  retryAfterMs: number | undefined;
  thrown: Error | undefined;
  /** E4: the token endpoint asked for a DPoP nonce (`use_dpop_nonce` with a `DPoP-Nonce` it sent). */
  asksForNonce?: boolean;
}

/** The monotonic clock of the exchange: the caller's clock's, else `monotonicNow`, else performance.now. */
function readMonotonic(context: ExchangeContext): number {
  if (context.clock.monotonic !== undefined) return context.clock.monotonic();
  return context.monotonicNow !== undefined ? context.monotonicNow() : performance.now();
}

/** Sends the request and turns whatever comes back (or does not) into an outcome. */
async function sendAndParse(
  request: TokenHttpRequest,
  secrets: Array<Secret | undefined>,
  steps: ExchangeSteps,
  context: ExchangeContext,
): Promise<Answer> {
  const monotonicNow = context.monotonicNow ?? (() => performance.now());
  const started = monotonicNow();
  try {
    const proof = request.dpop === undefined ? undefined : await request.dpop.tokenRequestProof(request.url);
    const response = await steps.send(proof === undefined ? request : withHeader(request, 'dpop', proof));
    const durationMs = monotonicNow() - started;
    const parsed = steps.parse(response, secrets);
    const newNonce = request.dpop?.takeNonce('token', response.headers['dpop-nonce']) ?? false;
    if (newNonce && parsed.outcome !== 'success' && errorCodeOf(response.body) === USE_DPOP_NONCE)
      return {
        parsed,
        httpStatus: response.status,
        durationMs,
        delivered: true,
        retryAfterMs: undefined,
        thrown: undefined,
        asksForNonce: true,
      };
    const retryAfter = parsed.outcome === 'error' ? retryAfterMs(response, context.clock.now()) : undefined;
    return {
      parsed,
      httpStatus: response.status,
      durationMs,
      delivered: true,
      retryAfterMs: retryAfter,
      thrown: undefined,
    };
  } catch (error) {
    const durationMs = monotonicNow() - started;
    const reason =
      error instanceof TokenTransportError
        ? error.message
        : `request failed: ${scrubServerText(messageOf(error), secrets)}`;
    const delivered = !(error instanceof TokenTransportError && NOT_DELIVERED.has(error.transportCode));
    return {
      parsed: { outcome: 'error', reason },
      httpStatus: undefined,
      durationMs,
      delivered,
      retryAfterMs: undefined,
      thrown: asError(error),
    };
  }
}

/** `request` with one more header (the DPoP proof of this attempt). */
function withHeader(request: TokenHttpRequest, name: string, value: string): TokenHttpRequest {
  return { ...request, headers: { ...request.headers, [name]: value } };
}

/** The `error` member of a JSON error answer (RFC 6749 §5.2), if any. */
function errorCodeOf(body: string): string | undefined {
  const code = parseJsonObject(body)?.error;
  return typeof code === 'string' ? code : undefined;
}

/** T1, T3: the issued token's lifetime and the new state; which refresh token the exchange spent. */
function produceNewState(
  built: BuiltRequest,
  issued: IssuedToken,
  context: {
    sent: Omit<Sent, 'spentRefreshToken'>;
    steps: Pick<ExchangeSteps, 'rotatesRefreshTokens'>;
    policy: LifetimePolicy;
  },
): ExchangeSuccess {
  const { sentAt } = context.sent;
  const lifetime = resolveLifetime(issued.lifetime, issued.accessToken, sentAt, context.policy);
  // A dialect that rotates on every refresh (session) has spent the old token even if no new one came.
  const keepsOld = built.kind === 'refresh' && !context.steps.rotatesRefreshTokens;
  const refreshToken = issued.refreshToken ?? (keepsOld ? built.spends : undefined);
  const spentSent = issued.refreshToken !== undefined ? !issued.refreshToken.equals(built.spends) : !keepsOld;
  const state: TokenState = {
    accessToken: issued.accessToken,
    obtainedAt: sentAt,
    expiresAt: sentAt + lifetime.lifetimeMs,
    lifetimeMs: lifetime.lifetimeMs,
    refreshToken,
  };
  return {
    ...context.sent,
    outcome: 'success',
    spentRefreshToken: built.spends !== undefined && spentSent ? built.spends : undefined,
    issued,
    lifetime,
    state,
  };
}
