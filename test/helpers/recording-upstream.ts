import {
  createServer as createHttpServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface RecordingUpstream {
  url: string;
  port: number;
  requests: RecordedRequest[];
  connections: number;
  /** Answer the next requests with this status (default 200). */
  status: number;
  /** If set, decides each answer's status (overrides `status`). */
  decide: ((request: RecordedRequest) => number) | undefined;
  /** If set, answers wait for this promise (slow requests, shutdown tests). */
  hold: Promise<void> | undefined;
  /** If set, more headers for each answer (a redirect naming the request's own URL ...). */
  answerHeaders: ((request: RecordedRequest) => Record<string, string>) | undefined;
  close(): Promise<void>;
}

/** An upstream that records exactly what reached it, byte for byte in the request target. */
export async function startRecordingUpstream(tls?: { key: string; cert: string }): Promise<RecordingUpstream> {
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const recorded = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      upstream.requests.push(recorded);
      const status = upstream.decide?.(recorded) ?? upstream.status;
      const answer = () => {
        const body = JSON.stringify({ seen: req.url, bodyLength: recorded.body.length });
        res.writeHead(status, {
          'content-type': 'application/json',
          'x-upstream': 'yes',
          'content-length': Buffer.byteLength(body),
          ...upstream.answerHeaders?.(recorded),
        });
        res.end(body);
      };
      if (upstream.hold === undefined) answer();
      else void upstream.hold.then(answer);
    });
  };
  const server: Server = tls ? createHttpsServer(tls, handler) : createHttpServer(handler);
  const upstream: RecordingUpstream = {
    url: '',
    port: 0,
    requests: [],
    connections: 0,
    status: 200,
    decide: undefined,
    hold: undefined,
    answerHeaders: undefined,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  server.on(tls ? 'secureConnection' : 'connection', () => (upstream.connections += 1));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream.port = (server.address() as AddressInfo).port;
  upstream.url = `${tls ? 'https' : 'http'}://127.0.0.1:${upstream.port}`;
  return upstream;
}

/** Sends bytes exactly as given (no client-side URL normalisation) and returns the raw answer. */
export function rawRequest(url: string, text: string): Promise<{ status: number; raw: string; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(text));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);
      resolve({ status, raw, body: raw.slice(raw.indexOf('\r\n\r\n') + 4) });
    });
  });
}

export function rawGet(
  url: string,
  target: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; raw: string; body: string }> {
  const extra = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  return rawRequest(url, `GET ${target} HTTP/1.1\r\nhost: sidecar.test\r\nconnection: close\r\n${extra}\r\n`);
}
