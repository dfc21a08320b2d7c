import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify, type JWTPayload } from 'jose';
import { closeServer } from '../../src/util/http-server.js';

/*
 * E4: a resource server that checks DPoP proofs as RFC 9449 §7 asks, with jose deciding the
 * signature (by the header's jwk, typ dpop+jwt): htm, htu (its own URL, no query), ath =
 * base64url(sha256(token)), a jti never seen before, a fresh iat, the key's thumbprint equal to
 * the token's cnf.jkt (asked of the token server), and its nonce when it demands one. A request
 * that fails any check gets 401 with the reason; one without the nonce gets the RFC 9449 §9 answer.
 */
export interface DpopUpstream {
  url: string;
  /** Every proof that passed, its claims. */
  accepted: JWTPayload[];
  /** Why each refused request was refused (`use_dpop_nonce` for a nonce demand). */
  refused: string[];
  /** The `DPoP` header values the upstream received, per request (one each: the client's own never arrives). */
  proofHeaders: string[][];
  /** The bodies of accepted requests. */
  bodies: string[];
  /** From now on every proof must carry a new nonce of the upstream's (the first one without gets RFC 9449 §9's 401). */
  demandNonce(): void;
  /** The next request with a good proof gets 401 invalid_token (its token revoked), and from then on a nonce is demanded. */
  revokeOnceThenDemandNonce(): void;
  close(): Promise<void>;
}

export async function startDpopUpstream(jktOf: (token: string) => Promise<string | undefined>): Promise<DpopUpstream> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const seenJti = new Set<string>();
  let nonce: string | undefined;
  let revokeNext = false;
  const state: DpopUpstream = {
    url,
    accepted: [],
    refused: [],
    proofHeaders: [],
    bodies: [],
    demandNonce: () => {
      nonce = randomBytes(12).toString('base64url');
    },
    revokeOnceThenDemandNonce: () => {
      revokeNext = true;
    },
    close: () => closeServer(server, { force: true }),
  };

  /** The reason the request fails, or undefined; 'use_dpop_nonce' when only the nonce is missing. */
  const judge = async (req: IncomingMessage): Promise<string | undefined> => {
    const raw = req.headers.dpop;
    state.proofHeaders.push(raw === undefined ? [] : [raw].flat());
    const auth = req.headers.authorization ?? '';
    if (!auth.startsWith('DPoP ')) return `authorization scheme is not DPoP: ${auth.split(' ')[0]}`;
    const token = auth.slice('DPoP '.length);
    if (typeof raw !== 'string') return 'no single DPoP proof';
    let payload: JWTPayload;
    let jwk: Record<string, unknown> | undefined;
    try {
      const verified = await jwtVerify(raw, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256', 'EdDSA'] });
      payload = verified.payload;
      jwk = verified.protectedHeader.jwk as Record<string, unknown> | undefined;
    } catch (error) {
      return `proof does not verify: ${(error as Error).message}`;
    }
    if (payload.htm !== req.method) return `htm ${String(payload.htm)}`;
    const htu = `${url}${(req.url ?? '/').split('?', 1)[0]}`;
    if (payload.htu !== htu) return `htu ${String(payload.htu)} is not ${htu}`;
    if (payload.ath !== createHash('sha256').update(token).digest('base64url')) return 'ath';
    if (typeof payload.jti !== 'string' || seenJti.has(payload.jti)) return 'jti reused';
    seenJti.add(payload.jti);
    if (typeof payload.iat !== 'number' || Math.abs(payload.iat - Date.now() / 1000) > 60) return 'iat not fresh';
    if (jwk === undefined || (await calculateJwkThumbprint(jwk as never)) !== (await jktOf(token)))
      return 'key is not the one the token is bound to';
    if (nonce !== undefined && payload.nonce !== nonce) return 'use_dpop_nonce';
    if (revokeNext) {
      revokeNext = false;
      state.demandNonce();
      return 'token revoked';
    }
    state.accepted.push(payload);
    return undefined;
  };

  server.on('request', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      void judge(req).then((problem) => {
        if (problem === 'use_dpop_nonce') {
          state.refused.push(problem);
          res.writeHead(401, {
            'www-authenticate': 'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce"',
            'dpop-nonce': nonce,
            'content-type': 'application/json',
          });
          res.end('{"error":"use_dpop_nonce"}');
          return;
        }
        if (problem !== undefined) {
          state.refused.push(problem);
          res.writeHead(401, { 'www-authenticate': 'DPoP error="invalid_token"', 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: 'invalid_token', problem }));
          return;
        }
        const body = Buffer.concat(chunks).toString('utf8');
        state.bodies.push(body);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: true, path: req.url, body }));
      });
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    void judge(req).then((problem) => {
      if (problem !== undefined) {
        state.refused.push(problem);
        socket.end('HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        return;
      }
      const accept = createHash('sha1')
        .update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
        .digest('base64');
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\n\r\n`,
      );
      socket.end();
    });
  });
  return state;
}
