#!/usr/bin/env node
// F2 proof: 1 GiB through the real sidecar, each way, with its RSS sampled from /proc.
// R9 row: 250 concurrent 1 MiB uploads that the upstream holds 8 s, with the sidecar's RSS; each would
// keep a T8 replay copy but for limits.replayBudget (`--replay-budget 1GiB` shows it without the bound).
// Usage: npm run bench:memory [-- --size-mib 1024] [-- --smoke] [-- --replay-budget 32MiB]   (needs `npm run build` first)
//        [-- --baseline OTHER/dist/cli.js]: the same run again against another build, printed after this one
//        (`--plain-config` leaves out the settings a build from before limits/connections/timeouts.queue lacks).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSessionTokenServer } from '../dist/demo/session-token-server.js';

const args = process.argv.slice(2);
const smoke = args.includes('--smoke');
const sizeArg = args.indexOf('--size-mib');
const sizeMiB = sizeArg >= 0 ? Number(args[sizeArg + 1]) : smoke ? 64 : 1024;
const LIMIT_MIB = 20;
const total = sizeMiB * 1024 * 1024;
const block = Buffer.alloc(64 * 1024, 0x61);
const cliArg = args.indexOf('--cli');
const cliPath = cliArg >= 0 ? args[cliArg + 1] : new URL('../dist/cli.js', import.meta.url).pathname;
const baselineArg = args.indexOf('--baseline');
const plainConfig = args.includes('--plain-config');
const budgetArg = args.indexOf('--replay-budget');
const replayBudget = budgetArg >= 0 ? args[budgetArg + 1] : '32MiB';
// The R9 row: how many uploads at once, of what size, held how long by the upstream.
const held = smoke
  ? { count: 50, bytes: 1024 * 1024, holdMs: 1_000 }
  : { count: 250, bytes: 1024 * 1024, holdMs: 8_000 };

function rssMiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

/** An upstream that streams `total` bytes down and swallows uploads. */
const upstream = createServer((req, res) => {
  if (req.url === '/held-upload') {
    let size = 0;
    req.on('data', (chunk) => (size += chunk.length));
    req.on('end', () => setTimeout(() => res.end(JSON.stringify({ size })), held.holdMs));
    return;
  }
  if (req.url === '/download') {
    let left = total;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
    const pump = () => {
      while (left > 0) {
        const chunk = left >= block.length ? block : block.subarray(0, left);
        left -= chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    return pump();
  }
  let size = 0;
  req.on('data', (chunk) => (size += chunk.length));
  req.on('end', () => res.end(JSON.stringify({ size })));
});
await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve));

const password = randomBytes(12).toString('hex');
const tokenServer = await startSessionTokenServer({ username: 'bench', password, lifetimeSeconds: 3600 });
const dir = mkdtempSync(join(tmpdir(), 'bs-mem-'));
writeFileSync(join(dir, 'pw'), password, { mode: 0o600 });
writeFileSync(
  join(dir, 'config.yaml'),
  // connections and timeouts.queue let every held upload reach the upstream at once (R10 would queue past 128).
  `listen: { port: 0 }\nadmin: { port: 0 }\nlogLevel: warn\n${plainConfig ? '' : `limits: { replayBudget: ${replayBudget} }\n`}accounts:\n  bench:\n    upstream: http://127.0.0.1:${upstream.address().port}\n    default: true\n${plainConfig ? '' : '    connections: 512\n    timeouts: { queue: 60s }\n'}    auth: { flow: session, loginUrl: ${tokenServer.loginUrl}, refreshUrl: ${tokenServer.refreshUrl}, username: bench, passwordFile: ${join(dir, 'pw')} }\n`,
);
const child = spawn(
  process.execPath,
  [
    ...(process.env.SIDECAR_NODE_FLAGS ? process.env.SIDECAR_NODE_FLAGS.split(' ') : []),
    cliPath,
    '--config',
    join(dir, 'config.yaml'),
    '--log-level',
    'info',
  ],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
const dataUrl = await new Promise((resolve, reject) => {
  let out = '';
  child.stdout.on('data', (chunk) => {
    out += chunk;
    const match = /"msg":"bearer-sidecar listening"/.test(out) && /"data":"([^"]+)"/.exec(out);
    if (match) resolve(match[1]);
  });
  child.on('exit', (code) => reject(new Error(`sidecar exited ${code}`)));
});
child.stdout.resume();

/** Runs one transfer while sampling the sidecar's RSS every 50 ms. */
async function measure(label, transfer) {
  const baseline = rssMiB(child.pid);
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(child.pid))), 50);
  const started = process.hrtime.bigint();
  const bytes = await transfer();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  clearInterval(sampler);
  peak = Math.max(peak, rssMiB(child.pid));
  return { label, bytes, seconds, baseline, peak, growth: peak - baseline };
}

const download = () =>
  new Promise((resolve, reject) => {
    request(`${dataUrl}/download`, (res) => {
      let size = 0;
      res.on('data', (chunk) => (size += chunk.length));
      res.on('end', () => resolve(size));
    })
      .on('error', reject)
      .end();
  });

