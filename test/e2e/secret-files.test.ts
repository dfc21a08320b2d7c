import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { OAuth2Server } from 'oauth2-mock-server';
import { beforeEach, describe, expect, it } from 'vitest';
import { METRIC_NAMES } from '../../src/admin/metrics.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { generatedSecret, metricSum, useHarness } from '../helpers/harness.js';

/*
 * R6 end to end, in process: a real OAuth 2 server (oauth2-mock-server) records the client
 * authentication of every token request while the secret file changes under a running sidecar.
 */

const HOUR = 3600_000;

const harness = useHarness();
let authServer: OAuth2Server;
let authorizations: string[];
let dir: string;

beforeEach(async () => {
  authServer = await harness.oauth2Server();
  authorizations = [];
  authServer.service.on('beforeResponse', (_response, req) => authorizations.push(String(req.headers.authorization)));
  dir = harness.tempDir('bs-secret-files-');
});

/** The client secret of a recorded `Authorization: Basic` header (RFC 6749 §2.3.1). */
function sentSecret(authorization: string | undefined): string {
  const pair = Buffer.from(String(authorization).slice('Basic '.length), 'base64').toString('utf8');
  return decodeURIComponent(pair.slice(pair.indexOf(':') + 1));
}

async function startSidecar(clientSecretFile: string) {
  const clock = new FakeClock();
  const log = captureLogger();
  const sidecar = await harness.sidecar(
    {
      accounts: {
        crm: {
          upstream: 'http://127.0.0.1:9',
          default: true,
          auth: { flow: 'oauth2', tokenUrl: `${authServer.issuer.url}/token`, clientId: 'app', clientSecretFile },
        },
      },
    },
    { deps: { clock, logger: log.logger, random: () => 0.5 } },
  );
  const metrics = async () => (await fetch(`${sidecar.adminUrl()}/metrics`)).text();
  return { sidecar, log, metrics, advance: (ms: number) => clock.advance(ms, () => sidecar.settled()) };
}

describe('R6: a secret file that later reads empty or cannot be read keeps the last good value', () => {
  it('R6: the client secret file emptied after start: later logins still send the last good secret, one warning per account, each failed read counted', async () => {
    const good = generatedSecret('cs');
    const file = join(dir, 'client-secret');
    writeFileSync(file, `${good}\n`, { mode: 0o600 });
    const { log, metrics, advance } = await startSidecar(file);
    expect(authorizations.map(sentSecret)).toEqual([good]);

    // What `printf '%s' "$UNSET" > secret` leaves behind.
    writeFileSync(file, '');
    await advance(2 * HOUR);
    const failedWhileEmpty = authorizations.length - 1;
    expect(failedWhileEmpty).toBeGreaterThanOrEqual(2);
    expect(new Set(authorizations.map(sentSecret))).toEqual(new Set([good]));
    expect(metricSum(await metrics(), METRIC_NAMES.secretReadErrors, 'account="crm"')).toBe(failedWhileEmpty);
    const warnings = log.lines().filter((line) => line.level === 40 && line.path === file);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ account: 'crm', path: file, problem: `${file} is empty` });

    // It reads well again: the new value is used and the warning resets.
    const rotated = generatedSecret('cs2');
    writeFileSync(file, rotated);
    await advance(HOUR);
    expect(sentSecret(authorizations.at(-1))).toBe(rotated);
    expect(
      log.lines().filter((line) => line.level === 30 && line.path === file && line.account === 'crm'),
    ).toHaveLength(1);
    writeFileSync(file, '\n');
    const before = authorizations.length;
    await advance(HOUR);
    expect(sentSecret(authorizations.at(-1))).toBe(rotated);
    expect(log.lines().filter((line) => line.level === 40 && line.path === file)).toHaveLength(2);
    expect(metricSum(await metrics(), METRIC_NAMES.secretReadErrors, 'account="crm"')).toBe(
      failedWhileEmpty + authorizations.length - before,
    );

    // An empty secret is never sent, and no secret reaches the log or the metrics.
    expect(authorizations.map(sentSecret)).not.toContain('');
    for (const secret of [good, rotated]) expect(`${log.text()}${await metrics()}`).not.toContain(secret);
  });

  it('R6: the metric is there (0) for every account from the start, so an alert can use rate() at once', async () => {
    const file = join(dir, 'client-secret');
    writeFileSync(file, generatedSecret('cs'));
    const { metrics } = await startSidecar(file);
    expect(await metrics()).toContain(`${METRIC_NAMES.secretReadErrors}{account="crm"} 0`);
  });

  it('R6: the session dialect too: a password file emptied after start, and every later login still succeeds at a server that checks the password', async () => {
    const clock = new FakeClock();
    const { tokenServer, password } = await harness.sessionTokenServer({
      username: 'fleet-user',
      lifetimeSeconds: 60,
      now: () => clock.now(),
    });
    const passwordFile = join(dir, 'password');
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
    const log = captureLogger();
    const sidecar = await harness.sidecar(
      {
        // No refreshUrl: every renewal is a login, so every renewal reads the password file.
        accounts: {
          fleet: {
            upstream: 'http://127.0.0.1:9',
            default: true,
            auth: { flow: 'session', loginUrl: tokenServer.loginUrl, username: 'fleet-user', passwordFile },
          },
        },
      },
      { deps: { clock, logger: log.logger, random: () => 0.5 } },
    );
    writeFileSync(passwordFile, '');
    await clock.advance(5 * 60_000, () => sidecar.settled());

    expect(tokenServer.stats.logins).toBeGreaterThanOrEqual(5);
    expect(tokenServer.stats.rejectedLogins).toBe(0);
    expect(sidecar.manager('fleet')?.status().state).toBe('valid');
    const metrics = await (await fetch(`${sidecar.adminUrl()}/metrics`)).text();
    expect(metricSum(metrics, METRIC_NAMES.secretReadErrors, 'account="fleet"')).toBe(tokenServer.stats.logins - 1);
    expect(log.lines().filter((line) => line.level === 40 && line.path === passwordFile)).toHaveLength(1);
    expect(log.text()).not.toContain(password);
  });
});
