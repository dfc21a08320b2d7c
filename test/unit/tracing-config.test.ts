import { describe, expect, it } from 'vitest';
import type { ConfigProblem } from '../../src/config/resolve.js';
import { configSchema } from '../../src/config/schema.js';
import { resolveTracing } from '../../src/config/tracing.js';

function resolve(raw: { endpoint?: string } | undefined, env: NodeJS.ProcessEnv = {}) {
  const problems: ConfigProblem[] = [];
  return { tracing: resolveTracing(raw, env, problems), problems };
}

describe('H3 tracing settings', () => {
  it('H3: tracing.endpoint is a base URL: /v1/traces is appended, with or without a trailing slash', () => {
    expect(resolve({ endpoint: 'http://collector:4318' }).tracing).toEqual({
      tracesUrl: 'http://collector:4318/v1/traces',
    });
    expect(resolve({ endpoint: 'https://otel.example/base/' }).tracing).toEqual({
      tracesUrl: 'https://otel.example/base/v1/traces',
    });
  });

  it('H3: tracing.endpoint wins over the environment; without it OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT turns tracing on and the exporter reads the URL', () => {
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://env:4318' };
    expect(resolve({ endpoint: 'http://config:4318' }, env).tracing?.tracesUrl).toBe('http://config:4318/v1/traces');
    expect(resolve(undefined, env).tracing).toEqual({ tracesUrl: undefined });
    expect(resolve(undefined, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://env:4318/x' }).tracing).toEqual({
      tracesUrl: undefined,
    });
  });

  it('H3: tracing is off by default, with an empty OTEL_EXPORTER_OTLP_ENDPOINT, and with OTEL_SDK_DISABLED=true', () => {
    expect(resolve(undefined).tracing).toBeUndefined();
    expect(resolve(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: ' ' }).tracing).toBeUndefined();
    const disabled = { OTEL_SDK_DISABLED: 'TRUE', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://env:4318' };
    expect(resolve({ endpoint: 'http://config:4318' }, disabled).tracing).toBeUndefined();
  });

  it('H3: tracing without an endpoint anywhere is a problem at tracing.endpoint; a non-URL endpoint is refused by the schema', () => {
    const { tracing, problems } = resolve({});
    expect(tracing).toBeUndefined();
    expect(problems).toEqual([
      { path: 'tracing.endpoint', message: expect.stringContaining('OTEL_EXPORTER_OTLP_ENDPOINT') },
    ]);
    const parsed = configSchema.safeParse({ accounts: {}, tracing: { endpoint: 'collector:4318' } });
    expect(parsed.success).toBe(false);
  });
});
