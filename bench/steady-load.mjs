// An open-loop, fixed-rate load generator for the "latency added at 1000 rps" row.
//
// Why not autocannon's `overallRate`: it lets each connection send its whole per-second quota
// back to back at the start of every second, so 1000 rps arrives as one burst of 1000 a second
// and p99 measures the burst's queue, not the proxy. Here requests are spread evenly (one every
// 1/rate s, sent in small catch-up batches when a timer fires late) and each latency is counted
// from the moment the request was due, not when it left: a stall is never hidden by the
// generator waiting for it (no coordinated omission).
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';

/**
 * Sends GET `url` at `rate` requests per second for `durationSeconds` over up to `connections`
 * keep-alive connections. Resolves with { sent, errors, non2xx, p50, p99, max } (milliseconds).
 */
export async function steadyLoad({ url, rate, durationSeconds, connections = 50 }) {
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const interval = 1000 / rate;
  const total = Math.round(rate * durationSeconds);
  const latencies = [];
  let errors = 0;
  let non2xx = 0;
  let sent = 0;
  let settled = 0;
  const start = performance.now();
  await new Promise((resolve) => {
    const sendOne = (dueAt) => {
      const req = request(url, { agent }, (res) => {
        if (res.statusCode < 200 || res.statusCode > 299) non2xx += 1;
        res.resume();
        res.on('end', () => {
          latencies.push(performance.now() - dueAt);
          if (++settled === total) resolve();
        });
      });
      req.on('error', () => {
        errors += 1;
        if (++settled === total) resolve();
      });
      req.end();
    };
    const tick = () => {
      const now = performance.now();
      // Everything due by now goes now, each stamped with the time it was due.
      while (sent < total && start + sent * interval <= now) sendOne(start + sent++ * interval);
      if (sent < total) setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
    };
    tick();
  });
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return {
    sent,
    errors,
    non2xx,
    p50: at(0.5),
    p99: at(0.99),
    max: latencies.at(-1) ?? NaN,
    rps: sent / ((performance.now() - start) / 1000),
  };
}
