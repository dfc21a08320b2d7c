import { Counter, type Metric, type Registry } from 'prom-client';

/**
 * The data plane's two per-request metrics, `bearer_sidecar_proxy_requests_total{account, code}` and
 * `bearer_sidecar_proxy_request_duration_seconds{account}` (docs/contract.md §7), counted in plain
 * numbers on the hot path and handed to prom-client when it is scraped.
 *
 * Why not prom-client's own `inc`/`observe`: both build, check and hash the label set on every
 * call, even through a child from `labels()` (prometheus/client_js#38, open since 2016): 6-7 µs of
 * the ~190 µs of CPU a small GET costs on Node 24, measured in a CPU profile of the bench
 * (docs/performance.md). Here a request costs three Map operations, a bucket search and three additions.
 * The exposition is the same text prom-client writes for a Counter and a Histogram (a property
 * test compares the two).
 */
export class RequestTally {
  readonly #requests: Counter<'account' | 'code'>;
  readonly #duration: TalliedHistogram;
  readonly #accounts = new Map<string, AccountTally>();

  /**
   * Registers both metrics on `registry`: the requests counter (labels account, code; the counts
   * gathered since the last scrape are added to it when it is collected) and the duration
   * histogram (label account; `buckets` are upper bounds in seconds, ascending).
   */
  constructor(registry: Registry, requests: MetricShape, histogram: MetricShape & { buckets: readonly number[] }) {
    this.#requests = new Counter({
      ...requests,
      labelNames: ['account', 'code'],
      registers: [registry],
      collect: () => this.#flushRequestCounts(),
    });
    this.#duration = new TalliedHistogram(histogram, this.#accounts);
    // prom-client's Registry calls get() and reset() only; the cast is for its union type of its own classes.
    registry.registerMetric(this.#duration as unknown as Metric);
  }

  /**
   * The tally of one account (the same object for the same name, so a reloaded account keeps its
   * counts). `observe(code, seconds)` counts one answered request.
   */
  account(account: string): AccountTally {
    let tally = this.#accounts.get(account);
    if (tally === undefined) {
      tally = new AccountTally(account, this.#duration.upperBounds);
      this.#accounts.set(account, tally);
    }
    return tally;
  }

  /** Adds the status-code counts gathered since the last scrape to the counter (its `collect` hook). */
  #flushRequestCounts(): void {
    for (const tally of this.#accounts.values()) {
      for (const [code, count] of tally.unflushedCodes) this.#requests.inc({ account: tally.account, code }, count);
      tally.unflushedCodes.clear();
    }
  }
}

/** A metric's name and help text. */
export interface MetricShape {
  name: string;
  help: string;
}

/** One account's requests: status-code counts not yet given to prom-client, and its histogram. */
export class AccountTally {
  readonly account: string;
  /** Status code (as the label's text) -> requests since the last scrape. */
  readonly unflushedCodes = new Map<string, number>();
  /** Requests per bucket (not cumulative); the last slot is past the highest bound (+Inf). */
  readonly bucketCounts: Float64Array;
  sum = 0;
  count = 0;
  readonly #upperBounds: readonly number[];
  /** The label text of each status code seen, so a request does not format a number. */
  readonly #codeText = new Map<number, string>();

  constructor(account: string, upperBounds: readonly number[]) {
    this.account = account;
    this.#upperBounds = upperBounds;
    this.bucketCounts = new Float64Array(upperBounds.length + 1);
  }

  /** Counts one answered request: its status `code` and its duration in seconds. */
  observe(code: number, durationSeconds: number): void {
    let text = this.#codeText.get(code);
    if (text === undefined) {
      text = String(code);
      this.#codeText.set(code, text);
    }
    this.unflushedCodes.set(text, (this.unflushedCodes.get(text) ?? 0) + 1);
    const bounds = this.#upperBounds;
    let bucket = 0;
    while (bucket < bounds.length && durationSeconds > bounds[bucket]!) bucket++;
    this.bucketCounts[bucket]! += 1;
    this.sum += durationSeconds;
    this.count += 1;
  }
}

/** What prom-client's Registry reads from a metric's get() (its own types name only its own classes). */
interface HistogramSeries {
  name: string;
  help: string;
  type: 'histogram';
  aggregator: 'sum';
  values: { metricName: string; labels: Record<string, string | number>; value: number }[];
}

/** The duration histogram as prom-client's Registry reads a metric: name, help, type and get(). */
class TalliedHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram' as const;
  readonly aggregator = 'sum' as const;
  readonly upperBounds: readonly number[];
  readonly #accounts: ReadonlyMap<string, AccountTally>;

  constructor(shape: MetricShape & { buckets: readonly number[] }, accounts: ReadonlyMap<string, AccountTally>) {
    this.name = shape.name;
    this.help = shape.help;
    this.upperBounds = shape.buckets;
    this.#accounts = accounts;
  }

  /** The series prom-client's Histogram would give: cumulative `_bucket`s per `le`, `+Inf`, `_sum`, `_count`. */
  get(): Promise<HistogramSeries> {
    const values: HistogramSeries['values'] = [];
    const bucketName = `${this.name}_bucket`;
    for (const tally of this.#accounts.values()) {
      if (tally.count === 0) continue;
      let cumulative = 0;
      this.upperBounds.forEach((le, index) => {
        cumulative += tally.bucketCounts[index]!;
        values.push({ metricName: bucketName, labels: { le, account: tally.account }, value: cumulative });
      });
      values.push(
        { metricName: bucketName, labels: { le: '+Inf', account: tally.account }, value: tally.count },
        { metricName: `${this.name}_sum`, labels: { account: tally.account }, value: tally.sum },
        { metricName: `${this.name}_count`, labels: { account: tally.account }, value: tally.count },
      );
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }

  /**
   * Registry.resetMetrics(): every account's histogram back to zero, and the status-code counts not
   * yet handed to the counter dropped (prom-client resets the counter itself).
   */
  reset(): void {
    for (const tally of this.#accounts.values()) {
      tally.unflushedCodes.clear();
      tally.bucketCounts.fill(0);
      tally.sum = 0;
      tally.count = 0;
    }
  }
}
