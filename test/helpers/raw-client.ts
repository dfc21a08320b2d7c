import { connect } from 'node:net';

/** A WebSocket upgrade request as a browser or `ws` client would send it. */
export const WEBSOCKET_UPGRADE =
  'GET /ws HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n';

/**
 * True when a TCP connection to `url`'s host and port is refused (nothing listens there); false
 * when it opens or fails otherwise.
 */
export function connectionRefused(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    socket.on('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
}

/**
 * Writes raw bytes to a loopback port (no client-side checks) and resolves with what came back,
 * as latin1 text: until the server closes, or, with `untilHead`, until the answer's head is in.
 * A server that stays silent past `silenceMs` (a hang detector, not a timing assertion) yields
 * what came so far plus `<silence>`.
 */
export function sendRaw(
  port: number | string,
  bytes: Buffer | string,
  options: { untilHead?: boolean; end?: boolean; silenceMs?: number } = {},
): Promise<string> {
  return new Promise((resolve) => {
    let raw = '';
    const payload = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
    const socket = connect(Number(port), '127.0.0.1', () =>
      options.end === true ? socket.end(payload) : socket.write(payload),
    );
    socket.setTimeout(options.silenceMs ?? 10_000, () => {
      socket.destroy();
      resolve(`${raw}<silence>`);
    });
    socket.on('data', (chunk: Buffer) => {
      raw += chunk.toString('latin1');
      if (options.untilHead === true && raw.includes('\r\n\r\n')) socket.destroy();
    });
    socket.on('error', () => resolve(raw));
    socket.on('close', () => resolve(raw));
  });
}
