import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { describeNetworkError } from '../util/net-errors.js';
import type { TokenHttpRequest, TokenHttpResponse } from './types.js';
import { SidecarError } from '../util/errors.js';

/** Token responses are small; anything bigger is a misconfigured URL, not a token. */
const MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024;

export interface TokenHttpOptions {
  timeoutMs: number;
  /** Extra CA certificates (PEM), added to Node's defaults. */
  ca?: string[];
  rejectUnauthorized?: boolean;
}

/** Thrown when no complete response arrived: the request may or may not have reached the server. */
export class TokenTransportError extends SidecarError {
  constructor(
    /** Why: a Node errno code (ECONNREFUSED, ...), `timeout` or `too_large`. */
    readonly transportCode: string,
    message: string,
  ) {
    super('BS_ERR_TOKEN_TRANSPORT', message);
  }
}

/** POSTs one token request and reads the whole (bounded) answer. Never logs; never retries. */
export function sendTokenRequest(spec: TokenHttpRequest, options: TokenHttpOptions): Promise<TokenHttpResponse> {
  return new Promise((resolve, reject) => {
    const send = spec.url.protocol === 'https:' ? httpsRequest : httpRequest;
    const body = Buffer.from(spec.body, 'utf8');
    const req = send(spec.url, {
      method: 'POST',
      headers: { ...spec.headers, 'content-length': String(body.length), 'user-agent': 'bearer-sidecar' },
      ...(options.ca ? { ca: options.ca } : {}),
      rejectUnauthorized: options.rejectUnauthorized ?? true,
    });
    const timer = setTimeout(() => {
      req.destroy(new TokenTransportError('timeout', `no answer within ${options.timeoutMs}ms`));
    }, options.timeoutMs);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_TOKEN_RESPONSE_BYTES) {
          req.destroy(new TokenTransportError('too_large', `response larger than ${MAX_TOKEN_RESPONSE_BYTES} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', (error) => {
        clearTimeout(timer);
        reject(asTransportError(error));
      });
    });
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(asTransportError(error));
    });
    req.end(body);
  });
}

function asTransportError(error: Error): TokenTransportError {
  if (error instanceof TokenTransportError) return error;
  const errno = error as NodeJS.ErrnoException;
  return new TokenTransportError(errno.code ?? 'error', describeNetworkError(errno));
}
