#!/usr/bin/env node
// npm run bench [-- --smoke] [-- --passes N] [-- --duration S] [-- --only WORD] [-- --baseline OTHER/dist/cli.js] [-- --floor]
//                [-- --peers] [-- --node-options "FLAGS"]   (--help: the options)
// Direct vs through the real built sidecar, interleaved, in one run. Load generator and upstream
// share core 0, the sidecar has core 1 (taskset when available). A benchmark, not a test.
// --baseline adds a second sidecar (another build, e.g. a worktree of main) measured in the same
// passes: the before/after of an optimisation, in one run.
// Every Node proxy (sidecar, baseline, floor) runs with the container image's Node flags (the
// Dockerfile's ENTRYPOINT), the goals being for the sidecar as shipped; --node-options replaces them
// (--node-options "" for Node's defaults, or "--cpu-prof ..." to profile).
// --floor adds bench/floor-proxy.mjs (a bare node:http + undici proxy, with the same Node flags) as
// one more side: the RSS and speed Node itself has under this load, without the sidecar's code.
// --peers adds nginx and HAProxy (bench/peers.mjs; Debian packages, installed when missing) as
// reference rows: the same upstream and load, a static Authorization header added by each.
// The run prints every pass, each row's spread, and each goal with its verdict (bench/report.mjs).
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { ensurePeersInstalled, startPeers } from './peers.mjs';
import { cpuSeconds, hasTaskset, onLoadCore, startOnProxyCore, startProcess } from './processes.mjs';
import { print } from './report.mjs';
import { steadyLoad } from './steady-load.mjs';

const args = process.argv.slice(2);
const HELP = `npm run bench -- [options]   (or: node bench/run.mjs [options] after npm run build)
  --smoke               one short pass (CI's check that the bench runs)
  --passes N            interleaved passes per scenario (default 3)
  --duration S          seconds per side and pass (default 5)
  --warmup S            unmeasured seconds per side before each scenario (default 2; 0 in --smoke)
  --only WORD[,WORD]    only the scenarios whose names contain a word (small, 64, upload, 1000; expiry: the expired-token burst)
  --baseline CLI        another build's dist/cli.js, measured in the same passes (before/after)
  --dpop                a second sidecar with a DPoP account (oauth2, dpop: {}) on the same upstream and load;
                        its goal: small GET >= 0.9x of the bearer account
  --floor               a bare node:http + undici proxy: Node's own floor, the yardstick of the goals
  --peers               nginx and HAProxy adding a static header (installed with apt-get when missing)
  --node-options FLAGS  V8/Node flags for the sidecar, the baseline and the floor (default: the container
                        image's, from the Dockerfile's ENTRYPOINT; --node-options "" for Node's defaults)
  --trace-gc            adds V8's --trace-gc to those flags and prints each Node side's full (mark-compact)
                        collections per pass: a pass in V8's slow mode shows as many of them
Results: a table of medians, every pass with the spread (min-median-max; over 25% is noisy), the
goals with their verdicts, and a JSON file under bench/results/.`;
if (args.includes('--help') || args.includes('-h')) {
  console.log(HELP);
  process.exit(0);
}
const smoke = args.includes('--smoke');
/** The word after `--name`, or undefined when the option is not given. */
const argument = (name) => {
  const index = args.indexOf(`--${name}`);
  return index >= 0 ? args[index + 1] : undefined;
};
const passes = Number(argument('passes') ?? (smoke ? 1 : 3));
const duration = Number(argument('duration') ?? (smoke ? 1 : 5));
/** Seconds of unmeasured load per side before each scenario's passes (`--warmup 0`: none). */
const warmupSeconds = Number(argument('warmup') ?? (smoke ? 0 : 2));
/** `--only upload` (or `--only small,upload`) runs the scenarios whose names contain a word (focused before/after runs). */
const only = argument('only')?.split(',');
const baselineCli = argument('baseline');
/**
 * The Node flags the container image starts the sidecar with (the Dockerfile's ENTRYPOINT): the
 * bench's default, since its goals are for the sidecar as shipped.
 */
