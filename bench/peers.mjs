// The reference proxies of `npm run bench -- --peers`: nginx and HAProxy, each adding a static
// Authorization header in front of the same upstream, under the same load, on the same core as the
// sidecar. Debian's packages, installed when missing (apt-get, waiting for the dpkg lock). Each
// streams request and answer bodies (no buffering to disk) and keeps upstream connections alive,
// as the sidecar does, so the rows compare like with like.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

const STATIC_AUTHORIZATION = 'Bearer bench-static-token';

const PEERS = {
  nginx: { command: '/usr/sbin/nginx', packages: ['nginx-light'], start: startNginx },
  haproxy: { command: '/usr/sbin/haproxy', packages: ['haproxy'], start: startHaproxy },
};

/** The names of the peers, in the order the bench shows them. */
export const PEER_NAMES = Object.keys(PEERS);

/** Installs the Debian packages of every peer that is missing; throws with the command to run by hand. */
export function ensurePeersInstalled() {
  const missing = Object.values(PEERS).filter((peer) => spawnSync(peer.command, ['-v']).error !== undefined);
  if (missing.length === 0) return;
  const packages = missing.flatMap((peer) => peer.packages);
  const sudo = process.getuid?.() === 0 ? [] : ['sudo'];
  const apt = (...argv) => {
    const command = [...sudo, 'apt-get', '-o', 'DPkg::Lock::Timeout=600', ...argv];
    return spawnSync(command[0], command.slice(1), { stdio: 'inherit' }).status === 0;
  };
  console.log(`installing ${packages.join(', ')} for --peers`);
  const installed =
    apt('install', '-y', '-qq', ...packages) || (apt('update', '-qq') && apt('install', '-y', '-qq', ...packages));
  if (!installed) throw new Error(`could not install ${packages.join(' ')}: run apt-get install ${packages.join(' ')}`);
}

/**
 * Starts every peer in front of `upstream` (http://127.0.0.1:PORT) with its files under `dir`,
 * each through `launch(command, argv)` (which pins it to the proxy's core). Resolves with
 * `{ name: { data, pid, stop } }` once each answers.
 */
export async function startPeers(upstream, dir, launch) {
  const started = {};
  for (const [name, peer] of Object.entries(PEERS)) {
    const peerDir = join(dir, name);
    mkdirSync(peerDir, { recursive: true });
    const port = await freePort();
    const child = peer.start({ upstream: new URL(upstream), port, dir: peerDir, launch });
    const data = `http://127.0.0.1:${port}`;
    await waitUntilAnswering(`${data}/small`, name, child);
    started[name] = { data, pid: child.pid, stop: () => child.kill('SIGTERM') };
  }
  return started;
}

function startNginx({ upstream, port, dir, launch }) {
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes 1;
# One process (no master): the RSS sampled is all of nginx.
master_process off;
daemon off;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir};
  proxy_temp_path ${dir};
  upstream up { server ${upstream.host}; keepalive 128; }
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 0;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "${STATIC_AUTHORIZATION}";
      proxy_request_buffering off;
      proxy_buffering off;
    }
  }
}
`,
  );
  return launch('/usr/sbin/nginx', ['-p', dir, '-c', conf]);
}

function startHaproxy({ upstream, port, dir, launch }) {
  const conf = join(dir, 'haproxy.cfg');
  writeFileSync(
    conf,
    `global
  maxconn 4096
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend bench
  bind 127.0.0.1:${port}
  http-request set-header Authorization "${STATIC_AUTHORIZATION}"
  default_backend up
backend up
  server up ${upstream.host}
`,
  );
  return launch('/usr/sbin/haproxy', ['-db', '-f', conf]);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitUntilAnswering(url, name, child) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}) before answering`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${name} did not answer on ${url} within 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
