// The Grafana dashboard (helm/bearer-sidecar/files/grafana-dashboard.json), generated from the
// panel list below so it stays reviewable. Also checks every query: it may use only the metric
// names of src/admin/metrics.ts (those of docs/contract.md §7) and prom-client's defaults, every
// metric of the spec's first table appears in the dashboard or the alerts, and each query is
// written, with Grafana's variables filled in, as a recording rule to RULES_FILE for
// `promtool check rules` to parse.
//   node helm/ci/dashboard.mjs --check RULES_FILE | --write
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { stringify } from 'yaml';
import { chartDir, failIfProblems, repoRoot, writeOrCheck } from './lib.mjs';

const { METRIC_NAMES } = await import(new URL('../../dist/admin/metrics.js', import.meta.url).href);

const sel = 'job=~"$job", instance=~"$instance", account=~"$account"';
const proc = 'job=~"$job", instance=~"$instance"';
const rate = (metric, extra = '', by = 'account') =>
  `sum by (${by}) (rate(${metric}{${sel}${extra ? `, ${extra}` : ''}}[$__rate_interval]))`;
const quantile = (q, metric, by) =>
  `histogram_quantile(${q}, sum by (${by}, le) (rate(${metric}_bucket{${sel}}[$__rate_interval])))`;

