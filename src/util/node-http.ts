import { createRequire } from 'node:module';

/*
 * node:http for the sidecar's modules, loaded with require() rather than `import ... from 'node:http'`.
 * An ES import of a built-in module builds a facade that reads every export once, and from Node 22
 * node:http's exports include lazy `WebSocket`, `CloseEvent` and `MessageEvent` getters: reading
 * them loads Node's own bundled undici (fetch, WebSocket and a second llhttp), which the sidecar
 * never uses: about 1 MiB of heap and 1 MiB outside it on Node 24 (docs/performance.md "Memory";
 * test/e2e/lazy-modules.test.ts fails if it is loaded again). Types still come from `import type`.
 */
const http = createRequire(import.meta.url)('node:http') as typeof import('node:http');

/** node:http's `createServer` (a server of `IncomingMessage` / `ServerResponse`). */
export const createServer = http.createServer;
/** node:http's `request`: a client request, ended by the caller. */
export const request = http.request;
/** node:http's reason phrases by status code (`STATUS_CODES[404]` is `Not Found`). */
export const STATUS_CODES = http.STATUS_CODES;
/** node:http's `ServerResponse` class (raw-socket.ts builds one on an upgraded socket). */
export const ServerResponse = http.ServerResponse;
/** The instance type of `ServerResponse`, so the name serves as a type as with node:http. */
export type ServerResponse = import('node:http').ServerResponse;
