// The image's runtime stage without a Docker engine: package.json + `npm ci --omit=dev` + dist/
// in a fresh directory, started the way the image starts it (node, the Node flags of the
// Dockerfile's ENTRYPOINT, dist/cli.js --config FILE; as uid 10001 when this runs as root, in a
// root-owned directory it cannot write to), with the config
// the chart renders (its URLs pointed at a local token server and upstream, its secret files at
// placeholders, its store a file store in a directory owned by that user as in the image). It must
// answer /healthz, turn ready with a token, forward with the token, write its state file 0600,
// and exit 0 on SIGTERM. Everything listens on 127.0.0.1 only.
//   node helm/ci/smoke.mjs RENDERED_CHART.yaml
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse as parseYaml, stringify } from 'yaml';
import { failIfProblems, readManifests, repoRoot } from './lib.mjs';

const IMAGE_UID = 10001;
/** The flags between "node" and the CLI in the Dockerfile's exec-form ENTRYPOINT (so they are checked to start). */
const IMAGE_NODE_FLAGS = (() => {
  const line = readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8').match(/^ENTRYPOINT\s+(\[.*\])\s*$/m);
  const argv = line ? JSON.parse(line[1]) : [];
  return argv.slice(1).filter((arg) => arg.startsWith('--'));
})();
const [rendered] = process.argv.slice(2);
const configMap = readManifests(rendered).find((object) => object.kind === 'ConfigMap' && object.data?.['config.yaml']);
if (!configMap) failIfProblems('smoke', [`${rendered} holds no ConfigMap with config.yaml`]);

const dir = mkdtempSync(path.join(tmpdir(), 'bearer-sidecar-smoke-'));
const servers = [];
let child;
try {
  await run();
} finally {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  for (const server of servers) server.close();
  rmSync(dir, { recursive: true, force: true });
}