/** Rows of panels: [title, type, width, unit, targets[[expr, legend]], extra options]. */
const rows = [
  {
    title: 'Tokens',
    panels: [
      {
        title: 'Account state',
        type: 'stat',
        w: 6,
        targets: [
          [
            `max by (account) (${METRIC_NAMES.accountState}{${sel}, state=~"degraded|refreshing"})` +
              ` + 2 * max by (account) (${METRIC_NAMES.accountState}{${sel}, state=~"starting|expired|rejected|stopped"})`,
            '{{account}}',
          ],
        ],
        description:
          'From bearer_sidecar_account_state: valid; degraded (a valid token, but fresh tokens rejected, renewals failing or the store unreachable: /readyz warnings say which) or refreshing; not ready (starting, expired, rejected, stopped).',
        thresholds: [
          ['green', null],
          ['orange', 1],
          ['red', 2],
        ],
        mappings: [
          {
            type: 'value',
            options: {
              0: { text: 'valid', color: 'green' },
              1: { text: 'degraded / refreshing', color: 'orange' },
              2: { text: 'not ready', color: 'red' },
            },
          },
        ],
      },
      {
        title: 'Time to expiry',
        type: 'stat',
        w: 6,
        unit: 's',
        targets: [[`min by (account) (${METRIC_NAMES.tokenExpiry}{${sel}}) - time()`, '{{account}}']],
        description:
          'Seconds until the current token expires (local clock). A healthy account refreshes at 80% of the lifetime.',
        thresholds: [
          ['red', null],
          ['orange', 10],
          ['green', 30],
        ],
      },
      {
        title: 'Token lifetime',
        type: 'timeseries',
        w: 6,
        unit: 's',
        targets: [[`max by (account) (${METRIC_NAMES.tokenLifetime}{${sel}})`, '{{account}}']],
        description: 'Lifetime of the current token, as computed from the token response (on the local clock).',
      },
      {
        title: 'Refresh-loop ratio',
        type: 'timeseries',
        w: 6,
        targets: [
          [
            `sum by (job, instance, account) (rate(${METRIC_NAMES.tokenRequests}{${sel}, outcome="success"}[5m]))` +
              ` * on (job, instance, account) (0.8 * max by (job, instance, account) (${METRIC_NAMES.tokenLifetime}{${sel}}))`,
            '{{account}} {{instance}}',
          ],
        ],
        description:
          'Tokens obtained per second, divided by the healthy rate 1 / (0.8 x lifetime). About 1 is healthy; BearerSidecarRefreshLoop fires above 3.',
        thresholds: [
          ['green', null],
          ['orange', 2],
          ['red', 3],
        ],
        thresholdsStyle: 'line',
      },
    ],
  },
  {
    title: 'Token requests',
    panels: [
      {
        title: 'Token requests by kind and outcome',
        type: 'timeseries',
        w: 12,
        unit: 'reqps',
        targets: [[rate(METRIC_NAMES.tokenRequests, '', 'account, kind, outcome'), '{{account}} {{kind}} {{outcome}}']],
        description: 'Every HTTP request sent to a token endpoint, counted once (bearer_sidecar_token_requests_total).',
      },
      {
        title: 'Token requests by trigger',
        type: 'timeseries',
        w: 12,
        unit: 'reqps',
        targets: [[rate(METRIC_NAMES.tokenRequests, '', 'account, trigger'), '{{account}} {{trigger}}']],
        description:
          'startup, schedule, upstream_rejection (a 401 from the upstream), admin, retry. A loop shows as upstream_rejection.',
      },
      {
        title: 'Suppressed token requests',
        type: 'timeseries',
        w: 8,
        unit: 'reqps',
        targets: [[rate(METRIC_NAMES.tokenRequestsSuppressed, '', 'account, reason'), '{{account}} {{reason}}']],
        description:
          'Held back by the loop guard (min_interval) or a backoff. Steady for very short lifetimes; rising otherwise means a loop.',
      },
      {
        title: 'Token request duration (p95)',
        type: 'timeseries',
        w: 8,
        unit: 's',
        targets: [[quantile(0.95, METRIC_NAMES.tokenRequestDuration, 'account, kind'), '{{account}} {{kind}}']],
      },
      {
        title: 'Lifetime anomalies',
        type: 'timeseries',
        w: 8,
        unit: 'short',
        targets: [
          [
            `sum by (account, reason) (increase(${METRIC_NAMES.lifetimeAnomalies}{${sel}}[$__rate_interval]))`,
            '{{account}} {{reason}}',
          ],
        ],
        description:
          'Token lifetimes that were missing, invalid, non-positive, too short (below minInterval) or too long (cut to maxLifetime).',
      },
    ],
  },
  {
    title: 'Upstream',
    panels: [
      {
        title: 'Upstream rejections',
        type: 'timeseries',
        w: 8,
        unit: 'reqps',
        targets: [[rate(METRIC_NAMES.upstreamRejections, '', 'account, code'), '{{account}} {{code}}']],
        description: 'Upstream answers with a status in refresh.retryOn (the token was not accepted).',
      },
      {
        title: 'Replays after a rejection',
        type: 'timeseries',
        w: 8,
        unit: 'reqps',
        targets: [[rate(METRIC_NAMES.replays, '', 'account, outcome'), '{{account}} {{outcome}}']],
        description:
          'Requests replayed once with a new token after an upstream rejection: success, rejected_again, no_token, skipped.',
      },
      {
        title: 'Clock skew (token server minus local)',
        type: 'timeseries',
        w: 8,
        unit: 's',
        targets: [[`max by (account) (${METRIC_NAMES.clockSkew}{${sel}})`, '{{account}}']],
        description:
          "The token server's Date header minus local time. Expiry uses the local clock, so skew does not shorten tokens.",
      },
    ],
  },
  {
    title: 'Proxy',
    panels: [
      {
        title: 'Requests by status code',
        type: 'timeseries',
        w: 8,
        unit: 'reqps',
        targets: [[rate(METRIC_NAMES.proxyRequests, '', 'account, code'), '{{account}} {{code}}']],
        description:
          'Data-plane answers. account="" are requests refused before an account was chosen (403, 404, 400).',
      },
      {
        title: 'Error ratio (5xx)',
        type: 'timeseries',
        w: 8,
        unit: 'percentunit',
        targets: [
          [`${rate(METRIC_NAMES.proxyRequests, 'code=~"5.."')} / ${rate(METRIC_NAMES.proxyRequests)}`, '{{account}}'],
        ],
        description:
          '502 upstream_unreachable, 503 token_unavailable, 504 upstream_timeout and the upstream’s own 5xx.',
      },
      {
        title: 'Latency',
        type: 'timeseries',
        w: 8,
        unit: 's',
        targets: [
          [quantile(0.5, METRIC_NAMES.proxyRequestDuration, 'account'), 'p50 {{account}}'],
          [quantile(0.95, METRIC_NAMES.proxyRequestDuration, 'account'), 'p95 {{account}}'],
          [quantile(0.99, METRIC_NAMES.proxyRequestDuration, 'account'), 'p99 {{account}}'],
        ],
      },
    ],
  },
  {
    title: 'Token store (file, redis)',
    panels: [
      {
        title: 'Store up',
        type: 'timeseries',
        w: 12,
        targets: [[`min by (account) (${METRIC_NAMES.storeUp}{${sel}})`, '{{account}}']],
        description:
          '1 while the token store answered the last operation. While Redis is down replicas keep serving their valid token.',
        thresholds: [
          ['red', null],
          ['green', 1],
        ],
      },
      {
        title: 'Store errors',
        type: 'timeseries',
        w: 12,
        unit: 'ops',
        targets: [[rate(METRIC_NAMES.storeErrors, '', 'account, operation'), '{{account}} {{operation}}']],
        description: 'Failed store operations (load, save, lock) by account.',
      },
    ],
  },
  {
    title: 'Process',
    panels: [
      {
        title: 'Resident memory',
        type: 'timeseries',
        w: 8,
        unit: 'bytes',
        targets: [[`process_resident_memory_bytes{${proc}}`, '{{instance}}']],
      },
      {
        title: 'CPU',
        type: 'timeseries',
        w: 8,
        unit: 'percentunit',
        targets: [[`rate(process_cpu_seconds_total{${proc}}[$__rate_interval])`, '{{instance}}']],
      },
      {
        title: 'Event loop lag (p99)',
        type: 'timeseries',
        w: 8,
        unit: 's',
        targets: [[`nodejs_eventloop_lag_p99_seconds{${proc}}`, '{{instance}}']],
      },
    ],
  },
];

