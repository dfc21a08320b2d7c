/** H3: the shapes of tracing, shared by tracing.ts (what the sidecar sees) and tracing-otel.ts (the SDK side). */

/** Where spans go; from `tracing.endpoint` or the OTEL_EXPORTER_OTLP_* environment (config/tracing.ts). */
export interface TracingOptions {
  /** The full OTLP/HTTP traces URL (`.../v1/traces`); undefined: the exporter reads it from the environment. */
  tracesUrl: string | undefined;
}

/** One upstream attempt of a proxied request (a CLIENT span): its answer's status, or why none came. Ends once: later calls do nothing. */
export interface UpstreamLeg {
  answered(statusCode: number): void;
  failed(code: string | undefined): void;
  /** The attempt was given up before its answer (`client_gone`: the client left first); an error. */
  abandoned(why: 'client_gone' | 'sidecar_error'): void;
}

/** One proxied request (a SERVER span), from its arrival to its end, however it ends. */
export interface ProxySpan {
  /**
   * Starts an upstream attempt (a CLIENT child span) and writes its `traceparent` (and the
   * client's `tracestate`) into `headers`, replacing the client's own.
   */
  upstream(headers: Record<string, string | string[]>, target: URL): UpstreamLeg;
  /** Ends the span with the status the client got (499: it left first) and the account, once routed. */
  end(statusCode: number, account: string | undefined): void;
}

/** One token request that was sent, as its span records it: no token, secret, assertion or client id. */
export interface TokenRequestRecord {
  account: string;
  kind: 'login' | 'refresh';
  trigger: string;
  outcome: string;
  /** The token endpoint's answer status; undefined when no answer came. */
  httpStatus: number | undefined;
  durationMs: number;
}

/** A running tracer: spans for proxied requests and token requests, exported in batches. */
export interface Tracing {
  /** A SERVER span for a client request; its parent is the client's `traceparent`, if valid. */
  startRequest(method: string, path: string, headers: Record<string, string | string[] | undefined>): ProxySpan;
  /** A `token_request` span that ended now and lasted `durationMs`. */
  tokenRequest(record: TokenRequestRecord): void;
  /** Exports what is still buffered and stops (at shutdown); never throws. */
  shutdown(): Promise<void>;
}
