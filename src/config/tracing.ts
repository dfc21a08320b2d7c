import type { TracingOptions } from '../util/tracing.js';
import type { RawConfig } from './schema.js';
import type { ConfigProblem } from './problems.js';

const TRACES_PATH = 'v1/traces';

/**
 * H3: whether tracing is on, and where its spans go. `tracing.endpoint` is a base URL, as
 * OTEL_EXPORTER_OTLP_ENDPOINT is: `/v1/traces` is appended. Without it, the OpenTelemetry
 * environment turns tracing on and the exporter reads the URL itself, as the specification says
 * (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, else OTEL_EXPORTER_OTLP_ENDPOINT + `/v1/traces`).
 * OTEL_SDK_DISABLED=true turns it off. `tracing: {}` with neither is a problem at `tracing.endpoint`.
 */
export function resolveTracing(
  raw: RawConfig['tracing'],
  env: NodeJS.ProcessEnv,
  problems: ConfigProblem[],
): TracingOptions | undefined {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return undefined;
  if (raw?.endpoint !== undefined) return { tracesUrl: tracesUrlOf(raw.endpoint) };
  if (isSet(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) || isSet(env.OTEL_EXPORTER_OTLP_ENDPOINT))
    return { tracesUrl: undefined };
  if (raw !== undefined)
    problems.push({
      path: 'tracing.endpoint',
      message:
        'tracing has no endpoint: set tracing.endpoint or OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://collector:4318)',
    });
  return undefined;
}

/** The base URL with the traces path appended, as the official exporter appends it to OTEL_EXPORTER_OTLP_ENDPOINT. */
export function tracesUrlOf(endpoint: string): string {
  return (endpoint.endsWith('/') ? endpoint : `${endpoint}/`) + TRACES_PATH;
}

function isSet(value: string | undefined): boolean {
  return value !== undefined && value.trim() !== '';
}