/** `held.count` uploads of `held.bytes` at once, each on its own connection; resolves with the bytes the upstream saw. */
const heldUploads = () =>
  Promise.all(
    Array.from(
      { length: held.count },
      () =>
        new Promise((resolve, reject) => {
          const body = Buffer.alloc(held.bytes, 0x64);
          const req = request(`${dataUrl}/held-upload`, { method: 'POST', agent: false }, (res) => {
            let text = '';
            res.on('data', (chunk) => (text += chunk));
            res.on('end', () => resolve(res.statusCode === 200 ? JSON.parse(text).size : 0));
          });
          req.on('error', reject);
          req.end(body);
        }),
    ),
  ).then((sizes) => sizes.reduce((sum, size) => sum + size, 0));

const upload = () =>
  new Promise((resolve, reject) => {
    const req = request(`${dataUrl}/upload`, { method: 'POST', headers: { 'content-length': total } }, (res) => {
      let body = '';
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve(JSON.parse(body).size));
    });
    req.on('error', reject);
    let left = total;
    const pump = () => {
      while (left > 0) {
        const chunk = left >= block.length ? block : block.subarray(0, left);
        left -= chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });

// Warm up the path (token, keep-alive pool, JIT) before the first baseline is read.
await fetch(`${dataUrl}/upload`, { method: 'POST', body: 'warm' }).then((r) => r.text());
// Cold: the first stream raises RSS by a fixed step (Buffers awaiting V8's external-memory GC).
// Warm: the same transfer again; growth here would be memory that scales with bytes streamed.
const results = [
  await measure('download, cold', download),
  await measure('upload, cold', upload),
  await measure('download, warm', download),
  await measure('upload, warm', upload),
];
const heldRow = await measure(`${held.count} x 1 MiB held`, heldUploads);

console.log(
  `\nbearer-sidecar stream memory: ${sizeMiB} MiB each way through the real CLI (node ${process.version}): ${cliPath}${plainConfig ? ' (plain config)' : ''}`,
);
// Growth that scales with bytes would lift warm peaks above the plateau the cold transfers reached.
const plateau = Math.max(...results.filter((r) => r.label.endsWith('cold')).map((r) => r.peak));
for (const r of results) if (r.label.endsWith('warm')) r.growth = Math.max(0, r.peak - plateau);
console.log(
  `cold transfers: RSS ${results[0].baseline.toFixed(1)} MiB -> plateau ${plateau.toFixed(1)} MiB (Buffers awaiting V8's external-memory GC); warm growth is measured above that plateau`,
);
console.log('transfer         bytes        seconds  MiB/s   RSS before  RSS peak    growth     target');
for (const r of results) {
  const judged = r.label.endsWith('warm');
  const verdict =
    r.bytes !== total
      ? 'INCOMPLETE'
      : !judged
        ? '(fixed step)'
        : r.growth <= LIMIT_MIB
          ? `ok (<= ${LIMIT_MIB} MiB)`
          : `OVER ${LIMIT_MIB} MiB`;
  console.log(
    `${r.label.padEnd(16)} ${String(r.bytes).padEnd(12)} ${r.seconds.toFixed(2).padStart(7)}  ${(r.bytes / 1048576 / r.seconds).toFixed(0).padStart(5)}   ${r.baseline.toFixed(1).padStart(7)} MiB ${r.peak.toFixed(1).padStart(6)} MiB ${r.growth.toFixed(1).padStart(6)} MiB  ${verdict}`,
  );
}

console.log(
  `\n${held.count} concurrent ${held.bytes / 1048576} MiB uploads, each answered ${held.holdMs / 1000} s after its body arrived (${plainConfig ? 'a build without limits.replayBudget' : `limits.replayBudget ${replayBudget}`}):`,
);
console.log(
  `RSS ${heldRow.baseline.toFixed(1)} MiB -> peak ${heldRow.peak.toFixed(1)} MiB (+${heldRow.growth.toFixed(1)} MiB) in ${heldRow.seconds.toFixed(1)} s; ${heldRow.bytes === held.count * held.bytes ? 'every upload reached the upstream whole' : `INCOMPLETE: ${heldRow.bytes} bytes`}`,
);

child.kill('SIGTERM');
await new Promise((resolve) => child.on('exit', resolve));
await tokenServer.close();
upstream.close();
rmSync(dir, { recursive: true, force: true });
if (results.some((r) => r.bytes !== total) || heldRow.bytes !== held.count * held.bytes) {
  console.error('a transfer was incomplete');
  process.exit(1);
}

if (baselineArg >= 0) {
  // The same measurement against another build, in the same invocation (before/after on one machine state).
  const rest = args.filter((arg, index) => index !== baselineArg && index !== baselineArg + 1);
  const script = new URL(import.meta.url).pathname;
  const run = spawnSync(process.execPath, [script, ...rest, '--cli', args[baselineArg + 1], '--plain-config'], {
    stdio: 'inherit',
  });
  process.exitCode = run.status ?? 1;
}
