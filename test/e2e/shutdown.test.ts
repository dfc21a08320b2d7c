import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { useHarness } from '../helpers/harness.js';
import { connectionRefused } from '../helpers/raw-client.js';
import type { RecordingUpstream } from '../helpers/recording-upstream.js';
import type { RunningCli } from '../helpers/spawn-cli.js';

const harness = useHarness();

async function startCli(): Promise<{
  cli: RunningCli;
  data: string;
  admin: string;
  release: () => void;
  upstream: RecordingUpstream;
}> {
  const dir = harness.tempDir('bs-stop-');
  const { tokenServer, password } = await harness.sessionTokenServer();
  const upstream = await harness.recordingUpstream();
  let release: () => void = () => undefined;
  upstream.hold = new Promise((resolve) => (release = resolve));
  harness.defer(() => release());
  writeFileSync(join(dir, 'pw'), password);
  writeFileSync(
    join(dir, 'c.yaml'),
    `listen: { port: 0 }\nadmin: { port: 0 }\nshutdownTimeout: 30s\naccounts:\n  a:\n    upstream: ${upstream.url}\n    default: true\n    auth: { flow: session, loginUrl: ${tokenServer.loginUrl}, refreshUrl: ${tokenServer.refreshUrl}, username: u, passwordFile: ${join(dir, 'pw')} }\n`,
  );
  const { cli, data, admin } = await harness.launchCli(['--config', join(dir, 'c.yaml')]);
  await cli.waitForLog((entry) => entry.msg === 'token request: login succeeded');
  return { cli, data, admin, release, upstream };
}

describe('§2: graceful shutdown', () => {
  it('SIGTERM during 50 in-flight slow requests: /readyz turns 503, new connections are refused, all 50 complete, exit 0', async () => {
    const { cli, data, admin, release, upstream } = await startCli();
    const inFlight = Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        fetch(`${data}/slow/${i}`).then(async (r) => ({ status: r.status, body: await r.text() })),
      ),
    );
    await vi.waitFor(() => expect(upstream.requests).toHaveLength(50), { timeout: 20_000 });
    cli.child.kill('SIGTERM');
    await cli.waitForLog((entry) => String(entry.msg).startsWith('stopping'));
    const ready = await fetch(`${admin}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ ready: false, reasons: { '(sidecar)': 'shutting down' } });
    expect(await connectionRefused(data)).toBe(true);
    release();
    const answers = await inFlight;
    expect(answers.map((answer) => answer.status)).toEqual(Array(50).fill(200));
    expect(await cli.exited).toBe(0);
  });

  it('a second signal exits at once, without waiting for in-flight requests', async () => {
    const { cli, data, upstream } = await startCli();
    const inFlight = fetch(`${data}/slow`).catch(() => 'cut');
    await vi.waitFor(() => expect(upstream.requests).toHaveLength(1));
    cli.child.kill('SIGTERM');
    await cli.waitForLog((entry) => String(entry.msg).startsWith('stopping'));
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(1);
    expect(await inFlight).toBe('cut');
  });
});
