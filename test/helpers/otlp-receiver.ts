import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import protobuf from 'protobufjs';

/**
 * The part of opentelemetry-proto's trace messages the tests read (field numbers as in
 * opentelemetry/proto/trace/v1/trace.proto and common/v1/common.proto); protobufjs skips the rest.
 */
const OTLP_TRACE_PROTO = `
syntax = "proto3";
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
message Resource { repeated KeyValue attributes = 1; }
message ScopeSpans { repeated Span spans = 2; }
message Span {
  bytes trace_id = 1;
  bytes span_id = 2;
  string trace_state = 3;
  bytes parent_span_id = 4;
  string name = 5;
  int32 kind = 6;
  repeated KeyValue attributes = 9;
  Status status = 15;
}
message Status { string message = 2; int32 code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue {
  oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4; }
}
`;

const ExportTraceServiceRequest = protobuf.parse(OTLP_TRACE_PROTO).root.lookupType('ExportTraceServiceRequest');

/** OTLP's SpanKind numbers. */
export const SPAN_KIND = { SERVER: 2, CLIENT: 3 } as const;
/** OTLP's StatusCode numbers. */
export const SPAN_STATUS = { UNSET: 0, OK: 1, ERROR: 2 } as const;

/** One exported span, decoded: ids as hex, attributes as plain values. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  traceState: string;
  name: string;
  kind: number;
  attributes: Record<string, string | number | boolean>;
  /** The span's status code (SPAN_STATUS). */
  status: number;
  /** The resource's attributes (service.name ...). */
  resource: Record<string, string | number | boolean>;
}

export interface OtlpReceiver {
  /** The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it. */
  url: string;
  /** Every POST as it came: its path and raw (protobuf) body. */
  posts: Array<{ path: string; contentType: string | undefined; body: Buffer }>;
  /** Every span of every POST to /v1/traces, decoded. */
  spans(): ReceivedSpan[];
  close(): Promise<void>;
}

interface DecodedKeyValue {
  key: string;
  value?: { stringValue?: string; boolValue?: boolean; intValue?: number; doubleValue?: number };
}

function attributesOf(list: DecodedKeyValue[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const { key, value } of list ?? []) {
    const v = value?.stringValue ?? value?.intValue ?? value?.doubleValue ?? value?.boolValue;
    if (v !== undefined) out[key] = v;
  }
  return out;
}

interface DecodedRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: DecodedKeyValue[] };
    scopeSpans?: Array<{
      spans?: Array<{
        traceId: Buffer;
        spanId: Buffer;
        parentSpanId: Buffer;
        traceState: string;
        name: string;
        kind: number;
        attributes?: DecodedKeyValue[];
        status?: { code?: number };
      }>;
    }>;
  }>;
}

/** Decodes one OTLP/HTTP protobuf body (ExportTraceServiceRequest) with protobufjs. */
export function decodeTraces(body: Buffer): ReceivedSpan[] {
  const message = ExportTraceServiceRequest.decode(body);
  const decoded = ExportTraceServiceRequest.toObject(message, { longs: Number, defaults: true }) as DecodedRequest;
  const spans: ReceivedSpan[] = [];
  for (const resourceSpans of decoded.resourceSpans ?? []) {
    const resource = attributesOf(resourceSpans.resource?.attributes);
    for (const scope of resourceSpans.scopeSpans ?? []) {
      for (const span of scope.spans ?? []) {
        spans.push({
          traceId: Buffer.from(span.traceId).toString('hex'),
          spanId: Buffer.from(span.spanId).toString('hex'),
          parentSpanId: Buffer.from(span.parentSpanId).toString('hex'),
          traceState: span.traceState,
          name: span.name,
          kind: span.kind,
          attributes: attributesOf(span.attributes),
          status: span.status?.code ?? 0,
          resource,
        });
      }
    }
  }
  return spans;
}

/** An OTLP/HTTP collector stand-in on a free loopback port: it records every POST and answers 200. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const posts: OtlpReceiver['posts'] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      posts.push({ path: req.url ?? '', contentType: req.headers['content-type'], body: Buffer.concat(chunks) });
      res.writeHead(200, { 'content-type': 'application/x-protobuf' });
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    posts,
    spans: () => posts.filter((post) => post.path === '/v1/traces').flatMap((post) => decodeTraces(post.body)),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
