import type { DpopKeyReport } from '../flows/dpop.js';
import { createHash } from 'node:crypto';
import { formatDuration } from '../util/duration.js';
import { LOOP_WINDOW_MS, type AccountStatusDocument } from './status.js';

/*
 * The /status page for a browser (docs/contract.md §6): one card per account, a sparkline of token
 * requests per minute so a refresh loop shows at a glance. Everything inline (no external
 * asset), nothing secret (fingerprints only), reloaded every few seconds.
 */

export const STATUS_PAGE_REFRESH_SECONDS = 5;

export interface StatusPageInput {
  now: number;
  /** Seconds between reloads; 0 turns the reload off (`/status?refresh=0`). */
  refreshSeconds?: number;
  store: string;
  accounts: Record<string, AccountStatusDocument>;
}

/** Ticks the countdowns between reloads, on the server's clock (the page carries it). */
const COUNTDOWN_SCRIPT = `(() => {
  const offset = Number(document.body.dataset.now) - Date.now();
  const fmt = (s) => { const a = Math.abs(s); const t = a < 120 ? a + 's' : a < 7200 ? +(a / 60).toFixed(1) + 'm' : +(a / 3600).toFixed(1) + 'h'; return s >= 0 ? 'in ' + t : t + ' ago'; };
  const tick = () => {
    const now = Date.now() + offset;
    for (const el of document.querySelectorAll('[data-at]')) el.textContent = fmt(Math.round((Number(el.dataset.at) - now) / 1000));
  };
  setInterval(tick, 1000);
})();`;

/** The Content-Security-Policy the page is served with: its own inline style and script only. */
export const STATUS_PAGE_CSP = `default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-${createHash('sha256').update(COUNTDOWN_SCRIPT).digest('base64')}'; img-src data:`;

