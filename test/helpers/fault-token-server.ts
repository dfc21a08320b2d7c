import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type FaultMode =
  | 'pass' // forward to the real token server
  | 'script' // answer with whatever `answer` returns (odd bytes, odd headers, odd statuses)
  | 'status-500'
  | 'garbage-json'
  | 'html'
  | 'empty-200'
  | 'no-token-200'
  | 'half-close' // headers promise a body that never comes, then the socket ends
  | 'reset' // the connection is destroyed as soon as the request arrives
  | 'stall'; // the request is read and never answered

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

/** The modes that are one fixed answer. */
const CANNED: Partial<Record<FaultMode, RawAnswer>> = {
  'status-500': { status: 500, body: '{"error":"internal"}' },
  'garbage-json': { status: 200, body: '{"token": "abc", "tokenLifetime": 3' },
  html: { status: 200, headers: { 'content-type': 'text/html' }, body: '<html><body>Maintenance</body></html>' },
  'empty-200': { status: 200, body: '' },
  'no-token-200': { status: 200, body: '{"success":true,"tokenLifetime":3600}' },
};

/**
 * A real token endpoint on a free loopback port whose behaviour a test switches at run time.
 * In `pass` mode it forwards to a real token server (so the refresh-token chain is real); in
 * `script` mode it answers whatever `answer` returns and validates nothing (the untrusted side,
 * R1-R4); in every other mode it answers itself with one fault, so the real server never sees
 * (never consumes) the refresh token. `down()` / `up()` stop and restart listening on the same
 * port (connection refused in between).
 */
export class FaultTokenServer {
  mode: FaultMode;
  /** What `script` mode answers (may be swapped mid-test). */
  answer: (request: ReceivedTokenRequest, index: number) => RawAnswer;
  /** Every request that reached this front, whatever the mode, in order. */
  readonly requests: ReceivedTokenRequest[] = [];
  /** Bodies of the real server's answers forwarded in `pass` mode (every token it issued). */
  readonly answers: string[] = [];
  readonly #server = createServer((req, res) => this.#handle(req, res));
  readonly #sockets = new Set<Socket>();
  #port = 0;

  /** `target`: the real token server's origin that `pass` mode forwards to (without one, the mode is `script`). */
  constructor(private readonly target?: string) {
    this.mode = target === undefined ? 'script' : 'pass';
    this.answer = () => ({ status: 500 });
    this.#server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  /** Requests that reached this front, whatever the mode. */
  get received(): number {
    return this.requests.length;
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(this.#port, '127.0.0.1', resolve));
    this.#port = (this.#server.address() as AddressInfo).port;
    return this;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.#port}${path}`;
  }

  async down(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  up(): Promise<this> {
    return this.start();
  }

  async close(): Promise<void> {
    if (this.#server.listening) await this.down();
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      this.requests.push({ path: req.url ?? '', headers: req.headers, body: body.toString('utf8') });
      this.#answer(req, res, body);
    });
  }

  #answer(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    const canned = CANNED[this.mode];
    if (canned !== undefined) return writeRaw(res, canned);
    switch (this.mode) {
      case 'pass':
        return this.#forward(req, res, body);
      case 'script':
        return writeRaw(res, this.answer(this.requests.at(-1) as ReceivedTokenRequest, this.requests.length - 1));
      case 'half-close':
        res.socket?.end(
          'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{"success":tr',
        );
        return;
      case 'reset':
        res.socket?.destroy();
        return;
      default: // stall
        return;
    }
  }

  #forward(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    const upstream = request(
      `${this.target ?? ''}${req.url ?? '/'}`,
      { method: req.method, headers: { 'content-type': 'application/json', 'content-length': body.length } },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        const chunks: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => chunks.push(chunk));
        answer.on('end', () => this.answers.push(Buffer.concat(chunks).toString('utf8')));
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    upstream.end(body);
  }
}

/** Writes `reply` as given, with a JSON content type unless it names another, and an exact Content-Length. */
function writeRaw(res: ServerResponse, reply: RawAnswer): void {
  const body =
    reply.body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(reply.body) ? reply.body : Buffer.from(reply.body);
  res.writeHead(reply.status, {
    'content-type': 'application/json',
    ...reply.headers,
    'content-length': String(body.length),
  });
  res.end(body);
}

/** A token server that answers whatever the test scripts (R1-R4): a `FaultTokenServer` in `script` mode. */
export type HostileTokenServer = FaultTokenServer;

/** Starts a token endpoint on a free loopback port that answers each request with `answer(request, index)`. */
export function startHostileTokenServer(answer: HostileTokenServer['answer']): Promise<HostileTokenServer> {
  const server = new FaultTokenServer();
  server.answer = answer;
  return server.start();
}
