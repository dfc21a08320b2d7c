import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import type { Registry } from 'prom-client';
import { errorBody } from '../proxy/errors.js';
import { formatDuration } from '../util/duration.js';
import type { TokenManager } from '../tokens/token-manager.js';
import type { AdminAccess } from './access.js';
import { accountStatusJson, type AccountView } from './status.js';
import { STATUS_PAGE_CSP, statusPageHtml } from './status-page.js';

export interface AdminOptions {
  registry: Registry;
  accounts: ReadonlyArray<AccountView & { manager: TokenManager }>;
  now(): number;
  /** False while draining at shutdown: /readyz turns 503 at once. */
  accepting(): boolean;
  storeType: string;
  /** S4: who may use the admin port (address, Host, Origin, API key). */
  access: AdminAccess;
}

/** The admin endpoints (docs/contract.md §6) on their own port; Express is fine off the hot path. */
export function createAdminApp(options: AdminOptions): Express {
  const app = express();
  app.disable('x-powered-by');
  // Express's own error page then never shows a stack trace, whatever NODE_ENV says.
  app.set('env', 'production');
  const byName = new Map(options.accounts.map((account) => [account.name, account]));
  const { everyRequest, guarded } = options.access;
  app.use(everyRequest);

  app.get('/metrics', async (_req, res) => {
    res.type(options.registry.contentType).send(await options.registry.metrics());
  });

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', (_req, res) => {
    const readiness = readinessOf(options);
    res.status(readiness.ready ? 200 : 503).json(readiness);
  });

  app.get('/status', guarded, (req, res) => {
    const now = options.now();
    const accounts = Object.fromEntries(
      options.accounts.map((account) => [account.name, accountStatusJson(account, now)]),
    );
    if (req.query.format !== 'json' && req.accepts(['application/json', 'text/html']) === 'text/html') {
      res.set('content-security-policy', STATUS_PAGE_CSP).set('cache-control', 'no-store');
      res
        .type('html')
        .send(
          statusPageHtml({ now, store: options.storeType, accounts, refreshSeconds: refreshParam(req.query.refresh) }),
        );
      return;
    }
    res.json({ now: new Date(now).toISOString(), store: options.storeType, accounts });
  });

  app.post('/accounts/:name/refresh', guarded, async (req: Request<{ name: string }>, res) => {
    const account = byName.get(req.params.name);
    if (account === undefined) {
      res
        .status(404)
        .type('json')
        .send(errorBody('no_route', `no account named ${JSON.stringify(req.params.name)}`));
      return;
    }
    const outcome = await account.manager.adminRefresh();
    const why = outcome.reason ?? (outcome.result === 'deferred' ? deferredReason(account, outcome.at) : undefined);
    const reason = why === undefined ? {} : { reason: why };
    res
      .status(202)
      .json({ account: account.name, result: outcome.result, at: new Date(outcome.at).toISOString(), ...reason });
  });

  app.use((_req, res) => {
    res
      .status(404)
      .type('json')
      .send(errorBody('no_route', 'admin endpoints: /metrics /healthz /readyz /status POST /accounts/NAME/refresh'));
  });
  app.use(undecodableRequest);
  return app;
}

/**
 * §6: why a POST .../refresh was deferred, in words: "deferred" alone reads like a failure. A
 * pending retry (T5) holds it, else the loop guard (T6) does, spacing requests by the gap shown. A
 * deferral with its own reason (P2: the same credentials were rejected) says that instead.
 */
function deferredReason(account: { manager: TokenManager }, at: number): string {
  const status = account.manager.status();
  if (status.nextTrigger === 'retry')
    return 'the last token request failed; the retry already planned for "at" serves this request too';
  const gap = status.lastRequestAt === undefined ? '' : ` at least ${formatDuration(at - status.lastRequestAt)} apart`;
  return `the loop guard spaces token requests${gap} (refresh.minInterval): this one runs at "at"`;
}

/** `/status?refresh=N`: seconds between page reloads (0 = off); anything else keeps the default. */
function refreshParam(value: unknown): number | undefined {
  if (typeof value !== 'string' || !/^\d{1,4}$/.test(value)) return undefined;
  return Number(value);
}

/**
 * `/readyz` (P4): every account's reason when not ready; 200 for `valid`, `degraded` and
 * `refreshing` with a valid token, whose degraded reasons are listed under `warnings`.
 */
function readinessOf(options: AdminOptions): {
  ready: boolean;
  reasons: Record<string, string>;
  warnings?: Record<string, string[]>;
} {
  const reasons: Record<string, string> = {};
  if (!options.accepting()) reasons['(sidecar)'] = 'shutting down';
  const warnings: Record<string, string[]> = {};
  for (const account of options.accounts) {
    const status = account.status();
    if (!status.ready) reasons[account.name] = status.reason ?? 'not ready';
    if (status.warnings.length > 0) warnings[account.name] = status.warnings;
  }
  const ready = Object.keys(reasons).length === 0;
  return { ready, reasons, ...(Object.keys(warnings).length > 0 ? { warnings } : {}) };
}

/**
 * §9, F5: a request Express cannot decode (a malformed %-escape in a path parameter) gets JSON,
 * never Express's default HTML page with a stack trace.
 */
function undecodableRequest(error: unknown, _req: Request, res: Response, next: NextFunction): void {
  if (res.headersSent) {
    next(error);
    return;
  }
  const status = (error as { status?: unknown }).status;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    res
      .status(400)
      .type('json')
      .send(errorBody('bad_request', 'the request could not be decoded (a malformed %-escape?)'));
    return;
  }
  next(error);
}
