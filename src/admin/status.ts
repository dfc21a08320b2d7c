import type { TokenFlow } from '../flows/types.js';
import type { TokenStatus } from '../tokens/token-manager.js';

export interface AccountView {
  name: string;
  flow: TokenFlow;
  upstream: URL;
  status(): TokenStatus;
}

/** A URL as shown to operators: never with userinfo, never with a query (F6). */
export function displayUrl(url: URL | string): string {
  const parsed = typeof url === 'string' ? new URL(url) : url;
  return `${parsed.origin}${parsed.pathname === '/' ? '' : parsed.pathname}`;
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

/** The /status document: everything an operator needs, and no secret (fingerprints only). */
export function accountStatusJson(view: AccountView, now: number): Record<string, unknown> {
  const status = view.status();
  return {
    state: status.state,
    ready: status.ready,
    reason: status.reason ?? null,
    dialect: view.flow.dialect,
    upstream: displayUrl(view.upstream),
    tokenEndpoint: displayUrl(view.flow.endpoint('login')),
    fingerprint: status.fingerprint ?? null,
    generation: status.generation,
    obtainedAt: iso(status.obtainedAt),
    expiresAt: iso(status.expiresAt),
    expiresInSeconds: status.expiresAt === undefined ? null : Math.round((status.expiresAt - now) / 1000),
    lifetimeSeconds: status.lifetimeMs === undefined ? null : status.lifetimeMs / 1000,
    nextRefreshAt: iso(status.nextRequestAt),
    nextTrigger: status.nextTrigger ?? null,
    lastTokenRequestAt: iso(status.lastRequestAt),
    lastError: status.lastError === undefined ? null : { at: iso(status.lastError.at), message: status.lastError.message },
    consecutiveFailures: status.consecutiveFailures,
    hasRefreshToken: status.hasRefreshToken,
    requestsWaitingForToken: status.waiting,
    tokenRequests: status.counts,
  };
}

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);

/** A plain page for a browser that asks for text/html: same fields, no external assets. */
export function statusHtml(accounts: Record<string, Record<string, unknown>>): string {
  const rows = Object.entries(accounts)
    .map(([name, fields]) => {
      const cells = Object.entries(fields)
        .map(([key, value]) => `<tr><th>${escapeHtml(key)}</th><td>${escapeHtml(typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value))}</td></tr>`)
        .join('');
      return `<section><h2>${escapeHtml(name)}</h2><table>${cells}</table></section>`;
    })
    .join('');
  return `<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="5"><title>bearer-sidecar status</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem}th{text-align:left;padding-right:1rem;color:#555}td{font-family:monospace}section{margin-bottom:2rem}</style>
</head><body><h1>bearer-sidecar</h1>${rows}</body></html>`;
}
