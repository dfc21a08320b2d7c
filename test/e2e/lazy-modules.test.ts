import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { useHarness } from '../helpers/harness.js';

const harness = useHarness();
const RECORD_IMPORTS = fileURLToPath(new URL('../helpers/record-imports.mjs', import.meta.url));

/**
 * Packages the sidecar loads only when a feature needs them (docs/performance.md "Memory"): the
 * path fragment that shows each one was loaded, whether by import or by require.
 */
const LAZY = {
  'jose (client assertions, DPoP)': '/node_modules/jose/',
  'ioredis (a Redis store)': '/node_modules/ioredis/',
  "undici's whole package (an egress proxy)": '/node_modules/undici/index.js',
  'the OpenTelemetry SDK (tracing)': '/node_modules/@opentelemetry/sdk-trace-base/',
  // Never needed: an ES import of node:http reads its lazy WebSocket getters, which load it.
  "Node's own bundled undici (fetch, WebSocket)": 'internal/deps/undici/undici',
};

/** Starts the CLI with `config` (YAML), sends one request, stops it; every module it loaded, one per line. */
async function modulesLoaded(config: string, request: boolean): Promise<string> {
  const dir = harness.tempDir('bs-lazy-');
  const file = join(dir, 'c.yaml');
  writeFileSync(file, config);
  const imports = join(dir, 'imports.txt');
  const requires = join(dir, 'requires.txt');
  const { cli, data } = await harness.launchCli(['--config', file], {
    env: { NODE_OPTIONS: `--import=${RECORD_IMPORTS}`, RECORD_IMPORTS_FILE: imports, RECORD_REQUIRES_FILE: requires },
  });
  if (request) {
    await cli.waitForLog((entry) => entry.msg === 'token request: login succeeded');
    expect((await fetch(`${data}/x`)).status).toBe(200);
  }
  cli.child.kill('SIGTERM');
  expect(await cli.exited).toBe(0);
  return `${readFileSync(imports, 'utf8')}${readFileSync(requires, 'utf8')}`;
}

describe('E4 libraries loaded only for the features that use them', () => {
  it('E1, E4: a session account with no client assertion, DPoP, Redis store, egress proxy or tracing loads none of their libraries at start or on a request; an account with auth.dpop loads jose', async () => {
    const { tokenServer, password } = await harness.sessionTokenServer({ lifetimeSeconds: 3600 });
    const upstream = await harness.recordingUpstream();
    const dir = harness.tempDir('bs-lazy-pw-');
    writeFileSync(join(dir, 'pw'), password);
    const loaded = await modulesLoaded(
      `listen: { port: 0 }\nadmin: { port: 0 }\naccounts:\n  a:\n    upstream: ${upstream.url}\n    default: true\n    auth: { flow: session, loginUrl: ${tokenServer.url}/auth/login, refreshUrl: ${tokenServer.url}/auth/refresh, username: u, passwordFile: ${join(dir, 'pw')} }\n`,
      true,
    );
    expect(loaded).toContain('/dist/cli.js');
    expect(loaded).toContain('/node_modules/undici/lib/dispatcher/pool.js');
    for (const [library, path] of Object.entries(LAZY)) expect(loaded.includes(path), library).toBe(false);

    // The same record with DPoP on: jose is there, so its absence above is no blind spot of the record.
    const withDpop = await modulesLoaded(
      `listen: { port: 0 }\nadmin: { port: 0 }\naccounts:\n  a:\n    upstream: ${upstream.url}\n    default: true\n    auth: { flow: oauth2, tokenUrl: ${tokenServer.url}/token, clientId: c, clientSecret: s, dpop: {} }\n`,
      false,
    );
    expect(withDpop).toContain(LAZY['jose (client assertions, DPoP)']);

    // And with an egress proxy (never reached: the account is not asked to send), undici's whole package.
    const withProxy = await modulesLoaded(
      `listen: { port: 0 }\nadmin: { port: 0 }\naccounts:\n  a:\n    upstream: ${upstream.url}\n    default: true\n    proxy: http://127.0.0.1:9\n    auth: { flow: session, loginUrl: ${tokenServer.url}/auth/login, refreshUrl: ${tokenServer.url}/auth/refresh, username: u, passwordFile: ${join(dir, 'pw')} }\n`,
      false,
    );
    expect(withProxy).toContain(LAZY["undici's whole package (an egress proxy)"]);
  });

  it("E4: the record sees Node's bundled undici when a process uses fetch (no blind spot of the record)", async () => {
    const dir = harness.tempDir('bs-lazy-fetch-');
    const requires = join(dir, 'requires.txt');
    const run = spawnSync(process.execPath, ['--import', RECORD_IMPORTS, '-e', "fetch('data:,x')"], {
      env: { ...process.env, RECORD_IMPORTS_FILE: join(dir, 'imports.txt'), RECORD_REQUIRES_FILE: requires },
    });
    expect(run.status).toBe(0);
    expect(readFileSync(requires, 'utf8')).toContain(LAZY["Node's own bundled undici (fetch, WebSocket)"]);
  });
});
