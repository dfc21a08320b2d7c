import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { metricSum, useHarness } from '../helpers/harness.js';
import { SPAN_KIND, SPAN_STATUS, startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp-receiver.js';

const harness = useHarness();
const RECORD_IMPORTS = fileURLToPath(new URL('../helpers/record-imports.mjs', import.meta.url));

async function receiver(): Promise<OtlpReceiver> {
  const started = await startOtlpReceiver();
  harness.defer(() => started.close());
  return started;
}

/** A session account behind a recording front (every token it issues is kept), `extra` YAML appended. */
async function writeConfig(extra: string): Promise<{
  file: string;
  password: string;
  issued: string[];
  upstream: Awaited<ReturnType<typeof harness.recordingUpstream>>;
}> {
  const dir = harness.tempDir('bs-trace-');
  const { tokenServer, password } = await harness.sessionTokenServer({ lifetimeSeconds: 10 });
  const front = await harness.faultFront(tokenServer.url);
  const upstream = await harness.recordingUpstream();
  writeFileSync(join(dir, 'pw'), password);
  const file = join(dir, 'c.yaml');
  writeFileSync(
    file,
    `listen: { port: 0 }\nadmin: { port: 0 }\nrefresh: { minInterval: 1s }\naccounts:\n  a:\n    upstream: ${upstream.url}\n    default: true\n    auth: { flow: session, loginUrl: ${front.url('/auth/login')}, refreshUrl: ${front.url('/auth/refresh')}, username: u, passwordFile: ${join(dir, 'pw')} }\n${extra}`,
  );
  return { file, password, issued: front.answers, upstream };
}

/** Every token and refresh token in the recorded token responses. */
function secretsIn(answers: readonly string[]): string[] {
  return answers.flatMap((body) => {
    const parsed = JSON.parse(body) as Record<string, unknown>;
    return [parsed.token, parsed.refreshToken].filter((value): value is string => typeof value === 'string');
  });
}

function hex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

describe('H3 tracing', () => {
  it('H3: a proxied request is a SERVER span under the client traceparent, the upstream gets our span as its parent, token requests are token_request spans, no secret is exported, and shutdown flushes', async () => {
    const collector = await receiver();
    const { file, password, issued, upstream } = await writeConfig(`tracing: { endpoint: ${collector.url} }\n`);
    // Nothing is exported before shutdown (the batch waits a minute): what arrives was flushed by it.
    const { cli, data, admin } = await harness.launchCli(['--config', file], {
      env: { OTEL_BSP_SCHEDULE_DELAY: '60000' },
    });
    await cli.waitForLog((entry) => entry.msg === 'token request: login succeeded');

    const traceId = hex(16);
    const clientSpanId = hex(8);
    const answer = await fetch(`${data}/items/7?api_key=in-the-query`, {
      headers: { traceparent: `00-${traceId}-${clientSpanId}-01`, tracestate: 'vendor=opaque' },
    });
    expect(answer.status).toBe(200);
    const refresh = await fetch(`${admin}/accounts/a/refresh`, { method: 'POST' });
    expect(refresh.status).toBe(202);
    await cli.waitForLog((entry) => entry.msg === 'token request: refresh succeeded');
    expect(collector.posts).toHaveLength(0);

    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
    const spans = collector.spans();
    expect(collector.posts.every((post) => post.contentType === 'application/x-protobuf')).toBe(true);

    // The upstream saw one traceparent: same trace, a span of ours; the client's tracestate passed on once.
    const sent = upstream.requests[0]?.headers;
    const upstreamParent = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(sent?.traceparent));
    expect(upstreamParent?.[1]).toBe(traceId);
    expect(upstreamParent?.[2]).not.toBe(clientSpanId);
    expect(sent?.tracestate).toBe('vendor=opaque');

    const server = spans.find((span) => span.kind === SPAN_KIND.SERVER);
    expect(server).toMatchObject({ traceId, parentSpanId: clientSpanId, name: 'GET' });
    expect(server?.attributes).toEqual({
      'http.request.method': 'GET',
      'url.path': '/items/7',
      'http.response.status_code': 200,
      'bearer_sidecar.account': 'a',
    });
    expect(server?.resource['service.name']).toBe('bearer-sidecar');
    const upstreamLeg = spans.find((span) => span.kind === SPAN_KIND.CLIENT && span.name === 'GET');
    expect(upstreamLeg).toMatchObject({ traceId, parentSpanId: server?.spanId, spanId: upstreamParent?.[2] });
    expect(upstreamLeg?.attributes).toMatchObject({
      'server.address': '127.0.0.1',
      'server.port': upstream.port,
      'http.response.status_code': 200,
    });

    // A scheduled refresh may come too on a slow machine (10 s tokens): these two are there whatever else is.
    const tokenSpans = spans.filter((span) => span.name === 'token_request');
    expect(tokenSpans.every((span) => span.kind === SPAN_KIND.CLIENT)).toBe(true);
    expect(tokenSpans.map((span) => span.attributes)).toEqual(
      expect.arrayContaining([
        {
          'bearer_sidecar.kind': 'login',
          'bearer_sidecar.account': 'a',
          'bearer_sidecar.trigger': 'startup',
          'bearer_sidecar.outcome': 'success',
          'http.response.status_code': 200,
        },
        {
          'bearer_sidecar.kind': 'refresh',
          'bearer_sidecar.account': 'a',
          'bearer_sidecar.trigger': 'admin',
          'bearer_sidecar.outcome': 'success',
          'http.response.status_code': 200,
        },
      ]),
    );

    const secrets = [password, 'in-the-query', ...secretsIn(issued)];
    expect(secrets.length).toBeGreaterThanOrEqual(5);
    for (const { body } of collector.posts) for (const secret of secrets) expect(body.includes(secret)).toBe(false);
  });

  it('H3: a replay after a rejected token is a second upstream span under the same request span, each upstream request carrying its own', async () => {
    const collector = await receiver();
    const { file, upstream } = await writeConfig(`tracing: { endpoint: ${collector.url} }\n`);
    const { cli, data } = await harness.launchCli(['--config', file]);
    await cli.waitForLog((entry) => entry.msg === 'token request: login succeeded');
    upstream.decide = () => (upstream.requests.length === 1 ? 401 : 200);
    expect((await fetch(`${data}/orders`)).status).toBe(200);
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(0);

    const spans = collector.spans();
    const server = spans.find((span) => span.kind === SPAN_KIND.SERVER);
    const legs = spans.filter((span) => span.kind === SPAN_KIND.CLIENT && span.name === 'GET');
    expect(legs.map((leg) => leg.attributes['http.response.status_code'])).toEqual([401, 200]);
    expect(legs.every((leg) => leg.parentSpanId === server?.spanId && leg.traceId === server.traceId)).toBe(true);
    const sentParents = upstream.requests.map((request) => String(request.headers.traceparent).split('-')[2]);
    expect(sentParents).toEqual(legs.map((leg) => leg.spanId));
  });

  it('H3: a client that leaves before the upstream answers still yields an ended upstream span, an error marked client_gone, under its 499 request span', async () => {
    const collector = await receiver();
    const { file, upstream } = await writeConfig(`tracing: { endpoint: ${collector.url} }\n`);
    const { cli, data, admin } = await harness.launchCli(['--config', file]);
    await cli.waitForLog((entry) => entry.msg === 'token request: login succeeded');
    let release = () => undefined as void;
    upstream.hold = new Promise<void>((resolve) => (release = resolve));
    harness.defer(() => release());
    let arrived = () => undefined as void;
    const atUpstream = new Promise<void>((resolve) => (arrived = resolve));
    upstream.decide = () => (arrived(), 200);

    const leaving = new AbortController();
    const answer = fetch(`${data}/slow`, { signal: leaving.signal }).catch((error: unknown) => error);
    await atUpstream;
    leaving.abort();
    expect(await answer).toBeInstanceOf(Error);
    await vi.waitFor(
      async () =>
        expect(
          metricSum(
            await (await fetch(`${admin}/metrics`)).text(),
            'bearer_sidecar_proxy_requests_total',
            'code="499"',
          ),
        ).toBe(1),
      { timeout: 10_000 },
    );
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(0);

    const spans = collector.spans();
    const server = spans.find((span) => span.kind === SPAN_KIND.SERVER);
    expect(server?.attributes['http.response.status_code']).toBe(499);
    const legs = spans.filter((span) => span.kind === SPAN_KIND.CLIENT && span.name === 'GET');
    expect(legs).toHaveLength(1);
    expect(legs[0]).toMatchObject({
      traceId: server?.traceId,
      parentSpanId: server?.spanId,
      status: SPAN_STATUS.ERROR,
    });
    expect(legs[0]?.attributes['error.type']).toBe('client_gone');
    expect(legs[0]?.attributes['http.response.status_code']).toBeUndefined();
  });

  it('H3: without tracing nothing of OpenTelemetry is loaded and nothing is sent, even with OTEL_EXPORTER_OTLP_ENDPOINT when OTEL_SDK_DISABLED=true', async () => {
    const collector = await receiver();
    const { file } = await writeConfig('');
    for (const env of [{}, { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_SDK_DISABLED: 'true' }]) {
      const imports = join(harness.tempDir('bs-imports-'), 'imports.txt');
      const { cli, data } = await harness.launchCli(['--config', file], {
        env: { ...env, NODE_OPTIONS: `--import=${RECORD_IMPORTS}`, RECORD_IMPORTS_FILE: imports },
      });
      await cli.waitForLog((entry) => entry.msg === 'token request: login succeeded');
      expect((await fetch(`${data}/x`, { headers: { traceparent: `00-${hex(16)}-${hex(8)}-01` } })).status).toBe(200);
      cli.child.kill('SIGTERM');
      expect(await cli.exited).toBe(0);
      const loaded = readFileSync(imports, 'utf8');
      expect(loaded).toContain('/dist/cli.js');
      expect(loaded).not.toContain('@opentelemetry');
      expect(loaded).not.toContain('tracing-otel');
    }
    expect(collector.posts).toHaveLength(0);
  });

  it('H3: OTEL_EXPORTER_OTLP_ENDPOINT alone turns tracing on: the SDK is loaded then, and spans go to its /v1/traces', async () => {
    const collector = await receiver();
    const { file } = await writeConfig('');
    const imports = join(harness.tempDir('bs-imports-'), 'imports.txt');
    const { cli, data } = await harness.launchCli(['--config', file], {
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_SERVICE_NAME: 'billing-sidecar',
        NODE_OPTIONS: `--import=${RECORD_IMPORTS}`,
        RECORD_IMPORTS_FILE: imports,
      },
    });
    await cli.waitForLog((entry) => entry.msg === 'token request: login succeeded');
    expect((await fetch(`${data}/x`)).status).toBe(200);
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
    expect(existsSync(imports) && readFileSync(imports, 'utf8')).toContain('@opentelemetry/exporter-trace-otlp-proto');
    expect(collector.posts.map((post) => post.path)).toContain('/v1/traces');
    const server = collector.spans().find((span) => span.kind === SPAN_KIND.SERVER);
    expect(server?.resource['service.name']).toBe('billing-sidecar');
    // No client traceparent: a new trace, ours from the root.
    expect(server?.parentSpanId).toBe('');
  });
});
