import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** One request that reached the held upstream, its body read whole, its answer not sent yet. */
export interface HeldRequest {
  method: string;
  url: string;
  authorization: string | undefined;
  bodyLength: number;
  /** Sends the answer (200 with a small JSON body unless told otherwise). */
  answer(status?: number): void;
}

export interface HeldUpstream {
  url: string;
  /** Every request received, in order of arrival. */
  received: HeldRequest[];
  /** Upgrade requests received (never answered: the upstream stays silent). */
  upgrades: number;
  /** TCP connections open now. */
  openConnections(): number;
  /** Resolves once `count` requests have arrived in all. */
  arrived(count: number): Promise<void>;
  /** Resolves once `count` upgrade requests have arrived in all. */
  upgraded(count: number): Promise<void>;
  /** Resolves once no connection is open, or with false when a hang detector fires first. */
  allClosed(hangMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * An upstream that reads each request whole and then holds its answer until the test says so;
 * upgrade requests get no answer at all. It counts its open connections, so a test can see what
 * the sidecar keeps open (R10, R11).
 */
export async function startHeldUpstream(): Promise<HeldUpstream> {
  const sockets = new Set<Socket>();
  const waiters: Array<() => void> = [];
  const wake = () => waiters.splice(0).forEach((wakeOne) => wakeOne());
  const waitFor = (done: () => boolean) =>
    new Promise<void>((resolve) => {
      const check = () => (done() ? resolve() : waiters.push(check));
      check();
    });
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let bodyLength = 0;
    req.on('data', (chunk: Buffer) => (bodyLength += chunk.length));
    req.on('end', () => {
      upstream.received.push({
        method: req.method ?? '',
        url: req.url ?? '',
        authorization: req.headers.authorization,
        bodyLength,
        answer: (status = 200) => {
          const body = JSON.stringify({ seen: req.url, bodyLength });
          res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
          res.end(body);
        },
      });
      wake();
    });
  });
  server.on('upgrade', (_req, socket: Socket) => {
    upstream.upgrades += 1;
    socket.on('error', () => socket.destroy());
    // Reads on (so a FIN is seen) and closes when the sidecar leaves, as a WebSocket server does.
    socket.on('end', () => socket.destroy());
    socket.resume();
    wake();
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      wake();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const upstream: HeldUpstream = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received: [],
    upgrades: 0,
    openConnections: () => sockets.size,
    arrived: (count) => waitFor(() => upstream.received.length >= count),
    upgraded: (count) => waitFor(() => upstream.upgrades >= count),
    allClosed: (hangMs = 5_000) => {
      // A hang detector, not a timing assertion: what is still open after it is a leak.
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), hangMs)));
      const closed = waitFor(() => sockets.size === 0).then(() => true);
      return Promise.race([closed, hung]).finally(() => clearTimeout(timer));
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  return upstream;
}

/** File descriptors open in this process now (Linux), for leak figures. */
export async function openFileDescriptors(): Promise<number> {
  const { readdir } = await import('node:fs/promises');
  return (await readdir('/proc/self/fd')).length;
}
