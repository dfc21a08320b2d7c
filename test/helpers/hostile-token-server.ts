import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One answer, as raw as a test wants it: header values are written as latin1 bytes, the body as given. */
export interface RawAnswer {
  status: number;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

export interface ReceivedTokenRequest {
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export interface HostileTokenServer {
  /** Every request received, in order. */
  readonly requests: ReceivedTokenRequest[];
  /** What the next requests are answered with (may be swapped mid-test). */
  answer: (request: ReceivedTokenRequest, index: number) => RawAnswer;
  url(path: string): string;
  close(): Promise<void>;
}

/**
 * A real token endpoint on a free loopback port that answers whatever the test scripts: odd
 * bytes, odd headers, odd statuses (R1-R4). It never validates anything: it is the untrusted side.
 */
export async function startHostileTokenServer(answer: HostileTokenServer['answer']): Promise<HostileTokenServer> {
  const requests: ReceivedTokenRequest[] = [];
  const state = { answer };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const received = { path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      requests.push(received);
      const reply = state.answer(received, requests.length - 1);
      const body =
        reply.body === undefined
          ? Buffer.alloc(0)
          : Buffer.isBuffer(reply.body)
            ? reply.body
            : Buffer.from(reply.body, 'utf8');
      res.writeHead(reply.status, {
        'content-type': 'application/json',
        ...reply.headers,
        'content-length': String(body.length),
      });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    requests,
    get answer() {
      return state.answer;
    },
    set answer(next) {
      state.answer = next;
    },
    url: (path) => `http://127.0.0.1:${port}${path}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
