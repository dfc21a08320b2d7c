import fc from 'fast-check';
import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { METRIC_NAMES, SidecarMetrics } from '../../src/admin/metrics.js';

/** The metrics of a sidecar with no token accounts, on a registry of their own (no default metrics). */
function sidecarMetrics(): SidecarMetrics {
  return new SidecarMetrics(
    new Registry(),
    { accountNames: () => [], tokenStatus: () => undefined, now: () => 0 },
    { defaultMetrics: false },
  );
}

/** What prom-client's own Counter and Histogram write for the same requests: the reference. */
async function referenceText(requests: readonly Answered[], buckets: number[]): Promise<string> {
  const registry = new Registry();
  const counter = new Counter({
    name: METRIC_NAMES.proxyRequests,
    help: 'x',
    labelNames: ['account', 'code'],
    registers: [registry],
  });
  const histogram = new Histogram({
    name: METRIC_NAMES.proxyRequestDuration,
    help: 'x',
    labelNames: ['account'],
    buckets,
    registers: [registry],
  });
  for (const { account, code, seconds } of requests) {
    counter.inc({ account, code: String(code) });
    histogram.observe({ account }, seconds);
  }
  return series(await registry.metrics());
}

/**
 * The sample lines of the two data-plane request metrics, sorted (the order of series is no part of
 * the format), without HELP/TYPE (help texts differ).
 */
function series(text: string): string {
  return text
    .split('\n')
    .filter((line) => line.startsWith('bearer_sidecar_proxy_request'))
    .sort()
    .join('\n');
}

/** The TYPE lines of the two data-plane request metrics. */
function types(text: string): string[] {
  return text.split('\n').filter((line) => /^# TYPE bearer_sidecar_proxy_request/.test(line));
}

interface Answered {
  account: string;
  code: number;
  seconds: number;
}

const PROXY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

const answered = fc.record({
  account: fc.constantFrom('', 'crm', 'billing'),
  code: fc.constantFrom(200, 204, 401, 403, 499, 502, 504),
  // Bounds themselves (a value equal to a bound is in that bucket), and anything between.
  seconds: fc.oneof(fc.constantFrom(...PROXY_BUCKETS, 0), fc.double({ min: 0, max: 60, noNaN: true })),
});

describe('§7 data-plane request metrics', () => {
  it('§7: requests by code and the duration histogram read as prom-client writes them, whatever the requests', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(answered, { maxLength: 60 }),
        fc.integer({ min: 0, max: 3 }),
        async (requests, scrapes) => {
          const metrics = sidecarMetrics();
          // Scrapes in the middle must not lose or double anything.
          const scrapeAt = new Set(Array.from({ length: scrapes }, (_, i) => Math.floor((i * requests.length) / 3)));
          for (const [index, { account, code, seconds }] of requests.entries()) {
            if (scrapeAt.has(index)) await metrics.registry.metrics();
            metrics.proxyMetrics(account).observe(code, seconds);
          }
          const text = await metrics.registry.metrics();
          expect(series(text)).toBe(await referenceText(requests, PROXY_BUCKETS));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('§7: the request counter and duration histogram keep their types, and an account built again keeps its counts', async () => {
    const metrics = sidecarMetrics();
    metrics.proxyMetrics('crm').observe(200, 0.002);
    // A reload builds the account's data plane again with proxyMetrics(name).
    metrics.proxyMetrics('crm').observe(200, 0.02);
    const text = await metrics.registry.metrics();
    expect(types(text)).toEqual([
      '# TYPE bearer_sidecar_proxy_requests_total counter',
      '# TYPE bearer_sidecar_proxy_request_duration_seconds histogram',
    ]);
    expect(text).toContain('bearer_sidecar_proxy_requests_total{account="crm",code="200"} 2');
    expect(text).toContain('bearer_sidecar_proxy_request_duration_seconds_count{account="crm"} 2');
    expect(text).toContain('bearer_sidecar_proxy_request_duration_seconds_bucket{le="0.005",account="crm"} 1');
  });

  it.each([true, false])('§7: resetting the registry zeroes both (scraped before the reset: %s)', async (scraped) => {
    const metrics = sidecarMetrics();
    metrics.proxyMetrics('crm').observe(502, 0.3);
    if (scraped) await metrics.registry.metrics();
    metrics.registry.resetMetrics();
    metrics.proxyMetrics('crm').observe(200, 0.3);
    const text = await metrics.registry.metrics();
    expect(text).not.toContain('code="502"');
    expect(text).toContain('bearer_sidecar_proxy_request_duration_seconds_count{account="crm"} 1');
  });
});