const PANEL_HEIGHT = 8;

function buildDashboard() {
  const panels = [];
  let id = 1;
  let y = 0;
  for (const row of rows) {
    panels.push({
      id: id++,
      type: 'row',
      title: row.title,
      collapsed: false,
      gridPos: { x: 0, y, w: 24, h: 1 },
      panels: [],
    });
    y += 1;
    let x = 0;
    for (const panel of row.panels) {
      const h = PANEL_HEIGHT;
      if (x + panel.w > 24) {
        x = 0;
        y += h;
      }
      const steps = (panel.thresholds ?? [['green', null]]).map(([color, value]) => ({ color, value }));
      panels.push({
        id: id++,
        type: panel.type,
        title: panel.title,
        ...(panel.description ? { description: panel.description } : {}),
        datasource: { type: 'prometheus', uid: '${datasource}' },
        gridPos: { x, y, w: panel.w, h },
        fieldConfig: {
          defaults: {
            unit: panel.unit ?? 'short',
            thresholds: { mode: 'absolute', steps },
            ...(panel.mappings ? { mappings: panel.mappings } : {}),
            ...(panel.type === 'timeseries'
              ? {
                  custom: {
                    drawStyle: 'line',
                    lineWidth: 1,
                    fillOpacity: 10,
                    showPoints: 'never',
                    thresholdsStyle: { mode: panel.thresholdsStyle ?? 'off' },
                  },
                }
              : {}),
          },
          overrides: [],
        },
        options:
          panel.type === 'stat'
            ? {
                reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
                colorMode: 'background',
                graphMode: 'none',
                textMode: 'value_and_name',
              }
            : {
                legend: { displayMode: 'list', placement: 'bottom', showLegend: true },
                tooltip: { mode: 'multi', sort: 'desc' },
              },
        targets: panel.targets.map(([expr, legendFormat], index) => ({
          datasource: { type: 'prometheus', uid: '${datasource}' },
          expr,
          legendFormat,
          refId: String.fromCharCode(65 + index),
        })),
      });
      x += panel.w;
    }
    y += PANEL_HEIGHT;
  }
  const variable = (name, label, query) => ({
    name,
    label,
    type: 'query',
    datasource: { type: 'prometheus', uid: '${datasource}' },
    query: { query, refId: `${name}-variable` },
    definition: query,
    refresh: 2,
    includeAll: true,
    allValue: '.*',
    multi: true,
    current: { selected: true, text: ['All'], value: ['$__all'] },
    sort: 1,
  });
  return {
    uid: 'bearer-sidecar',
    title: 'bearer-sidecar',
    description:
      'Token requests, validity and expiry, upstream rejections, replays, proxy traffic and clock skew of bearer-sidecar.',
    tags: ['bearer-sidecar'],
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    time: { from: 'now-6h', to: 'now' },
    refresh: '30s',
    timezone: 'browser',
    annotations: { list: [] },
    links: [],
    templating: {
      list: [
        { name: 'datasource', label: 'Data source', type: 'datasource', query: 'prometheus', current: {}, hide: 0 },
        variable('job', 'Job', `label_values(${METRIC_NAMES.tokenValid}, job)`),
        variable('instance', 'Instance', `label_values(${METRIC_NAMES.tokenValid}{job=~"$job"}, instance)`),
        variable(
          'account',
          'Account',
          `label_values(${METRIC_NAMES.tokenValid}{job=~"$job", instance=~"$instance"}, account)`,
        ),
      ],
    },
    panels,
  };
}

