// The smallest Node proxy that could stand where the sidecar stands: a node:http server and an
// undici Pool with a fixed Authorization header; no config, token manager, metrics, logs, admin
// server or error handling beyond a bare 502. `npm run bench -- --floor` measures it beside the
// sidecar, with the same Node flags: its RSS is what Node itself needs under the bench's load,
// the floor under any Node implementation of the sidecar (docs/performance.md "Memory").
// Usage: UPSTREAM=http://127.0.0.1:PORT node bench/floor-proxy.mjs  (prints {"floor":"http://..."})
import { createServer } from 'node:http';
import { createRequire } from 'node:module';

// undici's Pool alone, loaded as the sidecar loads it (src/proxy/transport.ts): all of `undici`
// would add some 3 MiB of heap the floor does not need.
const Pool = createRequire(import.meta.url)('undici/lib/dispatcher/pool.js');

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-connection',
  'host',
]);
const pool = new Pool(process.env.UPSTREAM, { connections: 256, keepAliveTimeout: 4_000 });
const authorization = `Bearer ${process.env.FLOOR_TOKEN ?? 'floor'}`;

const server = createServer((req, res) => {
  const headers = { authorization };
  for (const [name, value] of Object.entries(req.headers))
    if (!HOP_BY_HOP.has(name) && value !== undefined) headers[name] = value;
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  // The Pool alone has dispatch() only (request() and stream() are mixed in by undici's index).
  pool.dispatch(
    { method: req.method, path: req.url, headers, body: hasBody ? req : null },
    {
      onRequestStart() {},
      onResponseStart(_controller, statusCode, answer) {
        if (statusCode < 200) return;
        for (const name of ['connection', 'keep-alive', 'transfer-encoding']) delete answer[name];
        res.writeHead(statusCode, answer);
      },
      onResponseData(controller, chunk) {
        if (res.write(chunk)) return;
        controller.pause();
        res.once('drain', () => controller.resume());
      },
      onResponseEnd() {
        res.end();
      },
      onResponseError() {
        if (!res.headersSent) res.statusCode = 502;
        res.end();
      },
    },
  );
});
server.listen(0, '127.0.0.1', () =>
  console.log(JSON.stringify({ floor: `http://127.0.0.1:${server.address().port}` })),
);
// Exit normally on the bench's SIGTERM, so that --cpu-prof and similar flags write their files.
process.on('SIGTERM', () => process.exit(0));
