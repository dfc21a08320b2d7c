import type { ServerResponse } from 'node:http';

/**
 * Every error the sidecar itself produces (F5): one table, used by the proxy, the admin
 * endpoints and the README test that checks each code is documented.
 */
export const SIDECAR_ERRORS = {
  bad_request: { status: 400, summary: 'The request target or path is not allowed (absolute-form, dot segments, encoded slashes).' },
  forbidden: { status: 403, summary: 'The client address is not in inbound.allow, or X-Sidecar-Key is missing or wrong.' },
  no_route: { status: 404, summary: 'No account matches: no route port, X-Sidecar-Account, path prefix or default account.' },
  method_not_allowed: { status: 405, summary: 'CONNECT: the sidecar is not a forward proxy.' },
  upstream_unreachable: { status: 502, summary: 'The upstream refused or reset the connection, or failed TLS verification.' },
  token_unavailable: { status: 503, summary: 'No valid token could be had within refresh.waitForToken; see Retry-After and /status.' },
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

/** Writes a JSON error unless the response has already started (then it can only be cut). */
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
  const body = errorBody(code, message, account);
  res.writeHead(SIDECAR_ERRORS[code].status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    ...extraHeaders,
  });
  res.end(body);
}
