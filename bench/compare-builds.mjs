#!/usr/bin/env node
// Several builds of the sidecar (and the floor proxy) under the same small-GET load, in one run,
// passes interleaved: which commit made the hot path slower, or what one part of it costs (a
// build with that part taken out). Each side's rps and CPU per request, and both against the floor.
//
// Usage: node bench/compare-builds.mjs [--passes N] [--duration S] NAME=PATH/dist/cli.js ... [floor]
// A build of another commit: git worktree add /tmp/b-X X && ln -s "$PWD/node_modules" /tmp/b-X/
//   && (cd /tmp/b-X && npx tsc -p tsconfig.build.json)
// Proxies run on core 1 and the load generator and upstream on core 0 (taskset, when present),
// with the image's Node flags, as in bench/run.mjs. On a shared machine give it many passes: the
// medians are what to read, and a difference under the passes' spread says nothing (docs/performance.md, "Latest").
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { cpuSeconds, onLoadCore, startOnProxyCore, startProcess } from './processes.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  if (at === -1) return fallback;
  const value = Number(args.splice(at, 2)[1]);
  if (!Number.isInteger(value) || value < 1) {
    console.error(`--${name} takes a whole number of at least 1`);
    process.exit(2);
  }
  return value;
};
const passes = option('passes', 7);
const seconds = option('duration', 4);
if (args.length === 0) {
  console.error('usage: node bench/compare-builds.mjs [--passes N] [--duration S] NAME=PATH/dist/cli.js ... [floor]');
  process.exit(2);
}
const NODE_FLAGS = ['--max-semi-space-size=4', '--liftoff-only'];
let dir;
// However it ends (a failed side throws): the directory with the password file goes.
process.on('exit', () => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

async function main() {
  dir = mkdtempSync(join(tmpdir(), 'bs-compare-'));
  const password = `pw-${process.pid}-${Date.now()}`;
  const world = startProcess(process.execPath, [join(root, 'bench/upstream.mjs')], { BENCH_PASSWORD: password });
  const { upstream, loginUrl, refreshUrl } = await world.firstLine((entry) => entry.upstream !== undefined);
  writeFileSync(join(dir, 'pw'), password, { mode: 0o600 });
  writeFileSync(
    join(dir, 'config.yaml'),
    `listen: { port: 0 }\nadmin: { port: 0 }\nlogLevel: info\naccounts:\n  bench:\n    upstream: ${upstream}\n    default: true\n    auth: { flow: session, loginUrl: ${loginUrl}, refreshUrl: ${refreshUrl}, username: bench, passwordFile: ${join(dir, 'pw')} }\n`,
  );

  const sides = [];
  for (const side of args) {
    if (side === 'floor') {
      const proc = startOnProxyCore([...NODE_FLAGS, join(root, 'bench/floor-proxy.mjs')], { UPSTREAM: upstream });
      sides.push({ name: 'floor', proc, url: (await proc.firstLine((entry) => entry.floor !== undefined)).floor });
      continue;
    }
    const [name, cli] = side.split('=');
    const proc = startOnProxyCore([...NODE_FLAGS, cli, '--config', join(dir, 'config.yaml')]);
    const { data } = await proc.firstLine((entry) => entry.msg === 'bearer-sidecar listening');
    await proc.firstLine((entry) => entry.msg === 'token request: login succeeded');
    sides.push({ name, proc, url: data });
  }

  const load = (url, duration) =>
    new Promise((resolve, reject) =>
      autocannon({ url: `${url}/small`, connections: 50, duration }, (error, result) =>
        error ? reject(error) : resolve(result),
      ),
    );
  for (const side of sides) {
    await load(side.url, 2);
    side.rps = [];
    side.cpuUs = [];
  }
  // Interleaved, every other pass in reverse order: a side is not always measured right after the same one.
  for (let pass = 0; pass < passes; pass++) {
    for (const side of pass % 2 === 0 ? sides : [...sides].reverse()) {
      const before = cpuSeconds(side.proc.child.pid);
      const result = await load(side.url, seconds);
      if (result.non2xx > 0 || result.errors > 0)
        throw new Error(`${side.name}: ${result.non2xx} non-2xx, ${result.errors} errors`);
      side.rps.push(result.requests.average);
      side.cpuUs.push(((cpuSeconds(side.proc.child.pid) - before) / result.requests.total) * 1e6);
    }
  }

  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const floor = sides.find((side) => side.name === 'floor');
  console.log(
    `${passes} interleaved passes of ${seconds} s, small GET, 50 connections; node ${process.version}; medians`,
  );
  console.log(
    `${'side'.padEnd(14)}${'rps'.padStart(7)}${'CPU µs/req'.padStart(12)}${floor ? '  rps / floor  floor CPU / CPU' : ''}`,
  );
  for (const side of sides) {
    const rps = median(side.rps);
    const cpu = median(side.cpuUs);
    const againstFloor = floor
      ? `${(rps / median(floor.rps)).toFixed(3).padStart(13)}${(median(floor.cpuUs) / cpu).toFixed(3).padStart(16)}`
      : '';
    console.log(
      `${side.name.padEnd(14)}${Math.round(rps).toString().padStart(7)}${cpu.toFixed(1).padStart(12)}${againstFloor}`,
    );
    console.log(`${''.padEnd(14)}passes (rps): ${side.rps.map((value) => Math.round(value)).join(' ')}`);
  }
  process.exit(0);
}

// The load generator (this process) and the upstream on core 0, the proxies on core 1.
await onLoadCore(import.meta.url, process.argv.slice(2), main);