export function statusPageHtml(input: StatusPageInput): string {
  const refresh = input.refreshSeconds ?? STATUS_PAGE_REFRESH_SECONDS;
  const cards = Object.entries(input.accounts)
    .map(([name, account]) => card(name, account, input.now))
    .join('\n');
  const names = Object.keys(input.accounts);
  const unready = Object.values(input.accounts).filter((account) => !account.ready).length;
  const loops = Object.values(input.accounts).filter((account) => account.refreshLoop.suspected).length;
  const degraded = Object.values(input.accounts).filter((account) => account.state === 'degraded').length;
  const summary = [
    `${names.length} account${names.length === 1 ? '' : 's'}`,
    unready === 0 ? 'all ready' : `${unready} not ready`,
    ...(degraded > 0 ? [`${degraded} degraded`] : []),
    ...(loops > 0 ? [`${loops} refresh loop${loops === 1 ? '' : 's'}?`] : []),
    `store: ${input.store}`,
  ].join(' · ');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
${refresh > 0 ? `<meta http-equiv="refresh" content="${refresh}">\n` : ''}<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bearer-sidecar status${unready > 0 || loops > 0 ? ' (attention)' : ''}</title>
<style>${STYLE}</style>
</head><body data-now="${input.now}">
<header><h1>bearer-sidecar</h1><p class="summary${unready > 0 || loops > 0 ? ' bad' : ''}">${escapeHtml(summary)}</p>
<p class="muted">at ${escapeHtml(new Date(input.now).toISOString())} · ${refresh > 0 ? `reloads every ${refresh} s` : 'reload off'} · <a href="?format=json">JSON</a></p></header>
<main>
${cards}
</main>
<script>${COUNTDOWN_SCRIPT}</script>
</body></html>
`;
}

function card(name: string, a: AccountStatusDocument, now: number): string {
  const loop = a.refreshLoop;
  const perMinute = a.tokenRequestsPerMinute;
  const lastHour = perMinute.reduce((sum, n) => sum + n, 0);
  const rows: Array<[string, string]> = [
    [
      'fingerprint',
      a.fingerprint === null
        ? '<span class="muted">no token</span>'
        : `<code>${escapeHtml(a.fingerprint)}</code> <span class="muted">generation ${a.generation}</span>`,
    ],
    [
      'expires',
      a.expiresAt === null
        ? '<span class="muted">—</span>'
        : `${countdown(a.expiresAt, now)} <span class="muted">${escapeHtml(a.expiresAt)}</span>`,
    ],
    [
      'lifetime',
      a.lifetimeSeconds === null
        ? '<span class="muted">—</span>'
        : escapeHtml(formatDuration(a.lifetimeSeconds * 1000)),
    ],
    [
      'next refresh',
      a.nextRefreshAt === null
        ? '<span class="muted">none scheduled</span>'
        : `${countdown(a.nextRefreshAt, now)} <span class="muted">${escapeHtml(a.nextTrigger ?? '')} · ${escapeHtml(a.nextRefreshAt)}</span>`,
    ],
    [
      'last error',
      a.lastError === null
        ? '<span class="muted">none</span>'
        : `<span class="error">${escapeHtml(a.lastError.message)}</span> <span class="muted">${escapeHtml(a.lastError.at ?? '')}</span>`,
    ],
    ['token endpoint', `<code>${escapeHtml(a.tokenEndpoint)}</code>`],
    ...clientRows(a),
    ['upstream', `<code>${escapeHtml(a.upstream)}</code>`],
  ];
  if (a.requestsWaitingForToken > 0)
    rows.push(['waiting', `${a.requestsWaitingForToken} request(s) waiting for a token`]);
  const counts =
    a.tokenRequestsLastHour.length === 0
      ? '<p class="muted">no token requests in the last hour</p>'
      : `<table class="counts"><thead><tr><th>kind</th><th>outcome</th><th>trigger</th><th class="n">count</th></tr></thead><tbody>${a.tokenRequestsLastHour
          .map(
            (c) =>
              `<tr><td>${escapeHtml(c.kind)}</td><td class="${c.outcome === 'success' ? 'ok' : 'error'}">${escapeHtml(c.outcome)}</td><td>${escapeHtml(c.trigger)}</td><td class="n">${c.count}</td></tr>`,
          )
          .join('')}</tbody></table>`;
  const loopBanner = loop.suspected ? `<p class="banner">${escapeHtml(loopMessage(a))}</p>` : '';
  return `<section class="card${loop.suspected ? ' loop' : ''}" data-account="${escapeHtml(name)}">
<h2>${escapeHtml(name)} <span class="state ${stateClass(a)}">${escapeHtml(a.state)}</span> <span class="dialect">${escapeHtml(a.dialect)}</span></h2>
${a.ready || a.reason === null ? '' : `<p class="reason">${escapeHtml(a.reason)}</p>`}${warningList(a)}${loopBanner}
<table class="fields">${rows.map(([key, value]) => `<tr><th>${key}</th><td>${value}</td></tr>`).join('')}</table>
<h3>Token requests per minute, last hour <span class="muted">(${lastHour} in all, peak ${Math.max(0, ...perMinute)}/min)</span></h3>
${sparkline(perMinute, loop.suspected)}
${counts}
</section>`;
}

/** P4: what makes a ready account degraded, one line each. */
function warningList(a: AccountStatusDocument): string {
  const warnings = a.reasons.filter((reason) => reason !== a.reason);
  if (warnings.length === 0) return '';
  return `<ul class="warnings">${warnings.map((reason) => `<li>${escapeHtml(reason)}</li>`).join('')}</ul>`;
}

function loopMessage(a: AccountStatusDocument): string {
  const { recent, expected } = a.refreshLoop;
  const head = `Refresh loop? ${recent} token requests in the last ${LOOP_WINDOW_MS / 60_000} min`;
  const lifetime = a.lifetimeSeconds === null ? undefined : formatDuration(a.lifetimeSeconds * 1000);
  if (recent > 3 * expected) {
    return `${head}, where ${lifetime === undefined ? 'the schedule' : `a ${lifetime} lifetime`} explains about ${expected}: something else asks for tokens (upstream rejections? admin calls?). README: troubleshooting.`;
  }
  return `${head}: the server issues ${lifetime ?? 'very short'} tokens, too short to be of use. README: troubleshooting.`;
}

/** Bars scale to the busiest minute, but never below this: a healthy one-a-minute pace stays low, a loop towers. */
const SPARK_MIN_SCALE = 6;

/** A bar per minute, scaled to the busiest minute; red when a loop is suspected. */
export function sparkline(perMinute: readonly number[], alarming: boolean): string {
  const width = 360;
  const height = 48;
  const slot = width / Math.max(1, perMinute.length);
  const peak = Math.max(SPARK_MIN_SCALE, ...perMinute);
  const bars = perMinute
    .map((count, i) => {
      if (count === 0) return '';
      const h = Math.max(2, Math.round((count / peak) * (height - 4)));
      return `<rect x="${(i * slot + 0.5).toFixed(1)}" y="${height - h}" width="${Math.max(1, slot - 1).toFixed(1)}" height="${h}"><title>${minuteName(perMinute.length - 1 - i)}: ${count}</title></rect>`;
    })
    .join('');
  return `<svg class="spark${alarming ? ' alarm' : ''}" role="img" aria-label="token requests per minute over the last hour, peak ${Math.max(0, ...perMinute)}" viewBox="0 0 ${width} ${height + 14}" width="${width}" height="${height + 14}">
<line x1="0" y1="${height + 0.5}" x2="${width}" y2="${height + 0.5}" class="axis"/>${bars}
<text x="0" y="${height + 12}">−60 min</text><text x="${width}" y="${height + 12}" text-anchor="end">now</text></svg>`;
}

/** The minute a sparkline bar counts, `age` whole minutes before the last 60 seconds. */
function minuteName(age: number): string {
  return age === 0 ? 'in the last minute' : `${age}-${age + 1} min ago`;
}

function countdown(at: string, now: number): string {
  const ms = Date.parse(at);
  const seconds = Math.round((ms - now) / 1000);
  const text = seconds >= 0 ? `in ${formatDuration(seconds * 1000)}` : `${formatDuration(-seconds * 1000)} ago`;
  return `<strong data-at="${ms}">${escapeHtml(text)}</strong>`;
}

function stateClass(a: AccountStatusDocument): string {
  if (a.state === 'valid' && a.ready) return 's-ok';
  if (a.state === 'refreshing' || a.state === 'starting' || a.state === 'degraded') return 's-busy';
  return 's-bad';
}

export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );
}

const STYLE = `
:root{color-scheme:light;--ok:#1a7f37;--bad:#cf222e;--busy:#9a6700;--muted:#6e7781;--line:#d0d7de}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f8fa;color:#1f2328}
header{padding:16px 24px 8px}
h1{margin:0;font-size:20px}
.summary{margin:4px 0 0;font-weight:600;color:var(--ok)}
.summary.bad{color:var(--bad)}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:16px;padding:8px 24px 24px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 16px}
.card.loop{border:2px solid var(--bad)}
h2{margin:0 0 8px;font-size:17px;display:flex;gap:8px;align-items:center}
h3{margin:12px 0 4px;font-size:13px;font-weight:600}
.state{font-size:12px;padding:1px 8px;border-radius:10px;color:#fff;text-transform:uppercase;letter-spacing:.03em}
.s-ok{background:var(--ok)}.s-bad{background:var(--bad)}.s-busy{background:var(--busy)}
.dialect{font-size:12px;color:var(--muted);font-weight:400}
.reason{margin:0 0 8px;color:var(--bad)}
.warnings{margin:0 0 8px;padding-left:18px;color:var(--busy)}
.banner{margin:0 0 8px;padding:6px 10px;background:#ffebe9;border:1px solid #ff8182;border-radius:6px;color:#82071e;font-weight:600}
table{border-collapse:collapse}
.fields th{text-align:left;font-weight:400;color:var(--muted);padding:2px 14px 2px 0;vertical-align:top;white-space:nowrap}
.fields td{padding:2px 0;word-break:break-all}
.counts{margin-top:6px;font-size:13px}
.counts th,.counts td{padding:2px 12px 2px 0;text-align:left;border-bottom:1px solid #eaeef2}
.counts .n{text-align:right}
.ok{color:var(--ok)}.error{color:var(--bad)}.muted{color:var(--muted);font-size:12px}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
.spark rect{fill:#0969da}.spark.alarm rect{fill:var(--bad)}
.spark .axis{stroke:var(--line)}.spark text{font-size:10px;fill:var(--muted)}
`;

/** E1, E4: how the client authenticates, and the DPoP key (algorithm, where it came from, thumbprint). */
function clientRows(a: AccountStatusDocument): Array<[string, string]> {
  const rows: Array<[string, string]> = [];
  if (a.clientAuth !== null) rows.push(['client authentication', escapeHtml(a.clientAuth)]);
  const key: DpopKeyReport | null = a.dpop;
  if (key !== null)
    rows.push(['DPoP key', escapeHtml(`${key.alg}, ${key.key}, jkt ${key.jkt ?? '(not computed yet)'}`)]);
  return rows;
}
