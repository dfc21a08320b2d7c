import { createServer, type Server, type Socket } from 'node:net';

/**
 * A Redis Sentinel stand-in on a free port that a test steers: which master it names, when it
 * answers the question "where is the master", and when it publishes `+switch-master`. It speaks
 * the RESP a Sentinel client sends (arrays of bulk strings), answers anything else with +OK, and
 * knows no other sentinels. Used to put a switch-master notice exactly where a real group puts it
 * only sometimes (H1).
 */
export class FakeSentinel {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #subscribers = new Set<Socket>();
  /** Sockets that asked for RESP3 (HELLO 3): their pub/sub replies are pushes (`>`), not arrays. */
  readonly #resp3 = new WeakSet<Socket>();
  #master: { host: string; port: number };
  /** While set, questions for the master wait for it before being answered. */
  #hold: Promise<void> | undefined;
  /** Questions for the master waiting for the hold to end. */
  heldQuestions = 0;
  port = 0;

  constructor(master: { host: string; port: number }) {
    this.#master = master;
    this.#server = createServer((socket) => this.#serve(socket));
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    const address = this.#server.address();
    this.port = typeof address === 'object' && address !== null ? address.port : 0;
    return this;
  }

  /** Names `master` from now on. */
  setMaster(master: { host: string; port: number }): void {
    this.#master = master;
  }

  /** Questions for the master wait until the returned function is called. */
  holdAnswers(): () => void {
    let release = () => undefined as void;
    this.#hold = new Promise<void>((resolve) => (release = resolve));
    return () => {
      this.#hold = undefined;
      release();
    };
  }

  /** Publishes `+switch-master <name> <old> <new>` to every subscriber; the number reached. */
  publishSwitchMaster(name: string, from: { host: string; port: number }): number {
    const payload = `${name} ${from.host} ${from.port} ${this.#master.host} ${this.#master.port}`;
    for (const socket of this.#subscribers)
      socket.write(array([bulk('message'), bulk('+switch-master'), bulk(payload)], this.#resp3.has(socket)));
    return this.#subscribers.size;
  }

  /** Subscribers to `+switch-master` now. */
  get subscriberCount(): number {
    return this.#subscribers.size;
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #serve(socket: Socket): void {
    let buffered = Buffer.alloc(0);
    socket.on('error', () => undefined);
    this.#sockets.add(socket);
    socket.on('close', () => {
      this.#sockets.delete(socket);
      this.#subscribers.delete(socket);
    });
    // Answers go out in the order the commands came, even when one of them is held.
    let answered = Promise.resolve();
    socket.on('data', (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        let parsed: ReturnType<typeof parseCommand>;
        try {
          parsed = parseCommand(buffered);
        } catch (error) {
          socket.end(`-ERR ${(error as Error).message}\r\n`);
          return;
        }
        if (parsed === undefined) break;
        buffered = buffered.subarray(parsed.length);
        const command = parsed.args;
        answered = answered.then(async () => {
          const reply = await this.#answer(socket, command);
          if (!socket.destroyed) socket.write(reply);
        });
      }
    });
  }

  async #answer(socket: Socket, args: string[]): Promise<string> {
    const [name = '', sub = ''] = args.map((a) => a.toLowerCase());
    if (name === 'sentinel' && sub === 'get-master-addr-by-name') {
      if (this.#hold !== undefined) {
        this.heldQuestions += 1;
        await this.#hold;
        this.heldQuestions -= 1;
      }
      return array([bulk(this.#master.host), bulk(String(this.#master.port))]);
    }
    if (name === 'sentinel') return array([]);
    if (name === 'hello' && sub === '3') {
      this.#resp3.add(socket);
      return `%3\r\n${bulk('server')}${bulk('redis')}${bulk('version')}${bulk('7.0.0')}${bulk('proto')}:3\r\n`;
    }
    if (name === 'subscribe') {
      this.#subscribers.add(socket);
      return args
        .slice(1)
        .map((channel, index) =>
          array([bulk('subscribe'), bulk(channel), `:${index + 1}\r\n`], this.#resp3.has(socket)),
        )
        .join('');
    }
    if (name === 'ping') return '+PONG\r\n';
    return '+OK\r\n';
  }
}

function bulk(text: string): string {
  return `$${Buffer.byteLength(text)}\r\n${text}\r\n`;
}

/** A RESP array, or a RESP3 push when `push` (what a pub/sub reply is on a RESP3 connection). */
function array(items: string[], push = false): string {
  return `${push ? '>' : '*'}${items.length}\r\n${items.join('')}`;
}

/** One RESP array of bulk strings from the start of `buffer`, or undefined when it is not all there. */
function parseCommand(buffer: Buffer): { args: string[]; length: number } | undefined {
  let offset = 0;
  const line = (): string | undefined => {
    const end = buffer.indexOf('\r\n', offset);
    if (end < 0) return undefined;
    const text = buffer.toString('latin1', offset, end);
    offset = end + 2;
    return text;
  };
  const header = line();
  if (header === undefined) return undefined;
  if (!header.startsWith('*')) throw new Error(`fake sentinel: inline commands are not spoken (${header})`);
  const args: string[] = [];
  for (let i = 0; i < Number(header.slice(1)); i++) {
    const size = line();
    if (size === undefined) return undefined;
    const length = Number(size.slice(1));
    if (buffer.length < offset + length + 2) return undefined;
    args.push(buffer.toString('utf8', offset, offset + length));
    offset += length + 2;
  }
  return { args, length: offset };
}