function imageNodeFlags() {
  const dockerfile = readFileSync(fileURLToPath(new URL('../Dockerfile', import.meta.url)), 'utf8');
  const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1];
  if (entrypoint === undefined) throw new Error('no ENTRYPOINT ["node", ...] in the Dockerfile');
  return JSON.parse(entrypoint).filter((part) => part.startsWith('--'));
}
const traceGc = args.includes('--trace-gc');
const nodeFlags = [
  ...(argument('node-options') ?? imageNodeFlags().join(' ')).split(' ').filter(Boolean),
  ...(traceGc ? ['--trace-gc'] : []),
];
const withFloor = args.includes('--floor');
const withDpop = args.includes('--dpop');
const withPeers = args.includes('--peers');
const root = fileURLToPath(new URL('..', import.meta.url));
/** Any program on the proxy's core (the peers of --peers); killed with the bench. */
function startCommandOnProxyCore(command, argv) {
  return hasTaskset ? startProcess('taskset', ['-c', '1', command, ...argv]).child : startProcess(command, argv).child;
}

function rssMiB(pid) {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
}

async function startSidecar(dir, name, world, refresh, cliPath = join(root, 'dist/cli.js'), flags = []) {
  writeFileSync(join(dir, 'pw'), world.password, { mode: 0o600 });
  const config = join(dir, `${name}.yaml`);
  writeFileSync(
    config,
    `listen: { port: 0 }\nadmin: { port: 0 }\nlogLevel: info\naccounts:\n  bench:\n    upstream: ${world.upstream}\n    default: true\n    refresh: ${refresh}\n    auth: { flow: session, loginUrl: ${world.loginUrl}, refreshUrl: ${world.refreshUrl}, username: bench, passwordFile: ${join(dir, 'pw')} }\n`,
  );
  const cli = [...flags, cliPath, '--config', config];
  const proc = startOnProxyCore(cli);
  const line = await proc.firstLine((entry) => entry.msg === 'bearer-sidecar listening');
  await proc.firstLine((entry) => entry.msg === 'token request: login succeeded');
  return { child: proc.child, proc, data: line.data, admin: line.admin };
}

/** E4 (--dpop): a sidecar whose account proves possession of its key on every request (ES256 key made at start). */
async function startDpopSidecar(dir, world, flags) {
  const config = join(dir, 'dpop.yaml');
  writeFileSync(
    config,
    `listen: { port: 0 }\nadmin: { port: 0 }\nlogLevel: info\naccounts:\n  bench:\n    upstream: ${world.upstream}\n    default: true\n    refresh: { minInterval: 5s }\n    auth: { flow: oauth2, tokenUrl: ${world.control}/oauth/token, clientId: bench, clientSecret: bench-secret, dpop: {} }\n`,
  );
  const proc = startOnProxyCore([...flags, join(root, 'dist/cli.js'), '--config', config]);
  const line = await proc.firstLine((entry) => entry.msg === 'bearer-sidecar listening');
  await proc.firstLine((entry) => entry.msg === 'token request: login succeeded');
  return { child: proc.child, proc, data: line.data };
}

/** The bare proxy of --floor, on the sidecar's core and with its Node flags. */
async function startFloorProxy(world, flags) {
  const proc = startOnProxyCore([...flags, join(root, 'bench/floor-proxy.mjs')], { UPSTREAM: world.upstream });
  const line = await proc.firstLine((entry) => entry.floor !== undefined);
  return { child: proc.child, proc, data: line.floor };
}

async function startWorld(lifetime) {
  const password = randomBytes(12).toString('hex');
  const proc = startProcess(process.execPath, [join(root, 'bench/upstream.mjs')], {
    BENCH_TOKEN_LIFETIME: String(lifetime),
    BENCH_PASSWORD: password,
  });
  const ready = await proc.firstLine((entry) => entry.upstream !== undefined);
  return { ...ready, password, child: proc.child };
}

