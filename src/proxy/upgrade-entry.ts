import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import type { ActiveToken } from '../tokens/active-token.js';
import { admit, type AdmissionRules } from './admission.js';
import { SIDECAR_ERRORS, writeRawError } from './errors.js';
import { declaresBody, secondsSince, type RawClient } from './exchange.js';
import { PendingClient } from './pending-client.js';
import { responseOnRawSocket } from './raw-socket.js';
import { tokenRefusal, upstreamFailureRefusal, writeRawRefusal, type Refusal } from './refusals.js';
import type { ThrowFence } from './throw-fence.js';
import type { TrustedProxies } from './trusted-proxies.js';
import type { ProxyMetrics } from './types.js';
import { forwardUpgrade } from './upgrade.js';
import { upstreamRequestHeaders, type UpstreamAccount } from './upstream.js';

export interface UpgradeEntryOptions {
  rules: AdmissionRules;
  /** Metrics for clients refused before an account was chosen. */
  unrouted: ProxyMetrics;
  logger: Logger;
  fence: ThrowFence;
  /** Runs the upgrade timeouts (R11). */
  clock: Clock;
  /** S2: clients whose forwarding headers are kept (default: none). */
  trustedProxies?: TrustedProxies;
  /** The data plane's request listener: an upgrade offer other than WebSocket is served as a plain request. */
  serveAsRequest(req: IncomingMessage, res: ServerResponse, listenerAccount: UpstreamAccount | undefined): void;
}

/** A WebSocket upgrade that passed its checks and waits for, or has, its token. */
interface PendingUpgrade {
  client: RawClient;
  req: IncomingMessage;
  /** Read while it waits, so a client that leaves is noticed (R11). */
  pending: PendingClient;
  account: UpstreamAccount;
  targetPath: string;
}

/**
 * The entry points where Node hands over a raw socket instead of a response: WebSocket upgrades
 * (the same admission as HTTP, then the token, then upgrade.ts forwards them), other upgrade
 * offers (served as the plain requests they also are), and CONNECT (refused).
 */
export class UpgradeEntry {
  readonly #o: UpgradeEntryOptions;

  constructor(options: UpgradeEntryOptions) {
    this.#o = options;
  }

  /** F3: the sidecar is not a forward proxy; CONNECT gets 405 and no connection is opened. */
  handleConnect(_req: IncomingMessage, socket: Duplex): void {
    this.#o.fence.runRaw({ socket, started: performance.now(), account: undefined }, () => {
      // Node hands the socket over without an error listener: a reset must not crash the process.
      socket.on('error', (error) => this.#o.logger.debug({ err: error }, 'client socket error on CONNECT'));
      writeRawError(socket, 'method_not_allowed', 'CONNECT is not supported: bearer-sidecar is not a forward proxy');
      this.#o.unrouted.observe(SIDECAR_ERRORS.method_not_allowed.status, 0);
    });
  }

  /** WebSocket upgrades pass the same admission as HTTP and carry the token (F2). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, listenerAccount?: UpstreamAccount): void {
    const client: RawClient = { socket, started: performance.now(), account: undefined };
    this.#o.fence.runRaw(client, () => {
      socket.on('error', (error) => this.#o.logger.debug({ err: error }, 'client socket error during upgrade'));
      if (req.headers.upgrade?.toLowerCase() !== 'websocket') {
        this.#serveOfferAsRequest(req, socket, listenerAccount);
        return;
      }
      // R11: a WebSocket upgrade has no body; one that declares it would leave the upstream waiting for it.
      if (declaresBody(req)) {
        writeRawRefusal(client, upgradeBodyRefusal(), this.#o.unrouted);
        return;
      }
      const admission = admit(req, listenerAccount, this.#o.rules);
      client.account = admission.account;
      if ('code' in admission) {
        writeRawRefusal(client, admission, this.#o.unrouted);
        return;
      }
      const pending = new PendingClient(socket, head);
      this.#upgradeWithToken({ client, req, pending, account: admission.account, targetPath: admission.targetPath });
    });
  }

  /** Token pass: the upgrade goes on with the account's token now, or once one comes (T7); none in time is a 503. */
  #upgradeWithToken(upgrade: PendingUpgrade): void {
    const { client, account } = upgrade;
    const token = account.manager.current();
    if (token !== undefined) {
      this.#forward(upgrade, token);
      return;
    }
    const { fence, unrouted } = this.#o;
    account.manager.waitForToken().then(
      (fresh) => fence.runRaw(client, () => this.#forward(upgrade, fresh)),
      (error: unknown) =>
        fence.runRaw(client, () => {
          if (!client.socket.destroyed) writeRawRefusal(client, tokenRefusal(account, error), unrouted);
        }),
    );
  }

  /** Send pass: the upgrade goes upstream with the token; the client gets the 101 and the socket, or the refusal. */
  #forward(upgrade: PendingUpgrade, token: ActiveToken): void {
    const { client, account } = upgrade;
    if (client.socket.destroyed) return;
    const { fence, logger, unrouted } = this.#o;
    forwardUpgrade({
      account,
      req: upgrade.req,
      socket: client.socket,
      pending: upgrade.pending,
      clock: this.#o.clock,
      path: account.inject.targetWithToken(upgrade.targetPath, token),
      scrubAnswer: (headers) => account.inject.scrubAnswerHeaders(headers, token),
      headers: upstreamRequestHeaders(upgrade.req, account.upstream, token, {
        keepUpgrade: true,
        trustedProxies: this.#o.trustedProxies,
        inject: account.inject,
        targetPath: upgrade.targetPath,
      }),
      onAnswer: (status) =>
        fence.contain('counting an upgrade', account, () =>
          account.metrics.observe(status, secondsSince(client.started)),
        ),
      onError: (error, timedOut) =>
        fence.runRaw(client, () => {
          const refusal = upstreamFailureRefusal(account, { error, timedOut });
          logger.debug({ account: account.name, code: error.code }, refusal.message);
          writeRawRefusal(client, refusal, unrouted);
        }),
    });
  }

  /**
   * Node hands every request with an Upgrade header to the 'upgrade' event. Upgrades other than
   * WebSocket (Java's HttpClient tries `h2c`) are served as the plain HTTP/1.1 requests they
   * also are, when they carry no body; the Upgrade offer is simply not taken up.
   */
  #serveOfferAsRequest(req: IncomingMessage, socket: Duplex, listenerAccount: UpstreamAccount | undefined): void {
    if (declaresBody(req)) {
      writeRawError(
        socket,
        'bad_request',
        `an "Upgrade: ${String(req.headers.upgrade).slice(0, 40)}" request with a body is not supported; send it without Upgrade`,
      );
      return;
    }
    delete req.headers.upgrade;
    req.headers.connection = 'close';
    // The parser stopped at the upgrade; the (empty) body ends here.
    req.push(null);
    this.#o.serveAsRequest(req, responseOnRawSocket(req, socket), listenerAccount);
  }
}

/** R11: a WebSocket upgrade request that carries a body is refused (400, F5). */
function upgradeBodyRefusal(): Refusal {
  return {
    code: 'bad_request',
    message: 'a WebSocket upgrade request may not carry a body (Content-Length or Transfer-Encoding)',
  };
}
