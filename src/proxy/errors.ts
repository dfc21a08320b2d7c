import type { ServerResponse } from 'node:http';
import { STATUS_CODES } from '../util/node-http.js';
import type { Duplex } from 'node:stream';

/**
 * Every error the sidecar itself produces (F5): one table, used by the proxy, the admin
 * endpoints and the README test that checks each code is documented.
 */
export const SIDECAR_ERRORS = {
  bad_request: {
    status: 400,
    summary: 'The request target or path is not allowed (absolute-form, dot segments, encoded slashes).',
  },
  unauthorized: {
    status: 401,
    summary: 'Admin port: /status or a POST without Authorization: Bearer <key> from admin.apiKeys.',
  },
  forbidden: {
    status: 403,
    summary: 'The client address is not in inbound.allow, or X-Sidecar-Key is missing or wrong.',
  },
  no_route: {
    status: 404,
    summary: 'No account matches: no route port, X-Sidecar-Account, path prefix or default account.',
  },
  method_not_allowed: { status: 405, summary: 'CONNECT: the sidecar is not a forward proxy.' },
  upstream_unreachable: {
    status: 502,
    summary: 'The upstream refused or reset the connection, or failed TLS verification.',
  },
  token_unavailable: {
    status: 503,
    summary: 'No valid token could be had within refresh.waitForToken; see Retry-After and /status.',
  },
  upstream_busy: {
    status: 503,
    summary: "Every connection of the account's upstream pool stayed busy for timeouts.queue; see Retry-After.",
  },
  upstream_timeout: { status: 504, summary: 'The upstream did not answer in time.' },
} as const;

export type SidecarErrorCode = keyof typeof SIDECAR_ERRORS;

export interface SidecarErrorBody {
  error: SidecarErrorCode;
  message: string;
  account?: string;
}

export function errorBody(code: SidecarErrorCode, message: string, account?: string): string {
  const body: SidecarErrorBody = account === undefined ? { error: code, message } : { error: code, message, account };
  return JSON.stringify(body);
}

/**
 * Writes a JSON error unless the response has already started (then it can only be cut).
 * Whatever a failed attempt to pass an upstream answer on left on `res` (its reason phrase, some
 * of its headers) is dropped first: the error goes out with its own status line and headers,
 * plus the sidecar's own `connection: close` when one was set (shutdown).
 */
export function sendError(
  res: ServerResponse,
  code: SidecarErrorCode,
  message: string,
  account?: string,
  extraHeaders: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  for (const name of res.getHeaderNames()) {
    if (name !== 'connection' || res.getHeader(name) !== 'close') res.removeHeader(name);
  }
  const body = errorBody(code, message, account);
  const { status } = SIDECAR_ERRORS[code];
  res.writeHead(status, STATUS_CODES[status], {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    ...extraHeaders,
  });
  res.end(body);
}

/**
 * For CONNECT and upgrades there is no ServerResponse: writes a minimal HTTP/1.1 answer with
 * the JSON error of F5 on the raw socket and ends it. A socket that can no longer be written
 * is destroyed instead.
 */
export function writeRawError(socket: Duplex, code: SidecarErrorCode, message: string, account?: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = errorBody(code, message, account);
  const { status } = SIDECAR_ERRORS[code];
  socket.end(
    `HTTP/1.1 ${status} ${code.replace(/_/g, ' ')}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}