function cannon(opts) {
  return new Promise((resolve, reject) => {
    autocannon({ connections: 50, duration, ...opts }, (error, result) => (error ? reject(error) : resolve(result)));
  });
}

/** One side of one pass: rps and latency (ms), from autocannon or the steady-rate generator. */
async function measure(scenario, url, seconds = duration) {
  if (scenario.steadyRate !== undefined) {
    const result = await steadyLoad({ url, rate: scenario.steadyRate, durationSeconds: seconds });
    return { ...result, p50: round2(result.p50), p99: round2(result.p99) };
  }
  const result = await cannon({ url, duration: seconds, ...scenario.opts });
  return {
    rps: result.requests.average,
    total: result.requests.total,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
  };
}

const round2 = (value) => Math.round(value * 100) / 100;

const SCENARIOS = [
  { name: 'small GET (100 B)', path: '/small', opts: {} },
  { name: '64 KiB GET', path: '/big', opts: {} },
  {
    name: '1 MiB upload',
    path: '/upload',
    opts: { method: 'POST', body: Buffer.alloc(1024 * 1024, 0x75), connections: 10 },
  },
  // Open loop at an even 1000 rps (see steady-load.mjs for why not autocannon's overallRate).
  { name: 'small GET at 1000 rps', path: '/small', steadyRate: 1000, latencyOnly: true },
];

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'bs-bench-'));
  const world = await startWorld(3600);
  const sidecar = await startSidecar(dir, 'main', world, '{ minInterval: 5s }', undefined, nodeFlags);
  const bases = { direct: world.upstream, sidecar: sidecar.data };
  /** The processes whose RSS is sampled while their side is under load. */
  const pids = { sidecar: sidecar.child.pid };
  /** The Node sides' processes, whose --trace-gc lines are counted (--trace-gc). */
  const procs = { sidecar: sidecar.proc };
  const cleanup = [
    () => world.child.kill('SIGTERM'),
    () => sidecar.child.kill('SIGTERM'),
    () => rmSync(dir, { recursive: true, force: true }),
  ];
  if (baselineCli !== undefined) {
    // Another build, measured against the same direct runs (before/after tables).
    const baseline = await startSidecar(dir, 'baseline', world, '{ minInterval: 5s }', baselineCli, nodeFlags);
    bases.baseline = baseline.data;
    pids.baseline = baseline.child.pid;
    procs.baseline = baseline.proc;
    cleanup.push(() => baseline.child.kill('SIGTERM'));
  }
  if (withDpop) {
    const dpop = await startDpopSidecar(dir, world, nodeFlags);
    bases.dpop = dpop.data;
    pids.dpop = dpop.child.pid;
    procs.dpop = dpop.proc;
    cleanup.push(() => dpop.child.kill('SIGTERM'));
  }
  if (withFloor) {
    const floor = await startFloorProxy(world, nodeFlags);
    bases.floor = floor.data;
    pids.floor = floor.child.pid;
    procs.floor = floor.proc;
    cleanup.push(() => floor.child.kill('SIGTERM'));
  }
  if (withPeers) {
    ensurePeersInstalled();
    const peers = await startPeers(world.upstream, dir, startCommandOnProxyCore);
    for (const [name, peer] of Object.entries(peers)) {
      bases[name] = peer.data;
      pids[name] = peer.pid;
      cleanup.push(peer.stop);
    }
  }
  const sides = Object.keys(bases);
  /** The sides whose pid is the one Node process doing the work (CPU per request is read for these). */
  const nodeSides = new Set(['sidecar', 'baseline', 'floor', 'dpop']);
  const extraSides = sides.filter((side) => side !== 'direct' && side !== 'sidecar');
  try {
    const rows = [];
    for (const scenario of SCENARIOS.filter(
      (candidate) => only === undefined || only.some((word) => candidate.name.includes(word)),
    )) {
      const samples = Object.fromEntries(sides.map((side) => [side, []]));
      const rowRss = Object.fromEntries(Object.keys(pids).map((side) => [side, 0]));
      // Warm-up, not measured: each side's first pass used to be its slowest (V8 compiling the
      // hot path, pools filling), which read as 30-50% spread between passes.
      if (warmupSeconds > 0)
        for (const side of sides) await measure(scenario, `${bases[side]}${scenario.path}`, warmupSeconds);
      for (let pass = 0; pass < passes; pass++) {
        // Interleaved, and the order turns every pass, so drift hits every side alike.
        const turn = pass % sides.length;
        const order = [...sides.slice(turn), ...sides.slice(0, turn)];
        for (const side of order) {
          const base = bases[side];
          const pid = pids[side];
          const sampler =
            pid === undefined
              ? undefined
              : setInterval(() => (rowRss[side] = Math.max(rowRss[side], rssMiB(pid))), 100);
          const cpuBefore = pid === undefined ? undefined : cpuSeconds(pid);
          const gcsBefore = procs[side]?.fullGcs;
          const sample = await measure(scenario, `${base}${scenario.path}`);
          const fullGcs = traceGc && gcsBefore !== undefined ? procs[side].fullGcs - gcsBefore : undefined;
          if (sampler) clearInterval(sampler);
          // Node sides only: a peer's pid is its master process, not the worker doing the work.
          const cpuUsPerRequest =
            cpuBefore === undefined || !nodeSides.has(side) || !(sample.total > 0)
              ? undefined
              : Math.round(((cpuSeconds(pid) - cpuBefore) * 1e6) / sample.total);
          if (sample.non2xx > 0 || sample.errors > 0)
            throw new Error(`${scenario.name} via ${side}: ${sample.non2xx} non-2xx, ${sample.errors} errors`);
          samples[side].push({ rps: sample.rps, p50: sample.p50, p99: sample.p99, cpuUsPerRequest, fullGcs });
        }
      }
      const pick = (side, key) => median(samples[side].map((sample) => sample[key]));
      const summary = (side) => ({ rps: pick(side, 'rps'), p50: pick(side, 'p50'), p99: pick(side, 'p99') });
      rows.push({
        scenario: scenario.name,
        latencyOnly: scenario.latencyOnly === true,
        direct: summary('direct'),
        sidecar: summary('sidecar'),
        ratio: pick('sidecar', 'rps') / pick('direct', 'rps'),
        addedP99: round2(pick('sidecar', 'p99') - pick('direct', 'p99')),
        // The other proxies measured in the same passes (--baseline, --floor), keyed by side.
        ...Object.fromEntries(
          extraSides.flatMap((side) => [
            [side, summary(side)],
            [`${side}Ratio`, pick(side, 'rps') / pick('direct', 'rps')],
            [`${side}AddedP99`, round2(pick(side, 'p99') - pick('direct', 'p99'))],
          ]),
        ),
        rssPeakMiB: rowRss,
        passes: samples,
      });
    }
    const expiry =
      only === undefined || only.includes('expiry') ? await expiryScenario(dir, smoke ? 200 : 1000) : undefined;
    const report = {
      date: new Date().toISOString(),
      smoke,
      machine: { cores: cpus().length, model: cpus()[0]?.model, node: process.version, pinned: hasTaskset },
      baseline: baselineCli,
      extraSides,
      nodeOptions: nodeFlags.join(' '),
      passes,
      durationSeconds: duration,
      connections: 50,
      rows,
      // The whole run's peak per side: the largest of its scenarios'.
      rssPeakMiB: Object.fromEntries(
        Object.keys(pids).map((side) => [side, Math.max(0, ...rows.map((row) => row.rssPeakMiB[side]))]),
      ),
      expiry,
    };
    print(report);
    mkdirSync(join(root, 'bench/results'), { recursive: true });
    const file = join(root, 'bench/results', `${report.date.replace(/[:.]/g, '-')}${smoke ? '-smoke' : ''}.json`);
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`\nresults: ${file}`);
  } finally {
    for (const step of cleanup) step();
  }
}

