import { request as httpRequest } from '../util/node-http.js';
import { request as httpsRequest } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import { describeNetworkError } from '../util/net-errors.js';
import type { TokenHttpRequest, TokenHttpResponse } from './types.js';
import { SidecarError } from '../util/errors.js';
import { displayUrl } from '../util/display-url.js';
import type { EgressProxy } from '../config/egress.js';
import { proxyRefusalText, type TokenEgress } from './proxy-agent.js';

/** Token responses are small; anything bigger is a misconfigured URL, not a token. */
const MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024;

export interface TokenHttpOptions {
  timeoutMs: number;
  /** Extra CA certificates (PEM), added to Node's defaults. */
  ca?: string[];
  rejectUnauthorized?: boolean;
  /** E6: the proxy, if any, for each token endpoint; undefined: direct. */
  egress?: TokenEgress;
  /** E2: the client certificate to present (`tls_client_auth`), as it is now. */
  clientCertificate?: { current(): { cert: string; key: string } };
}

/** Thrown when no complete response arrived: the request may or may not have reached the server. */
export class TokenTransportError extends SidecarError {
  constructor(
    /** Why: a Node errno code (ECONNREFUSED, ...), `timeout`, `too_large`, or `proxy_refused` (E6). */
    readonly transportCode: string,
    message: string,
  ) {
    super('BS_ERR_TOKEN_TRANSPORT', message);
  }
}

/** POSTs one token request and reads the whole (bounded) answer. Never logs; never retries. */
export function sendTokenRequest(spec: TokenHttpRequest, options: TokenHttpOptions): Promise<TokenHttpResponse> {
  const route = options.egress?.route(spec.url);
  if (route !== undefined) return sendThroughProxy(spec, options.timeoutMs, route);
  return new Promise((resolve, reject) => {
    const send = spec.url.protocol === 'https:' ? httpsRequest : httpRequest;
    const body = Buffer.from(spec.body, 'utf8');
    const req = send(spec.url, {
      method: 'POST',
      headers: { ...spec.headers, 'content-length': String(body.length), 'user-agent': 'bearer-sidecar' },
      ...(options.ca ? { ca: options.ca } : {}),
      ...(options.clientCertificate === undefined ? {} : options.clientCertificate.current()),
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

/** E6: the same request through undici's ProxyAgent (CONNECT for https, absolute-form for http), same bounds. */
async function sendThroughProxy(
  spec: TokenHttpRequest,
  timeoutMs: number,
  route: { proxy: EgressProxy; dispatcher: Dispatcher },
): Promise<TokenHttpResponse> {
  const timeout = new AbortController();
  const timer = setTimeout(
    () => timeout.abort(new TokenTransportError('timeout', `no answer within ${timeoutMs}ms`)),
    timeoutMs,
  );
  try {
    const body = Buffer.from(spec.body, 'utf8');
    const response = await route.dispatcher.request({
      origin: spec.url.origin,
      path: `${spec.url.pathname}${spec.url.search}`,
      method: 'POST',
      headers: { ...spec.headers, 'content-length': String(body.length), 'user-agent': 'bearer-sidecar' },
      body,
      signal: timeout.signal,
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_TOKEN_RESPONSE_BYTES) {
        response.body.destroy();
        throw new TokenTransportError('too_large', `response larger than ${MAX_TOKEN_RESPONSE_BYTES} bytes`);
      }
      chunks.push(chunk);
    }
    return {
      status: response.statusCode,
      headers: response.headers as IncomingHttpHeaders,
      body: Buffer.concat(chunks).toString('utf8'),
    };
  } catch (error) {
    const reason = timeout.signal.aborted ? (timeout.signal.reason as Error) : (error as Error);
    if (reason instanceof TokenTransportError) throw reason;
    const errno = reason as NodeJS.ErrnoException;
    const refused = proxyRefusalText(reason);
    // A proxy's refusal is certain: the token server never saw the request (T5: nothing spent).
    const code = refused === undefined ? (errno.code ?? 'error') : 'proxy_refused';
    const why = refused ?? describeNetworkError(errno);
    throw new TokenTransportError(code, `via proxy ${displayUrl(route.proxy.url)}: ${why}`);
  } finally {
    clearTimeout(timer);
  }
}

function asTransportError(error: Error): TokenTransportError {
  if (error instanceof TokenTransportError) return error;
  const errno = error as NodeJS.ErrnoException;
  return new TokenTransportError(errno.code ?? 'error', describeNetworkError(errno));
}
