import { isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import type { EgressProxy } from '../config/egress.js';
import { loadUndici } from '../flows/proxy-agent.js';
import { asError, SidecarError } from '../util/errors.js';
import type { UpstreamAccount } from './upstream.js';

/** E6: the proxy refused an upgrade's tunnel; worded as undici's ProxyAgent words it (flows/proxy-agent.ts reads it). */
export class ProxyTunnelError extends SidecarError {
  constructor(statusCode: number) {
    super('BS_ERR_PROXY_TUNNEL', `Proxy response (${statusCode}) !== 200 when HTTP Tunneling`);
  }
}

/** Node's `createConnection` option, asynchronous form: the socket is handed over through `done`. */
export type CreateConnection = (options: unknown, done: (error: Error | null, socket: Duplex) => void) => undefined;

/**
 * E6 for WebSocket upgrades: a `createConnection` for node:http that opens a CONNECT tunnel to the
 * upstream through `proxy` (undici's Client.connect, `Proxy-Authorization` from the proxy's
 * credentials, never shown) for ws and wss targets alike, then for wss the TLS handshake inside it
 * (the upstream's certificate verified as without a proxy, E2's client certificate as it is now).
 * A proxy's refusal fails as undici's ProxyAgent words it (`Proxy response (407) !== 200 ...`).
 * R11: the attempt lives no longer than its upgrade: once `abandoned` is aborted (the upgrade's
 * timeout passed, or its client left) every socket it opened is destroyed, whichever step it was
 * at, and nothing is handed to the request any more.
 */
export function tunnelThroughProxy(
  account: Pick<UpstreamAccount, 'upstream' | 'tls'>,
  proxy: EgressProxy,
  abandoned: AbortSignal,
): CreateConnection {
  return (_options, done) => {
    openTunnel(account, proxy, abandoned).then(
      (socket) => {
        if (abandoned.aborted) socket.destroy();
        else done(null, socket);
      },
      (error: unknown) => {
        // Node's own callback takes no socket with an error.
        if (!abandoned.aborted) done(asError(error), undefined as unknown as Duplex);
      },
    );
    return undefined;
  };
}

async function openTunnel(
  account: Pick<UpstreamAccount, 'upstream' | 'tls'>,
  proxy: EgressProxy,
  abandoned: AbortSignal,
): Promise<Socket> {
  const { Client } = loadUndici();
  const { upstream } = account;
  const secure = upstream.protocol === 'https:';
  const client = new Client(proxy.url.origin);
  const token = proxy.authorization?.reveal();
  // Until the tunnel is ours, the client holds the connection to the proxy: destroying it cuts it.
  const cutClient = () => void client.destroy().catch(() => undefined);
  abandoned.addEventListener('abort', cutClient, { once: true });
  let tunnel: Socket;
  try {
    const answer = await client.connect({
      path: `${upstream.hostname}:${upstream.port === '' ? (secure ? 443 : 80) : upstream.port}`,
      headers: token === undefined ? {} : { 'proxy-authorization': token },
      signal: abandoned,
    });
    tunnel = answer.socket as Socket;
    if (answer.statusCode !== 200) {
      tunnel.on('error', () => undefined).destroy();
      throw new ProxyTunnelError(answer.statusCode);
    }
  } finally {
    abandoned.removeEventListener('abort', cutClient);
    // The tunnel's socket has left the client (an upgrade): closing it leaves the tunnel open.
    void client.close().catch(() => undefined);
  }
  if (!secure || abandoned.aborted) return tunnel;
  return await secureInside(tunnel, account, abandoned);
}

/** wss: the TLS handshake inside the tunnel, cut with the tunnel when the upgrade is abandoned. */
async function secureInside(
  tunnel: Socket,
  { upstream, tls }: Pick<UpstreamAccount, 'upstream' | 'tls'>,
  abandoned: AbortSignal,
): Promise<Socket> {
  const name = upstream.hostname.replace(/^\[(.*)\]$/, '$1');
  const secured = tlsConnect({
    socket: tunnel,
    // The name the certificate must hold (an IP literal too); SNI only for a name.
    host: name,
    ...(isIP(name) === 0 ? { servername: name } : {}),
    ca: tls.ca,
    rejectUnauthorized: tls.rejectUnauthorized,
    ...tls.clientCertificate?.current(),
  });
  const cut = () => {
    secured.destroy();
    tunnel.destroy();
  };
  abandoned.addEventListener('abort', cut, { once: true });
  try {
    await new Promise<void>((resolve, reject) => {
      secured.once('secureConnect', resolve);
      secured.once('error', reject);
      secured.once('close', () => reject(new Error('the tunnel closed during the TLS handshake')));
    });
  } catch (error) {
    cut();
    throw error;
  } finally {
    abandoned.removeEventListener('abort', cut);
  }
  return secured;
}
