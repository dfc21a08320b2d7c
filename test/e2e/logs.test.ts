import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import type { SessionTokenServer } from '../../src/demo/session-token-server.js';
import type { DemoUpstream } from '../../src/demo/upstream.js';
import type { FaultTokenServer } from '../helpers/fault-token-server.js';
import { generatedSecret, useHarness } from '../helpers/harness.js';

/*
 * Issue 8 / F6: a full run of the real CLI at debug level (logins, refreshes, a failing token
 * endpoint, proxied requests allowed and refused, admin calls, then `check`), in both log
 * formats; its whole output is searched for every secret of the run.
 */

let dir: string;
let password: string;
let apiKey: string;
let tokenServer: SessionTokenServer;
let front: FaultTokenServer;
let upstream: DemoUpstream;
const harness = useHarness();

beforeEach(async () => {
  dir = harness.tempDir('bs-logs-');
  apiKey = generatedSecret('key');
  // 10 s tokens: the loop guard (max(minInterval, 10% of the lifetime)) lets admin refreshes through after 1 s.
  ({ tokenServer, password } = await harness.sessionTokenServer({ username: 'fleet-user', lifetimeSeconds: 10 }));
  front = await harness.faultFront(tokenServer.url);
  upstream = await harness.demoUpstream((token) => tokenServer.isValidToken(token));
  writeFileSync(join(dir, 'password'), `${password}\n`, { mode: 0o600 });
});

function writeConfig(): string {
  const file = join(dir, 'sidecar.yaml');
  writeFileSync(
    file,
    `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
store: { type: file, path: ${join(dir, 'state.json')} }
inbound: { apiKeys: ["\${API_KEY}"] }
accounts:
  fleet:
    upstream: ${upstream.url}
    default: true
    refresh: { minInterval: 1s }
    auth:
      flow: session
      loginUrl: ${front.url(new URL(tokenServer.loginUrl).pathname)}
      refreshUrl: ${front.url(new URL(tokenServer.refreshUrl).pathname)}
      username: fleet-user
      passwordFile: ${join(dir, 'password')}
`,
  );
  return file;
}

/** Every token and refresh token the real token server handed out in this run. */
function issuedSecrets(): string[] {
  const secrets: string[] = [];
  for (const answer of front.answers) {
    const body = JSON.parse(answer) as Record<string, unknown>;
    for (const key of ['token', 'refreshToken']) if (typeof body[key] === 'string') secrets.push(body[key]);
  }
  return secrets;
}

async function fullRun(format: 'json' | 'pretty'): Promise<{ output: string; secrets: string[] }> {
  const querySecret = generatedSecret('query-key');
  const wrongKey = generatedSecret('wrong-key');
  const clientBearer = generatedSecret('client-bearer');
  const config = writeConfig();
  const cli = harness.spawnCli(['--config', config, '--log-level', 'debug', '--log-format', format], {
    env: { API_KEY: apiKey },
  });
  const listening = await cli.waitForStdout(
    format === 'json'
      ? /"data":"(http:\/\/[^"]+)","admin":"(http:\/\/[^"]+)"/
      : /bearer-sidecar listening {2}data=(http:\S+) admin=(http:\S+)/,
  );
  const [, data = '', admin = ''] = listening;
  await cli.waitForStdout(/token request: login succeeded/);

  // Proxied requests: allowed, with a secret in the query and a client Authorization (F1); refused ones.
  expect(
    (
      await fetch(`${data}/vehicles?api_key=${querySecret}`, {
        headers: { 'x-sidecar-key': apiKey, authorization: `Bearer ${clientBearer}` },
      })
    ).status,
  ).toBe(200);
  expect((await fetch(`${data}/vehicles`)).status).toBe(403);
  expect((await fetch(`${data}/vehicles`, { headers: { 'x-sidecar-key': wrongKey } })).status).toBe(403);
  expect((await fetch(`${data}/a%2fb`, { headers: { 'x-sidecar-key': apiKey } })).status).toBe(400);

  // A refresh, a failing token endpoint, then recovery: each is a token request log line.
  await fetch(`${admin}/accounts/fleet/refresh`, { method: 'POST' });
  await cli.waitForStdout(/token request: refresh succeeded/);
  front.mode = 'status-500';
  await fetch(`${admin}/accounts/fleet/refresh`, { method: 'POST' });
  await cli.waitForStdout(/token request: refresh failed/);
  front.mode = 'pass';
  await cli.waitForStdout(/token request: refresh succeeded[\s\S]*token request: refresh succeeded/);
  await fetch(`${admin}/status`);
  await fetch(`${admin}/status`, { headers: { accept: 'text/html' } });
  cli.child.kill('SIGTERM');
  expect(await cli.exited).toBe(0);

  // check at debug level, reading the same store.
  const check = await harness.runCli(
    ['check', '--config', config, '--log-level', 'debug', '--log-format', format, '--login'],
    {
      env: { API_KEY: apiKey },
    },
  );
  expect(check.code).toBe(0);

  return {
    output: [cli.stdout(), cli.stderr(), check.stdout, check.stderr].join('\n'),
    secrets: [password, apiKey, querySecret, wrongKey, clientBearer, ...issuedSecrets()],
  };
}

describe('F6 logs of a full run hold no secret (issue 8)', () => {
  it('F6 / issue 8: JSON logs at debug: one line per token request and per proxied request (path without query), no secret anywhere', async () => {
    const { output, secrets } = await fullRun('json');
    expect(secrets.length).toBeGreaterThan(8);
    for (const secret of secrets) expect(output).not.toContain(secret);
    const lines = output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const tokenLines = lines.filter((line) => typeof line.msg === 'string' && line.msg.startsWith('token request:'));
    expect(tokenLines.length).toBeGreaterThanOrEqual(4);
    for (const line of tokenLines)
      expect(line).toMatchObject({
        account: 'fleet',
        kind: expect.any(String),
        trigger: expect.any(String),
        outcome: expect.any(String),
        durationMs: expect.any(Number),
      });
    const succeeded = tokenLines.find((line) => line.outcome === 'success');
    expect(succeeded).toMatchObject({ lifetimeS: 10, fingerprint: expect.stringMatching(/^[0-9a-f]{8}$/) });
    const proxied = lines.filter((line) => line.msg === 'proxied request');
    expect(proxied.map((line) => [line.path, line.status])).toEqual([
      ['/vehicles', 200],
      ['/vehicles', 403],
      ['/vehicles', 403],
      ['/a%2fb', 400],
    ]);
  });

  it('F6 / issue 8: pretty logs at debug: readable lines, no secret anywhere', async () => {
    const { output, secrets } = await fullRun('pretty');
    for (const secret of secrets) expect(output).not.toContain(secret);
    expect(output).toMatch(
      /^\d\d:\d\d:\d\d\.\d{3} INFO {2}token request: login succeeded {2}account=fleet kind=login trigger=startup outcome=success/m,
    );
    expect(output).toMatch(
      /^\d\d:\d\d:\d\d\.\d{3} DEBUG proxied request {2}account=fleet method=GET path=\/vehicles status=200/m,
    );
    expect(output.split('\n').filter((line) => line.startsWith('{"level"'))).toEqual([]);
  });
});