async function run() {
  chmodSync(dir, 0o755);
  const app = path.join(dir, 'app');
  mkdirSync(app);
  for (const file of ['package.json', 'package-lock.json'])
    copyFileSync(path.join(repoRoot, file), path.join(app, file));
  execFileSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd: app,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  cpSync(path.join(repoRoot, 'dist'), path.join(app, 'dist'), { recursive: true });
  const devOnly = Object.keys(
    JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).devDependencies ?? {},
  );
  console.log(`    runtime stage: production dependencies only (${devOnly.length} dev dependencies left out)`);

  // A token endpoint that speaks both dialects, and an upstream that reports the Authorization it got.
  let tokensIssued = 0;
  const tokenServer = await listen((req, res) => {
    req.resume();
    req.on('end', () => {
      tokensIssued += 1;
      const token = `smoke-token-${tokensIssued}`;
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          access_token: token,
          token_type: 'Bearer',
          expires_in: 3600,
          success: true,
          token,
          tokenLifetime: 3600,
          refreshToken: `r${tokensIssued}`,
        }),
      );
    });
  });
  const upstream = await listen((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ authorization: req.headers.authorization ?? null, path: req.url }));
  });
  const tokenUrl = `http://127.0.0.1:${tokenServer.address().port}/token`;
  const upstreamUrl = `http://127.0.0.1:${upstream.address().port}`;

  const config = parseYaml(configMap.data['config.yaml']);
  const secrets = path.join(dir, 'secrets');
  mkdirSync(secrets, { mode: 0o755 });
  const [dataPort, adminPort] = [await freePort(), await freePort()];
  config.listen = { host: '127.0.0.1', port: dataPort };
  config.admin = { host: '127.0.0.1', port: adminPort };
  // The file store, laid out as in the image: a state directory owned by the image's user, 0700.
  const stateDir = path.join(dir, 'state');
  mkdirSync(stateDir, { mode: 0o700 });
  const asRoot = process.getuid?.() === 0;
  if (asRoot) chownSync(stateDir, IMAGE_UID, IMAGE_UID);
  const stateFile = path.join(stateDir, 'state.json');
  config.store = { type: 'file', path: stateFile };
  for (const account of Object.values(config.accounts)) {
    account.upstream = upstreamUrl;
    for (const key of ['tokenUrl', 'loginUrl', 'refreshUrl']) if (key in account.auth) account.auth[key] = tokenUrl;
    for (const [key, value] of Object.entries(account.auth)) {
      if (key.endsWith('File') && typeof value === 'string') {
        const file = path.join(secrets, `${key}-${Math.random().toString(36).slice(2)}`);
        writeFileSync(file, 'placeholder\n', { mode: 0o444 });
        account.auth[key] = file;
      }
    }
  }
  const configFile = path.join(dir, 'config.yaml');
  writeFileSync(configFile, stringify(config), { mode: 0o444 });
  const env = { PATH: process.env.PATH, NODE_ENV: 'production' };
  for (const [, name] of configMap.data['config.yaml'].matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g))
    env[name] = `placeholder-${name.toLowerCase()}`;

  const nodeArgs = [...IMAGE_NODE_FLAGS, 'dist/cli.js', '--config', configFile];
  const [command, args] = asRoot
    ? ['setpriv', [`--reuid=${IMAGE_UID}`, `--regid=${IMAGE_UID}`, '--clear-groups', process.execPath, ...nodeArgs]]
    : [process.execPath, nodeArgs];
  let output = '';
  child = spawn(command, args, { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const fail = (message) => failIfProblems('smoke', [message, `output of bearer-sidecar:\n${output}`]);

  const admin = `http://127.0.0.1:${adminPort}`;
  if ((await waitFor(`${admin}/healthz`, (r) => r.status === 200)) === undefined) fail('/healthz never answered 200');
  console.log(
    `    /healthz 200 (uid ${asRoot ? uidOf(child.pid) : process.getuid?.()}, started as the image starts it: node ${nodeArgs.slice(0, -2).join(' ')})`,
  );
  if (asRoot && uidOf(child.pid) !== IMAGE_UID) fail(`the process runs as uid ${uidOf(child.pid)}, not ${IMAGE_UID}`);
  const ready = await waitFor(`${admin}/readyz`, (r) => r.status === 200);
  if (!ready) fail('/readyz never answered 200');
  console.log(`    /readyz 200 after ${tokensIssued} token request(s)`);
  const proxied = await get(`http://127.0.0.1:${dataPort}/smoke`);
  const body = JSON.parse(proxied.body || '{}');
  if (proxied.status !== 200 || !/^Bearer smoke-token-\d+$/.test(body.authorization ?? ''))
    fail(`the data plane answered ${proxied.status} ${proxied.body}`);
  console.log('    the data plane forwarded with Authorization: Bearer <token>');
  const state = statSync(stateFile);
  if ((state.mode & 0o777) !== 0o600 || (asRoot && state.uid !== IMAGE_UID))
    fail(`the state file is mode ${(state.mode & 0o777).toString(8)} uid ${state.uid}`);
  console.log(`    file store: ${path.basename(stateFile)} written, mode 600, owned by the process's user`);
  const metrics = await get(`${admin}/metrics`);
  if (!metrics.body.includes('bearer_sidecar_token_valid{')) fail('/metrics has no bearer_sidecar_token_valid');

  const stopAt = Date.now();
  child.kill('SIGTERM');
  const { code, signal } = await Promise.race([
    exited,
    sleep(30_000, undefined, { ref: false }).then(() => ({ code: 'timeout' })),
  ]);
  if (code !== 0) fail(`SIGTERM: exit ${code ?? signal}, expected 0`);
  console.log(`    SIGTERM: drained and exited 0 in ${Date.now() - stopAt} ms`);
}

function listen(handler) {
  return new Promise((resolve) => {
    const server = http.createServer(handler);
    servers.push(server);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function get(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 2_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, body: '' }));
  });
}

/** Polls for up to 15 s (the process starts in well under a second; the token server is local). */
async function waitFor(url, accept) {
  for (let attempt = 0; attempt < 150; attempt += 1) {
    if (child.exitCode !== null) return undefined;
    const response = await get(url);
    if (accept(response)) return response;
    await sleep(100);
  }
  return undefined;
}

function uidOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
}
