import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type FaultMode =
  | 'pass' // forward to the real token server
  | 'status-500'
  | 'garbage-json'
  | 'html'
  | 'empty-200'
  | 'no-token-200'
  | 'half-close' // headers promise a body that never comes, then the socket ends
  | 'reset' // the connection is destroyed as soon as the request arrives
  | 'stall'; // the request is read and never answered

/**
 * A token endpoint whose behaviour a test switches at run time. In `pass` mode it forwards to a
 * real token server (so the refresh-token chain is real); in every other mode it answers itself,
 * so the real server never sees (never consumes) the refresh token. `down()` / `up()` stop and
 * restart listening on the same port (connection refused in between).
 */
export class FaultTokenServer {
  mode: FaultMode = 'pass';
  /** Requests that reached this front, whatever the mode. */
  received = 0;
  /** Bodies of the real server's answers forwarded in `pass` mode (every token it issued). */
  readonly answers: string[] = [];
  readonly #server = createServer((req, res) => this.#handle(req, res));
  readonly #sockets = new Set<Socket>();
  #port = 0;

  constructor(private readonly target: string) {
    this.#server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
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
    this.received += 1;
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => this.#answer(req, res, Buffer.concat(chunks)));
  }

  #answer(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    const json = (status: number, text: string, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    switch (this.mode) {
      case 'pass':
        return this.#forward(req, res, body);
      case 'status-500':
        return json(500, '{"error":"internal"}');
      case 'garbage-json':
        return json(200, '{"token": "abc", "tokenLifetime": 3');
      case 'html':
        return json(200, '<html><body>Maintenance</body></html>', 'text/html');
      case 'empty-200':
        return json(200, '');
      case 'no-token-200':
        return json(200, '{"success":true,"tokenLifetime":3600}');
      case 'half-close':
        res.socket?.end(
          'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{"success":tr',
        );
        return;
      case 'reset':
        res.socket?.destroy();
        return;
      case 'stall':
        return;
    }
  }

  #forward(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    const upstream = request(
      `${this.target}${req.url ?? '/'}`,
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
