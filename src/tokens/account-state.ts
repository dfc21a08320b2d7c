import type { ActiveToken } from './active-token.js';
import { FRESH_TOKENS_REJECTED, type RejectionEscalation } from './escalation.js';
import type { Readiness } from './readiness.js';
import type { RenewalSchedule } from './renewal-schedule.js';
import type { SharedChain } from './shared-chain.js';
import type { AccountState, TokenStatus } from './types.js';

/** P4: every state an account can be in, in the order the gauge and the docs list them. */
export const ACCOUNT_STATES: readonly AccountState[] = [
  'starting',
  'valid',
  'degraded',
  'refreshing',
  'expired',
  'rejected',
  'stopped',
];

/** What makes an account with a valid token `degraded` (P4). */
export interface DegradationInputs {
  /** P1: a token obtained after an upstream rejection was rejected too. */
  freshTokensRejected: boolean;
  /** T5: failed token requests since the last token, and the last error. */
  failures: number;
  lastError: { message: string } | undefined;
  /** T10: why the shared store cannot be used right now. */
  storeProblem: string | undefined;
  /** P3: the account may renew without the lock before its token expires. */
  unlockedRefreshRisk: string | undefined;
}

/**
 * P4: the reasons a valid token's account is `degraded`, most pressing first: fresh tokens
 * rejected (P1), renewals failing (T5), the store unreachable (T10), an unlocked refresh ahead (P3).
 * Empty when nothing is wrong. Reasons are plain text: no secret, no spec item code.
 */
export function degradedReasons(inputs: DegradationInputs): string[] {
  const reasons: string[] = [];
  if (inputs.freshTokensRejected) reasons.push(FRESH_TOKENS_REJECTED);
  if (inputs.failures > 0 && inputs.lastError !== undefined)
    reasons.push(`token renewals failing (${inputs.failures} in a row): ${inputs.lastError.message}`);
  if (inputs.storeProblem !== undefined) reasons.push(inputs.storeProblem);
  if (inputs.unlockedRefreshRisk !== undefined) reasons.push(inputs.unlockedRefreshRisk);
  return reasons;
}

/** The manager's parts that /status reads (token-manager.ts). */
export interface StatusParts {
  readiness: Readiness;
  renewal: Pick<RenewalSchedule, 'statusFields' | 'failures'>;
  chain: Pick<SharedChain, 'statusFields'>;
  escalation: Pick<RejectionEscalation, 'degraded'>;
  activity: { stopped: boolean; refreshing: boolean };
  hasRefreshToken: boolean;
  waiting: number;
  counts: TokenStatus['counts'];
  /** P3: the account shares its refresh chain with other replicas and cannot log in. */
  refreshOnlyShared: boolean;
}

/** P3: the degraded reason of a refresh-only account whose shared store is unreachable. */
export const UNLOCKED_REFRESH_RISK =
  'store unreachable and no credentials to log in with: the refresh token will be spent without the lock shortly before the token expires (another replica may spend it too)';

/**
 * The account as /status, /readyz and the metrics show it (P4). `at.now` is "now" on the held
 * token's own clock (R8) and `at.wallNow` the wall clock now: the token's times are shown moved
 * into the wall clock's frame of this moment.
 */
export function composeStatus(
  at: { now: number; wallNow: number; token: ActiveToken | undefined; generation: number },
  parts: StatusParts,
): TokenStatus {
  const { now, token } = at;
  const valid = token !== undefined && now < token.expiresAt;
  const shown = (time: number | undefined) => (time === undefined ? undefined : time + at.wallNow - now);
  const chain = parts.chain.statusFields();
  const warnings = valid
    ? degradedReasons({
        freshTokensRejected: parts.escalation.degraded,
        failures: parts.renewal.failures,
        lastError: parts.readiness.lastError,
        storeProblem: chain.storeProblem,
        unlockedRefreshRisk:
          parts.refreshOnlyShared && parts.hasRefreshToken && chain.storeProblem !== undefined
            ? UNLOCKED_REFRESH_RISK
            : undefined,
      })
    : [];
  return {
    state: parts.readiness.state(token, now, { ...parts.activity, degraded: warnings.length > 0 }),
    ready: valid && !parts.readiness.refused,
    reason: parts.readiness.notReadyReason(token, now),
    warnings,
    fingerprint: token?.fingerprint,
    generation: at.generation,
    obtainedAt: shown(token?.obtainedAt),
    expiresAt: shown(token?.expiresAt),
    lifetimeMs: token?.lifetimeMs,
    ...parts.renewal.statusFields(),
    lastError: parts.readiness.lastError,
    hasRefreshToken: parts.hasRefreshToken,
    waiting: parts.waiting,
    ...chain,
    counts: parts.counts,
  };
}
