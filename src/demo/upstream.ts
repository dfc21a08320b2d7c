import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from '../util/node-http.js';
import { closeServer, listen, serverUrl } from '../util/http-server.js';

/*
 * The demo "API" behind the sidecar: it accepts only live bearer tokens from the demo token
 * server, and echoes what it received so a user with curl can see the sidecar at work.
 */

export interface DemoUpstream {
  url: string;
  requests: number;
  rejected: number;
  close(): Promise<void>;
}

export interface DemoUpstreamOptions {
  isValidToken(token: string): boolean;
  host?: string;
  port?: number;
  name?: string;
}

type Query = Record<string, string | string[]>;

const FAKE_VEHICLES = [
  { id: 'veh-001', name: 'Truck 12', status: 'moving', speedKph: 72, lat: 51.5072, lon: -0.1276 },
  { id: 'veh-002', name: 'Van 3', status: 'idle', speedKph: 0, lat: 48.8566, lon: 2.3522 },
  { id: 'veh-003', name: 'Trailer 7', status: 'parked', speedKph: 0, lat: 52.52, lon: 13.405 },
];

export async function startDemoUpstream(options: DemoUpstreamOptions): Promise<DemoUpstream> {
  const api = options.name ?? 'demo-api';
  const server = createServer((req, res) => {
    upstream.requests++;
    // Read and discard the body first, so keep-alive connections stay usable.
    req.resume();
    req.once('end', () => respond(req, res));
    req.once('error', () => res.destroy());
  });

  const respond = (req: IncomingMessage, res: ServerResponse): void => {
    const token = bearerTokenOf(req);
    if (token === undefined || !options.isValidToken(token)) {
      upstream.rejected++;
      sendJson(res, 401, { error: 'invalid_token', message: 'missing or expired bearer token' });
      return;
    }
    const { path, query } = splitTarget(req.url ?? '/');
    const metadata = {
      ok: true,
      api,
      method: req.method,
      path,
      query,
      tokenFingerprint: fingerprint(token),
      receivedAt: new Date().toISOString(),
    };
    const isVehicles = req.method === 'GET' && (path === '/vehicles' || path === '/vehicles/');
    sendJson(res, 200, isVehicles ? { ...metadata, data: FAKE_VEHICLES } : metadata);
  };

  await listen(server, { host: options.host ?? '127.0.0.1', port: options.port ?? 0 });
  const url = serverUrl(server);
  const upstream: DemoUpstream = { url, requests: 0, rejected: 0, close: () => closeServer(server, { force: true }) };
  return upstream;
}

/** The token of an `Authorization: Bearer <t>` header; the scheme is case-insensitive (RFC 7235). */
function bearerTokenOf(req: IncomingMessage): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return match?.[1];
}

/** Splits by hand: URL parsing would turn a `//host/x` path into another host. */
function splitTarget(target: string): { path: string; query: Query } {
  const mark = target.indexOf('?');
  const path = mark === -1 ? target : target.slice(0, mark);
  const query: Query = {};
  if (mark === -1) return { path, query };
  for (const [key, value] of new URLSearchParams(target.slice(mark + 1))) {
    const seen = query[key];
    query[key] = seen === undefined ? value : [...(Array.isArray(seen) ? seen : [seen]), value];
  }
  return { path, query };
}

/** The same fingerprint `/status` shows: the first 8 hex digits of the token's SHA-256. */
function fingerprint(token: string): string {
  return createHash('sha256').update(token).digest('hex').slice(0, 8);
}

function sendJson(res: ServerResponse, status: number, body: object): void {
  const payload = JSON.stringify(body);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
  };
  // RFC 6750 §3: a rejected bearer token is announced in WWW-Authenticate as well.
  if (status === 401) headers['www-authenticate'] = 'Bearer error="invalid_token"';
  res.writeHead(status, headers);
  res.end(payload);
}
