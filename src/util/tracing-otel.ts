/**
 * H3: the OpenTelemetry side of tracing, loaded only by `startTracing` (tracing.ts) with a dynamic
 * import(). Spans follow the OpenTelemetry HTTP conventions: a SERVER span per proxied request, a
 * CLIENT child per upstream attempt (a replay is a second one), a `token_request` span per token
 * request. No global provider, context manager or propagator is registered: parents are passed
 * explicitly, so nothing else in the process is traced by accident.
 */
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  defaultTextMapGetter,
  defaultTextMapSetter,
  trace,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_SERVICE_NAME,
  ATTR_URL_PATH,
} from '@opentelemetry/semantic-conventions';
import type { ProxySpan, TokenRequestRecord, Tracing, TracingOptions, UpstreamLeg } from './tracing-types.js';

const SERVICE_NAME = 'bearer-sidecar';
const ACCOUNT = 'bearer_sidecar.account';
const propagator = new W3CTraceContextPropagator();
/** How long the last export at shutdown may take. */
const SHUTDOWN_EXPORT_MS = 5_000;

/**
 * Starts a tracer provider exporting over OTLP/HTTP protobuf through a BatchSpanProcessor.
 * service.name is `bearer-sidecar` unless OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) says
 * otherwise; the sampler is the SDK's (parent-based always-on unless OTEL_TRACES_SAMPLER says otherwise).
 */
export function startOtelTracing(options: TracingOptions): Tracing {
  const resource = resourceFromAttributes({ [ATTR_SERVICE_NAME]: SERVICE_NAME }).merge(
    detectResources({ detectors: [envDetector] }),
  );
  // Without a URL the exporter reads OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT itself.
  const exporter = new OTLPTraceExporter(options.tracesUrl === undefined ? {} : { url: options.tracesUrl });
  const provider = new BasicTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(exporter)] });
  return new OtelTracing(provider.getTracer(SERVICE_NAME), () => provider.shutdown());
}

class OtelTracing implements Tracing {
  readonly #tracer: Tracer;
  readonly #shutdown: () => Promise<void>;

  constructor(tracer: Tracer, shutdown: () => Promise<void>) {
    this.#tracer = tracer;
    this.#shutdown = shutdown;
  }

  startRequest(method: string, path: string, headers: Record<string, string | string[] | undefined>): ProxySpan {
    const parent = propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
    const span = this.#tracer.startSpan(
      method,
      { kind: SpanKind.SERVER, attributes: { [ATTR_HTTP_REQUEST_METHOD]: method, [ATTR_URL_PATH]: path } },
      parent,
    );
    return new OtelProxySpan(this.#tracer, span, method);
  }

  tokenRequest(record: TokenRequestRecord): void {
    const end = Date.now();
    const span = this.#tracer.startSpan(
      'token_request',
      {
        kind: SpanKind.CLIENT,
        startTime: end - record.durationMs,
        attributes: {
          'bearer_sidecar.kind': record.kind,
          [ACCOUNT]: record.account,
          'bearer_sidecar.trigger': record.trigger,
          'bearer_sidecar.outcome': record.outcome,
        },
      },
      ROOT_CONTEXT,
    );
    if (record.httpStatus !== undefined) span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, record.httpStatus);
    if (record.outcome !== 'success') span.setStatus({ code: SpanStatusCode.ERROR });
    span.end(end);
  }

  async shutdown(): Promise<void> {
    // A collector that does not answer must not hold up or fail the shutdown: the spans are lost then.
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_EXPORT_MS).unref()));
    await Promise.race([this.#shutdown().catch(() => undefined), bound]);
    clearTimeout(timer);
  }
}

class OtelProxySpan implements ProxySpan {
  readonly #tracer: Tracer;
  readonly #span: Span;
  readonly #method: string;

  constructor(tracer: Tracer, span: Span, method: string) {
    this.#tracer = tracer;
    this.#span = span;
    this.#method = method;
  }

  upstream(headers: Record<string, string | string[]>, target: URL): UpstreamLeg {
    const port = target.port === '' ? (target.protocol === 'https:' ? 443 : 80) : Number(target.port);
    const leg = this.#tracer.startSpan(
      this.#method,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          [ATTR_HTTP_REQUEST_METHOD]: this.#method,
          [ATTR_SERVER_ADDRESS]: target.hostname,
          [ATTR_SERVER_PORT]: port,
        },
      },
      trace.setSpan(ROOT_CONTEXT, this.#span),
    );
    // Ours replace the client's: the upstream sees one traceparent, naming this attempt.
    delete headers.traceparent;
    delete headers.tracestate;
    propagator.inject(trace.setSpan(ROOT_CONTEXT, leg), headers, defaultTextMapSetter);
    return {
      answered: (statusCode) => {
        if (!leg.isRecording()) return;
        leg.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, statusCode);
        if (statusCode >= 400) leg.setStatus({ code: SpanStatusCode.ERROR });
        leg.end();
      },
      failed: (code) => endWithError(leg, code ?? 'unknown'),
      abandoned: (why) => endWithError(leg, why),
    };
  }

  end(statusCode: number, account: string | undefined): void {
    this.#span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, statusCode);
    if (account !== undefined) this.#span.setAttribute(ACCOUNT, account);
    // HTTP semconv: a SERVER span is an error for 5xx only (a 4xx is the client's).
    if (statusCode >= 500) this.#span.setStatus({ code: SpanStatusCode.ERROR });
    this.#span.end();
  }
}

/** Ends an upstream attempt's span as an error of type `type` (once: an ended span is left as it is). */
function endWithError(leg: Span, type: string): void {
  if (!leg.isRecording()) return;
  leg.setAttribute(ATTR_ERROR_TYPE, type);
  leg.setStatus({ code: SpanStatusCode.ERROR });
  leg.end();
}
