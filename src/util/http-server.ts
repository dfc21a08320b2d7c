import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export type ListenAddress = { host: string; port: number } | { path: string };

/** Binds a server; rejects (e.g. EADDRINUSE) instead of emitting an unhandled 'error'. */
export function listen(server: Server, address: ListenAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const onListening = () => {
      server.off('error', reject);
      resolve();
    };
    if ('path' in address) server.listen(address.path, onListening);
    else server.listen(address.port, address.host, onListening);
  });
}

/**
 * Stops accepting and resolves once open connections are gone. `force` also cuts idle and
 * busy keep-alive sockets at once (demo servers, the admin port), instead of letting them drain.
 * A server no longer listening is being closed already (a drain): it is left as it is, forced or not.
 */
export function closeServer(server: Server, options: { force?: boolean } = {}): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    if (options.force) server.closeAllConnections();
  });
}

/** `http://127.0.0.1:8080`, `http://[::1]:8080` or `unix:/path`; empty when not listening. */
export function serverUrl(server: Server | undefined): string {
  const address = server?.address();
  if (address === null || address === undefined) return '';
  if (typeof address === 'string') return `unix:${address}`;
  const { address: host, port, family } = address as AddressInfo;
  return family === 'IPv6' ? `http://[${host}]:${port}` : `http://${host}:${port}`;
}
