import type { RefreshPolicy } from '../config/resolve.js';
import type { TokenHttpOptions } from '../flows/http-client.js';
import type { TokenFlow } from '../flows/types.js';
import type { TokenStore } from '../stores/types.js';
import type { Secret } from '../util/secret.js';
import { initialRequest, type BuiltRequest, type ExchangeSteps } from './exchange.js';
import type { HeldRefreshToken } from './held-refresh-token.js';
import type { RenewalSchedule } from './renewal-schedule.js';
import type { SendTokenRequest, TokenEvents } from './types.js';

/** What a serving account's exchange needs from its manager. */
export interface ServeStepsContext {
  flow: TokenFlow;
  policy: Pick<RefreshPolicy, 'timeoutMs'>;
  store: Pick<TokenStore, 'shared'>;
  send: SendTokenRequest;
  tls?: Pick<TokenHttpOptions, 'ca' | 'rejectUnauthorized' | 'egress' | 'clientCertificate'>;
  refresh: HeldRefreshToken;
  /** The access token held now (redacted from server text, R4). */
  heldToken: Secret | undefined;
  renewal: Pick<RenewalSchedule, 'requestSent'>;
  /** P3: a refresh sent without the shared store's lock is counted. */
  events: Pick<TokenEvents, 'unlockedRefresh'>;
  /** P2: called before a login is built (the credential watch reads the files then). */
  beforeLogin?: () => Promise<unknown>;
}

/**
 * The exchange steps of a serving account (token-manager.ts): refresh with the newest refresh
 * token unless a login is the safer choice (HeldRefreshToken.toSend; `unlocked`: the shared
 * store's lock could not be taken, P3), send with the account's timeout and TLS, and tell the
 * schedule when the request went out (T6).
 */
export function serveExchangeSteps(ctx: ServeStepsContext, unlocked: boolean): ExchangeSteps {
  const { flow, policy, refresh } = ctx;
  const unlockedShared = unlocked && ctx.store.shared;
  let spendsUnlocked = false;
  const build = async (): Promise<BuiltRequest> => {
    const refreshToken = refresh.toSend({ canLogin: flow.canLogin, unlockedShared });
    if (refreshToken === undefined || !flow.canRefresh) {
      await ctx.beforeLogin?.();
      return initialRequest(flow);
    }
    // P3: only an account that cannot log in gets here unlocked, in the last 2 x refresh.timeout before expiry.
    spendsUnlocked = unlockedShared;
    return { kind: 'refresh', request: await flow.buildRefreshRequest(refreshToken), spends: refreshToken };
  };
  return {
    build,
    send: (request) => ctx.send(request, { timeoutMs: policy.timeoutMs, ...ctx.tls }),
    parse: (response, secrets) => flow.parseResponse(response, secrets),
    rotatesRefreshTokens: flow.rotatesRefreshTokens,
    heldSecrets: [ctx.heldToken, refresh.current],
    isSpent: (refreshToken) => refresh.isSpent(refreshToken),
    onSend: (sentAt, reading) => {
      ctx.renewal.requestSent(sentAt, reading);
      if (spendsUnlocked) ctx.events.unlockedRefresh?.();
    },
  };
}
