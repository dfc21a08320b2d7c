import { describe, expect, it } from 'vitest';
import { accountStatusJson, type AccountView } from '../../src/admin/status.js';
import { sparkline, statusPageHtml } from '../../src/admin/status-page.js';
import { TokenRequestHistory } from '../../src/tokens/history.js';
import type { TokenStatus } from '../../src/tokens/types.js';
import type { TokenFlow } from '../../src/flows/types.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const MINUTE = 60_000;

function status(overrides: Partial<TokenStatus> = {}): TokenStatus {
  return {
    state: 'valid',
    ready: true,
    reason: undefined,
    warnings: [],
    fingerprint: 'abcd1234',
    generation: 3,
    obtainedAt: T0,
    expiresAt: T0 + 300_000,
    lifetimeMs: 300_000,
    nextRequestAt: T0 + 240_000,
    nextTrigger: 'schedule',
    lastRequestAt: T0,
    lastError: undefined,
    consecutiveFailures: 0,
    hasRefreshToken: true,
    waiting: 0,
    storeProblem: undefined,
    revision: undefined,
    counts: { login: { success: 1, rejected: 0, error: 0 }, refresh: { success: 2, rejected: 0, error: 0 } },
    ...overrides,
  };
}

function view(history: TokenRequestHistory, overrides: Partial<TokenStatus> = {}): AccountView {
  const flow = {
    dialect: 'session',
    clientAuth: null,
    endpoint: () => 'https://user:pw@auth.example/login?key=secret',
  } as unknown as TokenFlow;
  return {
    name: 'fleet',
    flow,
    upstream: new URL('https://api.example/v1'),
    status: () => status(overrides),
    history,
    refreshAt: 0.8,
    proxies: { upstream: undefined, tokenEndpoint: undefined },
  };
}

describe('token request history (issue 8: /status counts for the last hour)', () => {
  it('issue 8: the ring is bounded: the oldest events give way, memory never grows', () => {
    const history = new TokenRequestHistory(10);
    for (let i = 0; i < 25; i++)
      history.record({ at: T0 + i * 1000, kind: 'refresh', outcome: 'success', trigger: 'schedule' });
    const kept = history.since(0);
    expect(kept).toHaveLength(10);
    expect(kept[0]?.at).toBe(T0 + 15_000);
    expect(kept.at(-1)?.at).toBe(T0 + 24_000);
  });

  it('issue 8: counts by kind, outcome and trigger within the window, and requests per minute', () => {
    const history = new TokenRequestHistory();
    history.record({ at: T0 - 2 * 3_600_000, kind: 'login', outcome: 'success', trigger: 'startup' });
    history.record({ at: T0 + MINUTE, kind: 'login', outcome: 'rejected', trigger: 'retry' });
    history.record({ at: T0 + 2 * MINUTE, kind: 'login', outcome: 'rejected', trigger: 'retry' });
    history.record({ at: T0 + 2 * MINUTE + 5, kind: 'refresh', outcome: 'error', trigger: 'upstream_rejection' });
    const now = T0 + 3 * MINUTE;
    expect(history.countsSince(now - 3_600_000)).toEqual([
      { kind: 'login', outcome: 'rejected', trigger: 'retry', count: 2 },
      { kind: 'refresh', outcome: 'error', trigger: 'upstream_rejection', count: 1 },
    ]);
    const perMinute = history.perMinute(now, 60);
    expect(perMinute).toHaveLength(60);
    expect(perMinute.slice(-3)).toEqual([0, 1, 2]);
    expect(perMinute.reduce((a, b) => a + b, 0)).toBe(3);
  });
});

describe('§6 /status document and page (issue 8)', () => {
  describe('F6 no secret in any output', () => {
    it('F6: endpoints are shown without userinfo or query; a loop is judged against the lifetime', () => {
      const history = new TokenRequestHistory();
      for (let i = 0; i < 100; i++)
        history.record({ at: T0 - i * 5_000, kind: 'refresh', outcome: 'success', trigger: 'upstream_rejection' });
      const doc = accountStatusJson(view(history), T0);
      expect(doc.tokenEndpoint).toBe('https://auth.example/login');
      expect(doc.refreshLoop).toEqual({ recent: 100, expected: 2.5, suspected: true });
      const calm = accountStatusJson(view(new TokenRequestHistory()), T0);
      expect(calm.refreshLoop.suspected).toBe(false);
    });

    it('F6: account fields are HTML-escaped; the page has a meta refresh unless refresh=0, and no external reference', () => {
      const history = new TokenRequestHistory();
      const doc = accountStatusJson(
        view(history, {
          lastError: { at: T0, message: '<script>alert(1)</script>' },
          state: 'rejected',
          ready: false,
          reason: 'login rejected: <b>',
        }),
        T0,
      );
      const html = statusPageHtml({ now: T0, store: 'memory', accounts: { fleet: doc } });
      expect(html).not.toContain('<script>alert(1)');
      expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
      expect(html).toContain('<meta http-equiv="refresh" content="5">');
      expect(statusPageHtml({ now: T0, store: 'memory', accounts: { fleet: doc }, refreshSeconds: 0 })).not.toContain(
        'http-equiv="refresh"',
      );
      expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
    });
  });

  it('issue 8: the sparkline has one bar per busy minute, scaled so one a minute stays low and a loop towers', () => {
    const calm = sparkline([1, 0, 1, 0], false);
    const loop = sparkline([1, 0, 60, 60], true);
    const heights = (svg: string) => [...svg.matchAll(/height="(\d+)"><title>/g)].map((m) => Number(m[1]));
    expect(heights(calm)).toHaveLength(2);
    expect(Math.max(...heights(calm))).toBeLessThan(10);
    expect(Math.max(...heights(loop))).toBe(44);
    expect(loop).toContain('class="spark alarm"');
  });

  it('issue 8: each bar names the minute it counts: the last one is the last 60 seconds, not "1 min ago"', () => {
    const titles = [...sparkline([3, 0, 1, 2], false).matchAll(/<title>([^<]*)<\/title>/g)].map((m) => m[1]);
    expect(titles).toEqual(['3-4 min ago: 3', '1-2 min ago: 1', 'in the last minute: 2']);
  });
});
