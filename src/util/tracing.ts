/**
 * H3: what the rest of the sidecar sees of tracing. Nothing here imports OpenTelemetry: the SDK
 * (`tracing-otel.ts`) is loaded with a dynamic import() only when tracing is configured, so a
 * sidecar without tracing neither loads nor runs any of it (the data plane checks one field).
 */

import type { Tracing, TracingOptions } from './tracing-types.js';

export type { ProxySpan, TokenRequestRecord, Tracing, TracingOptions, UpstreamLeg } from './tracing-types.js';

/**
 * H3: loads the OpenTelemetry SDK (a dynamic import: only now, never at start-up without tracing)
 * and starts a tracer exporting over OTLP/HTTP protobuf. Throws what the import throws (a broken install).
 */
export async function startTracing(options: TracingOptions): Promise<Tracing> {
  const { startOtelTracing } = await import('./tracing-otel.js');
  return startOtelTracing(options);
}