/**
 * `concurrency` requests at once on new connections (as the expiry scenario sends them), each
 * resolving with its status; `finished` gets each one's end time (performance.now()).
 */
function burst(url, concurrency, finished) {
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  return Array.from(
    { length: concurrency },
    () =>
      new Promise((resolve, reject) => {
        request(url, { agent }, (res) => {
          res.resume();
          res.on('end', () => {
            finished.push(performance.now());
            resolve(res.statusCode);
          });
        })
          .on('error', reject)
          .end();
      }),
  );
}

/** Milliseconds from `start` until the last of a burst's requests ended (all sent at `start`). */
async function burstMs(url, concurrency) {
  const finished = [];
  const start = performance.now();
  const statuses = await Promise.all(burst(url, concurrency, finished));
  const refused = statuses.filter((status) => status !== 200);
  if (refused.length > 0)
    throw new Error(`${refused.length} of ${concurrency} answers to ${url} were not 200: ${refused[0]}`);
  return Math.max(...finished) - start;
}

/**
 * 1000 concurrent requests meet an expired token while its refresh is held: one token request,
 * then all go. For scale, the same burst is first sent directly to the upstream and through the
 * sidecar holding a valid token (the last answer's time from sending): what answering 1000 new
 * connections costs on this machine, token wait or not.
 */
