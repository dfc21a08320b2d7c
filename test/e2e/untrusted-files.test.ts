import { execFileSync, spawn } from 'node:child_process';
import { symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import type { OAuth2Server } from 'oauth2-mock-server';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { useHarness } from '../helpers/harness.js';

/*
 * Issue 16, inputs 9 and 12, and R5's signal rule, through the real CLI (dist/cli.js).
 */

/*
 * These spawn the built CLI (through the harness): exit codes, signals and the reading of files
 * named on the command line are the process's own behaviour, which an in-process Sidecar skips.
 */
const harness = useHarness();
let dir: string;
let authServer: OAuth2Server;
/** The Authorization header of every token request the OAuth 2 server answered. */
let authorizations: string[];

beforeEach(async () => {
  dir = harness.tempDir('bs-untrusted-files-');
  authServer = await harness.oauth2Server();
  authorizations = [];
  authServer.service.on('beforeResponse', (response, req) => {
    authorizations.push(String(req.headers.authorization));
    // A short life, so the next login comes as soon as the loop guard (5 s) allows.
    (response.body as Record<string, unknown>).expires_in = 1;
  });
});

/** Runs the CLI to completion; killed after the test if it hangs. */
async function runCli(
  args: string[],
  options: { cwd?: string } = {},
): Promise<{ code: number | null; stderr: string }> {
  return harness.runCli(args, options);
}

function fifo(name: string): string {
  const path = join(dir, name);
  execFileSync('mkfifo', [path]);
  return path;
}

/** The client secret of a recorded `Authorization: Basic` header (RFC 6749 §2.3.1). */
function sentSecret(authorization: string): string {
  const pair = Buffer.from(authorization.slice('Basic '.length), 'base64').toString('utf8');
  return decodeURIComponent(pair.slice(pair.indexOf(':') + 1));
}

function quickModeFlags(clientSecretFile: string): string[] {
  return [
    '--upstream',
    'http://127.0.0.1:9',
    '--listen',
    '127.0.0.1:0',
    '--admin',
    '127.0.0.1:0',
    '--token-url',
    `${authServer.issuer.url}/token`,
    '--client-id',
    'app',
    '--client-secret-file',
    clientSecretFile,
  ];
}

function configFile(extra: string, moreAuth = ''): string {
  const path = join(dir, 'sidecar.yaml');
  writeFileSync(
    path,
    `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
accounts:
  crm:
    upstream: http://127.0.0.1:9
    default: true
    auth: { flow: oauth2, tokenUrl: ${authServer.issuer.url}/token, clientId: app, clientSecret: cs${moreAuth} }
${extra}`,
  );
  return path;
}

/** A TCP server that accepts connections and never says a word: a frozen Redis. */
async function silentServer(): Promise<{ url: string; connected: Promise<void> }> {
  const sockets: Socket[] = [];
  let connected: () => void = () => undefined;
  const firstConnection = new Promise<void>((resolve) => (connected = resolve));
  const server = createServer((socket) => {
    sockets.push(socket);
    connected();
  });
  server.on('close', () => sockets.forEach((socket) => socket.destroy()));
  harness.defer(() => server.close());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `redis://127.0.0.1:${(server.address() as AddressInfo).port}`, connected: firstConnection };
}

describe('R5, R6 issue 16: files and signals through the real CLI', () => {
  it('R5: a FIFO at store.path exits 2 at once with a message naming the path, never a hang (input 9)', async () => {
    const path = fifo('state.json');
    const result = await runCli(['--config', configFile(`store: { type: file, path: ${path} }\n`)]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`store.path: ${path} is a FIFO, not a regular file`);
    expect(authorizations).toEqual([]);
  });

  it('R5: SIGTERM while start-up waits on a token store that does not answer exits 0', async () => {
    const redis = await silentServer();
    const cli = harness.spawnCli(['--config', configFile(`store: { type: redis, url: ${redis.url} }\n`)]);
    // Start-up is now waiting for the store to answer (it never will).
    await cli.waitForLog((entry) => entry.msg === 'bearer-sidecar listening');
    await redis.connected;
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
    expect(cli.child.signalCode).toBeNull();
  });

  it('R6: --client-secret-file naming a FIFO written once (as <(printf s3cret) does): the second login still sends s3cret (input 12)', async () => {
    const path = fifo('client-secret');
    // One writer, once: it waits for a reader, writes, and is gone.
    const writer = spawn('sh', ['-c', `printf '%s' s3cret > '${path}'`], { stdio: 'ignore' });
    harness.defer(() => writer.kill('SIGKILL'));
    const cli = harness.spawnCli(quickModeFlags(path));
    await cli.waitForLog((entry) => entry.msg === 'token request: login succeeded');
    await vi.waitFor(() => expect(authorizations.length).toBeGreaterThanOrEqual(2), { timeout: 20_000, interval: 100 });
    expect(authorizations.map(sentSecret)).toEqual(authorizations.map(() => 's3cret'));
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
  });

  it('R6: --client-secret-file naming an empty file (printf %s "$UNSET" > secret) exits 2 naming the flag and the path; nothing is sent', async () => {
    const path = join(dir, 'empty-secret');
    writeFileSync(path, '');
    const result = await runCli(quickModeFlags(path));
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`--client-secret-file (BEARER_SIDECAR_CLIENT_SECRET_FILE): ${path} is empty`);
    expect(authorizations).toEqual([]);
  });

  it('R6: check refuses an empty secret the same way (exit 2, naming the flag and the path), before any token request', async () => {
    const path = join(dir, 'newlines-only');
    writeFileSync(path, '\n\n');
    const result = await runCli([
      'check',
      '--upstream',
      'http://127.0.0.1:9',
      '--token-url',
      `${authServer.issuer.url}/token`,
      '--client-id',
      'app',
      '--client-secret-file',
      path,
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`--client-secret-file (BEARER_SIDECAR_CLIENT_SECRET_FILE): ${path} is empty`);
    expect(authorizations).toEqual([]);
  });

  it('R5: a FIFO as .env in the working directory exits 2 naming it, never a hang', async () => {
    fifo('.env');
    const result = await runCli(quickModeFlags(join(dir, 'no-secret-needed')), { cwd: dir });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`.env: ${join(dir, '.env')} is a FIFO, not a regular file`);
  });

  it('R5: authorize --out naming a FIFO or a symlink exits 2 before any browser step, naming the flag', async () => {
    const config = configFile('', `, authorizeUrl: ${authServer.issuer.url}/authorize`);
    const link = join(dir, 'link');
    symlinkSync(join(dir, 'elsewhere'), link);
    for (const [out, what] of [
      [fifo('out'), 'is a FIFO, not a regular file'],
      [link, 'is a symbolic link'],
    ] as const) {
      const result = await runCli(['authorize', 'crm', '--config', config, '--out', out]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`--out: ${out} ${what}`);
    }
  });
});
