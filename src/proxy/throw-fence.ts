import type { Logger } from '../util/logger.js';
import { TokenNotHeaderSafeError } from './bearer.js';
import type { InboundRequest, RawClient } from './exchange.js';
import {
  errorCode,
  passOnFailureRefusal,
  sendRefusal,
  unsafeTokenRefusal,
  writeRawRefusal,
  type Refusal,
} from './refusals.js';
import type { ProxyMetrics } from './types.js';
import type { UpstreamAccount } from './upstream.js';

/**
 * No input may crash the process (§9): every entry point (request, upgrade, CONNECT) and every
 * continuation it schedules (a token that arrives later, a replay, an answer passed on) runs
 * inside a fence that answers the client (a JSON error of F5, or a cut connection once a head
 * went out) and logs what was thrown, instead of letting it reach `uncaughtException`.
 */
export class ThrowFence {
  readonly #logger: Logger;
  /** Counts raw-socket refusals before an account was chosen. */
  readonly #unrouted: ProxyMetrics;

  constructor(logger: Logger, unrouted: ProxyMetrics) {
    this.#logger = logger;
    this.#unrouted = unrouted;
  }

  /**
   * Runs `work` for a request; whatever it throws answers the client (F5: 503 for a token that is
   * not header-safe, else 502; a cut connection once a head went out) and is logged.
   */
  run(inbound: InboundRequest, work: () => void): void {
    try {
      work();
    } catch (error) {
      this.answerFailure(inbound, error);
    }
  }

  /** What a throw for a request becomes: its upstream request aborted, the client answered, the throw logged. */
  answerFailure(inbound: InboundRequest, error: unknown): void {
    const { res, account } = inbound;
    this.contain('answering a failed request', account, () => {
      // Whatever the upstream still sends has nowhere to go.
      inbound.exchange?.upstream?.abort();
      // sendError cuts a response whose head already went out.
      sendRefusal(res, this.#refusalForThrow(error, account, 'request'));
    });
  }

  /** Like run(), for a client on a raw socket (upgrade, CONNECT): a JSON error written on it, or a cut socket. */
  runRaw(client: RawClient, work: () => void): void {
    try {
      work();
    } catch (error) {
      this.contain('answering a failed upgrade', client.account, () =>
        writeRawRefusal(client, this.#refusalForThrow(error, client.account, 'upgrade'), this.#unrouted),
      );
    }
  }

  /**
   * Last fence, where no answer is possible any longer: what was thrown is logged, nothing more.
   * `argument` is passed to `work`, so a hot caller can pass a function made once, not a closure per call.
   */
  contain<T>(what: string, account: UpstreamAccount | undefined, work: (argument: T) => void, argument?: T): void {
    try {
      work(argument as T);
    } catch (error) {
      this.#reportThrow(what, account, error);
    }
  }

  /** What a throw becomes for the client, logged: 503 for a token that is not header-safe (R1), else 502 (F5). */
  #refusalForThrow(error: unknown, account: UpstreamAccount | undefined, entry: string): Refusal {
    if (error instanceof TokenNotHeaderSafeError && account !== undefined) {
      this.#reportUnsafeToken(account, error);
      return unsafeTokenRefusal(account, error);
    }
    this.#reportThrow(entry, account, error);
    return passOnFailureRefusal(account, error);
  }

  /** A throw on the data plane is a bug or hostile input: logged with its code, never its message (it may quote a header). */
  #reportThrow(entry: string, account: UpstreamAccount | undefined, error: unknown): void {
    this.#logger.error(
      { account: account?.name, entry, code: errorCode(error) },
      `data plane: a throw was contained (${entry})`,
    );
  }

  /** R1: logged once per token (not per request), with the reason and never the token. */
  #reportUnsafeToken(account: UpstreamAccount, error: TokenNotHeaderSafeError): void {
    if (!error.firstReport) return;
    this.#logger.warn(
      { account: account.name, reason: error.reason },
      `the token of account ${account.name} is not header-safe and is never sent`,
    );
  }
}
