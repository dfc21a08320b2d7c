import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

export interface HeaderRecordingUpstream {
  url: string;
  /** The raw header lines (name, value, name, value, ...) of every request and upgrade received. */
  readonly received: Array<{ kind: 'http' | 'upgrade'; rawHeaders: string[]; headers: IncomingHttpHeaders }>;
  close(): Promise<void>;
}

/** An upstream that answers plain requests with 200 and accepts WebSocket upgrades, recording each head. */
export async function startHeaderRecordingUpstream(): Promise<HeaderRecordingUpstream> {
  const received: HeaderRecordingUpstream['received'] = [];
  const server = createServer((req, res) => {
    received.push({ kind: 'http', rawHeaders: req.rawHeaders, headers: req.headers });
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    received.push({ kind: 'upgrade', rawHeaders: req.rawHeaders, headers: req.headers });
    wss.handleUpgrade(req, socket, head, (ws) => ws.close());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
