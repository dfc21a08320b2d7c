import { describe, expect, it } from 'vitest';
import { TokenRequestReport } from '../../src/tokens/request-report.js';
import type { TokenEvents } from '../../src/tokens/types.js';
import { captureLogger } from '../helpers/capture-logger.js';

const SECOND = 1000;
const NOW = Date.parse('2026-01-01T00:00:00Z');

describe('the token request report', () => {
  function report() {
    const recorded = { requests: [] as unknown[], anomalies: [] as string[], skews: [] as number[] };
    const events: TokenEvents = {
      tokenRequest: (kind, outcome, trigger, seconds) => recorded.requests.push({ kind, outcome, trigger, seconds }),
      suppressed: () => undefined,
      lifetimeAnomaly: (anomaly) => recorded.anomalies.push(anomaly),
      clockSkew: (seconds) => recorded.skews.push(seconds),
      storeError: () => undefined,
    };
    const log = captureLogger();
    return { recorded, log, report: new TokenRequestReport(events, log.logger) };
  }
  describe('§8 edge-case decisions', () => {
    it('§8: every token request sent is counted once: the metric, the /status counts and the history', () => {
      const { recorded, report: requests } = report();
      const fields = requests.requestSent(
        { kind: 'refresh', outcome: 'error', sentAt: NOW, durationMs: 1234.4 },
        'retry',
      );
      expect(fields).toEqual({ kind: 'refresh', trigger: 'retry', outcome: 'error', durationMs: 1234 });
      expect(recorded.requests).toEqual([
        { kind: 'refresh', outcome: 'error', trigger: 'retry', seconds: expect.closeTo(1.2344, 6) },
      ]);
      expect(requests.counts().refresh.error).toBe(1);
      expect(requests.history.since(0)).toEqual([{ at: NOW, kind: 'refresh', outcome: 'error', trigger: 'retry' }]);
    });
  });

  describe('T6 loop guard', () => {
    it('T6, §8: a lifetime anomaly is counted every time and logged once per reason; the clock skew is reported in seconds', () => {
      const { recorded, log, report: requests } = report();
      for (let i = 0; i < 3; i++)
        requests.lifetimeResolved({
          lifetimeMs: 2 * SECOND,
          source: 'default',
          anomalies: ['invalid', 'too_short'],
          skewMs: 1500,
        });
      expect(recorded.anomalies).toHaveLength(6);
      expect(recorded.skews).toEqual([1.5, 1.5, 1.5]);
      expect(log.lines().map((line) => line.anomaly)).toEqual(['invalid', 'too_short']);
    });
  });
});
