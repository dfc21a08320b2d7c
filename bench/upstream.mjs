#!/usr/bin/env node
// The benchmark's upstream and token server, in their own process (pinned beside the load generator).
// Prints one JSON line { upstream, tokenUrl } when ready. Control: POST /__control/stall-refresh?on=1|0
import { createServer } from 'node:http';
import { startSessionTokenServer } from '../dist/demo/session-token-server.js';

const lifetime = Number(process.env.BENCH_TOKEN_LIFETIME ?? 3600);
const password = process.env.BENCH_PASSWORD ?? 'bench';
const small = Buffer.from(JSON.stringify({ ok: true, items: [1, 2, 3], note: 'x'.repeat(50) }));
const big = Buffer.alloc(64 * 1024, 0x62);
const streamBlock = Buffer.alloc(64 * 1024, 0x63);

const tokenServer = await startSessionTokenServer({ username: 'bench', password, lifetimeSeconds: lifetime });
// A front for the token server that can hold refreshes (the "1000 requests at token expiry" scenario).
let stallRefresh = false;
const held = [];
const tokenFront = createServer((req, res) => {
  if (req.url?.startsWith('/__control/stall-refresh')) {
    stallRefresh = req.url.endsWith('on=1');
    if (!stallRefresh) for (const release of held.splice(0)) release();
    res.end(JSON.stringify({ stallRefresh, requests: tokenServer.stats.requests }));
    return;
  }
  if (req.url === '/__control/stats') return void res.end(JSON.stringify(tokenServer.stats));
  if (req.url === '/oauth/token') {
    // E4: the DPoP account's token endpoint (--dpop): a DPoP token when the request carried a proof.
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          access_token: `dpop-${Math.random().toString(36).slice(2)}`,
          token_type: req.headers.dpop === undefined ? 'Bearer' : 'DPoP',
          expires_in: lifetime,
        }),
      );
    });
    return;
  }
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const forward = () => {
      const upstream = new URL(req.url, tokenServer.url);
      fetch(upstream, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.concat(chunks) })
        .then(async (answer) => {
          res.writeHead(answer.status, {
            'content-type': 'application/json',
            date: answer.headers.get('date') ?? new Date().toUTCString(),
          });
          res.end(await answer.text());
        })
        .catch(() => res.destroy());
    };
    if (stallRefresh && req.url?.includes('refresh')) held.push(forward);
    else forward();
  });
});
await new Promise((resolve) => tokenFront.listen(0, '127.0.0.1', resolve));

const upstream = createServer((req, res) => {
  if (req.url === '/small') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': small.length });
    return void res.end(small);
  }
  if (req.url === '/big') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': big.length });
    return void res.end(big);
  }
  if (req.url === '/upload') {
    let size = 0;
    req.on('data', (chunk) => (size += chunk.length));
    req.on('end', () => res.end(JSON.stringify({ size })));
    return;
  }
  if (req.url === '/sse') {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let n = 0;
    const timer = setInterval(() => {
      res.write(`data: ${n++}\n\n`);
      if (n === 10) {
        clearInterval(timer);
        res.end();
      }
    }, 10);
    return;
  }
  if (req.url === '/stream') {
    let left = 1024 * 1024 * 1024;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': left });
    const pump = () => {
      while (left > 0) {
        left -= streamBlock.length;
        if (!res.write(streamBlock)) return void res.once('drain', pump);
      }
      res.end();
    };
    return pump();
  }
  res.writeHead(404).end();
});
upstream.keepAliveTimeout = 65_000;
await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${tokenFront.address().port}`;
process.stdout.write(
  `${JSON.stringify({ upstream: `http://127.0.0.1:${upstream.address().port}`, loginUrl: `${base}/auth/login`, refreshUrl: `${base}/auth/refresh`, control: base })}\n`,
);
process.on('SIGTERM', () => process.exit(0));
