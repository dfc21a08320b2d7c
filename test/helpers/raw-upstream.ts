import { randomBytes } from 'node:crypto';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';

/** One request head as it reached the raw upstream, decoded byte for byte (latin1). */
export interface RawRequestHead {
  text: string;
  /** Lower-cased header name to value, the last one wins. */
  headers: Record<string, string>;
}

export interface RawUpstream {
  url: string;
  requests: RawRequestHead[];
  connections: number;
  close(): Promise<void>;
}

/**
 * What the raw upstream sends for one request: bytes, or a latin1 string (one character is
 * one byte, so `'r\xc3\xa9sum\xc3\xa9'` is the UTF-8 of "résumé" sent as it is).
 */
export type RawAnswer = Buffer | string;

/**
 * An upstream that answers each request with scripted raw bytes: the answers no well-behaved
 * server library writes (obs-text, a 304 with Content-Length, a chunked refusal of an upgrade).
 * Keep-alive: every request on a connection is answered in turn; the connection stays open.
 */
export async function startRawUpstream(
  answer: (request: RawRequestHead, index: number) => RawAnswer,
): Promise<RawUpstream> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    upstream.connections += 1;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let buffered = '';
    let bodyLeft = 0;
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      for (;;) {
        if (bodyLeft > 0) {
          const taken = Math.min(bodyLeft, buffered.length);
          bodyLeft -= taken;
          buffered = buffered.slice(taken);
          if (bodyLeft > 0) return;
        }
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const text = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        const request = { text, headers: parseHeaders(text) };
        bodyLeft = Number(request.headers['content-length'] ?? 0);
        upstream.requests.push(request);
        const bytes = answer(request, upstream.requests.length - 1);
        socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const upstream: RawUpstream = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: [],
    connections: 0,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  return upstream;
}

function parseHeaders(head: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

/**
 * Writes `text` (latin1) on one client connection and resolves with every byte that came back
 * once the server closes it, decoded byte for byte (latin1). Send `connection: close` on the
 * last request so the server ends the exchange.
 */
export function rawExchange(url: string, text: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(Buffer.from(text, 'latin1')));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
  });
}

/** The status lines in a raw exchange, in order (`HTTP/1.1 304 Not Modified`, ...). */
export function statusLines(raw: string): string[] {
  return [...raw.matchAll(/HTTP\/1\.1 \d{3}[^\r\n]*/g)].map((match) => match[0]);
}

/**
 * Writes `text` on one client connection and resolves with the first answer head (latin1, up to
 * and including its blank line), then closes the connection: for answers that never end on
 * their own, such as a 101 that turned the connection into a WebSocket.
 */
export function rawHead(url: string, text: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(Buffer.from(text, 'latin1')));
    let received = '';
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.destroy();
      resolve(received.slice(0, end + 4));
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(received));
  });
}

/** A WebSocket upgrade request for `target`, as a browser sends it (a fresh key each time). */
export function websocketUpgrade(target = '/x'): string {
  return `GET ${target} HTTP/1.1\r\nhost: localhost\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: ${randomBytes(16).toString('base64')}\r\n\r\n`;
}

/** A GET for `target` that asks the server to close the connection after its answer. */
export function getAndClose(target = '/x'): string {
  return `GET ${target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n`;
}