async function expiryScenario(dir, concurrency) {
  const world = await startWorld(6);
  const sidecar = await startSidecar(dir, 'expiry', world, '{ minInterval: 1s, timeout: 60s, waitForToken: 60s }');
  try {
    // Warm both paths once, then the reference bursts.
    await burstMs(`${world.upstream}/small`, concurrency);
    await burstMs(`${sidecar.data}/small`, concurrency);
    const directBurstMs = await burstMs(`${world.upstream}/small`, concurrency);
    const validTokenBurstMs = await burstMs(`${sidecar.data}/small`, concurrency);
    await fetch(`${world.control}/__control/stall-refresh?on=1`, { method: 'POST' });
    // Wait (polling /status) until the held refresh has let the token expire.
    for (;;) {
      const status = await (await fetch(`${sidecar.admin}/status`)).json();
      const { expiresAt } = status.accounts.bench;
      if (expiresAt !== null && Date.parse(expiresAt) < Date.parse(status.now)) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const before = (await (await fetch(`${world.control}/__control/stats`)).json()).requests;
    const finished = [];
    const requests = burst(`${sidecar.data}/small`, concurrency, finished);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const status = await (await fetch(`${sidecar.admin}/status`)).json();
      if (status.accounts.bench.requestsWaitingForToken >= concurrency) break;
      if (Date.now() > deadline)
        throw new Error(
          `only ${status.accounts.bench.requestsWaitingForToken} of ${concurrency} requests are waiting; ${finished.length} finished`,
        );
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const released = performance.now();
    await fetch(`${world.control}/__control/stall-refresh?on=0`, { method: 'POST' });
    const statuses = await Promise.all(requests);
    const after = (await (await fetch(`${world.control}/__control/stats`)).json()).requests;
    const waits = finished.map((time) => time - released).sort((a, b) => a - b);
    return {
      concurrency,
      tokenRequestsDuringExpiry: after - before,
      all200: statuses.every((status) => status === 200),
      afterReleaseMs: { p50: waits[Math.floor(waits.length / 2)], max: waits.at(-1) },
      directBurstMs,
      validTokenBurstMs,
    };
  } finally {
    sidecar.child.kill('SIGTERM');
    world.child.kill('SIGTERM');
  }
}

// Pin this process (load generator) and the upstream to core 0; the sidecar gets core 1.
await onLoadCore(import.meta.url, args, main);