const dashboard = buildDashboard();
const file = path.join(chartDir, 'files/grafana-dashboard.json');
writeOrCheck(file, `${JSON.stringify(dashboard, null, 2)}\n`, 'bash .ci/k8s-checks.sh --update');
if (process.argv.includes('--write')) process.exit(0);

// Checks of the queries.
const exprs = dashboard.panels.flatMap((panel) =>
  (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr })),
);
const problems = [];
// docs/contract.md §7, first table: these must be on the dashboard or in the alerts. Metrics added
// later are allowed in queries (they are in METRIC_NAMES) and only noted until a panel shows them.
const contract = new Set([
  'bearer_sidecar_token_requests_total',
  'bearer_sidecar_token_request_duration_seconds',
  'bearer_sidecar_token_expiry_timestamp_seconds',
  'bearer_sidecar_token_lifetime_seconds',
  'bearer_sidecar_token_valid',
  'bearer_sidecar_token_requests_suppressed_total',
  'bearer_sidecar_proxy_requests_total',
  'bearer_sidecar_proxy_request_duration_seconds',
  'bearer_sidecar_upstream_rejections_total',
  'bearer_sidecar_replays_total',
  'bearer_sidecar_clock_skew_seconds',
  'bearer_sidecar_token_lifetime_anomalies_total',
]);
const known = new Set(Object.values(METRIC_NAMES));
for (const name of contract)
  if (!known.has(name)) problems.push(`${name} (docs/contract.md §7) is not in src/admin/metrics.ts METRIC_NAMES`);
const used = new Set();
for (const { panel, expr } of exprs) {
  for (const [name] of expr.matchAll(/\b(?:bearer_sidecar|process|nodejs)_[a-z0-9_]+\b/g)) {
    const base = name.replace(/_(bucket|sum|count)$/, '');
    used.add(base);
    if (name.startsWith('bearer_sidecar_') && !known.has(base))
      problems.push(`${panel}: ${name} is not a metric of src/admin/metrics.ts`);
  }
}
const alerts = readFileSync(path.join(repoRoot, 'dashboards/prometheus-rules.yaml'), 'utf8');
for (const name of contract)
  if (!used.has(name) && !alerts.includes(name))
    problems.push(`${name} appears in neither the dashboard nor the alerts`);
const ids = dashboard.panels.map((panel) => panel.id);
if (new Set(ids).size !== ids.length) problems.push('panel ids repeat');
const cells = new Map();
for (const {
  title,
  gridPos: { x, y, w, h },
} of dashboard.panels) {
  if (x + w > 24) problems.push(`${title}: wider than the 24-column grid`);
  for (let col = x; col < x + w; col += 1) {
    for (let line = y; line < y + h; line += 1) {
      const other = cells.get(`${col},${line}`);
      if (other && other !== title) problems.push(`${title} overlaps ${other}`);
      cells.set(`${col},${line}`, title);
    }
  }
}
failIfProblems('Grafana dashboard', problems);
const notShown = [...known].filter((name) => !contract.has(name) && !used.has(name) && !alerts.includes(name));
if (notShown.length > 0) console.log(`    note: newer metrics not on the dashboard yet: ${notShown.join(', ')}`);

const rulesFile =
  process.argv.filter((arg) => !arg.startsWith('--')).at(-1) ?? path.join(repoRoot, 'dashboard-queries.rules.yaml');
const substituted = (expr) => expr.replaceAll('$__rate_interval', '5m').replace(/\$(job|instance|account)\b/g, '.*');
const recording = exprs.map(({ expr }, index) => ({ record: `dashboard:query_${index}`, expr: substituted(expr) }));
writeFileSync(rulesFile, stringify({ groups: [{ name: 'dashboard-queries', rules: recording }] }));
console.log(
  `    ${dashboard.panels.filter((p) => p.type !== 'row').length} panels, ${exprs.length} queries, ${contract.size} contract metrics covered`,
);
