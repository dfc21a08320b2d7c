import { describe, expect, it } from 'vitest';
import { JUMP_POLL_MS } from '../../src/util/clock.js';
import { useHarness } from '../helpers/harness.js';

const SECOND = 1000;
const HOUR = 3600 * SECOND;

const harness = useHarness();

interface FleetStatus {
  state: string;
  ready: boolean;
  expiresAt: string;
  nextRefreshAt: string | null;
  nextTrigger: string | null;
}

async function fleetStatus(adminUrl: string): Promise<FleetStatus> {
  const body = (await (await fetch(`${adminUrl}/status?format=json`)).json()) as {
    accounts: Record<string, FleetStatus>;
  };
  const fleet = body.accounts.fleet;
  if (fleet === undefined) throw new Error('no fleet account in /status');
  return fleet;
}

describe('R8 time: a suspended laptop wakes up (real sidecar, demo token server, 600 s tokens)', () => {
  it('R8: after a suspend of 2 h the first request gets a new token at once (no 503), and /status shows the next renewal ahead', async () => {
    const { sidecar, tokenServer, clock, advance } = await harness.session({ server: { lifetimeSeconds: 600 } });
    await advance(10 * SECOND);
    expect((await fetch(`${sidecar.dataUrl()}/vehicles`)).status).toBe(200);

    // The token server was not asleep: by its clock (the wall clock) the token is 2 h old.
    clock.suspend(2 * HOUR);
    const answer = await fetch(`${sidecar.dataUrl()}/vehicles`);
    expect(answer.status).toBe(200);
    expect(answer.headers.get('retry-after')).toBeNull();
    expect(tokenServer.stats.logins).toBe(1);
    expect(tokenServer.stats.refreshes).toBe(1);

    const status = await fleetStatus(sidecar.adminUrl());
    expect(status.state).toBe('valid');
    expect(Date.parse(status.expiresAt)).toBe(clock.now() + 600 * SECOND);
    expect(Date.parse(status.nextRefreshAt ?? '')).toBeGreaterThan(clock.now());
    expect(status.nextTrigger).toBe('schedule');
  });

  it('R8: with no traffic, the sidecar renews within a second of waking and is ready again', async () => {
    const { sidecar, tokenServer, clock, advance } = await harness.session({ server: { lifetimeSeconds: 600 } });
    await advance(100 * SECOND);
    clock.suspend(2 * HOUR);
    await advance(JUMP_POLL_MS);
    expect(tokenServer.stats.refreshes).toBe(1);
    expect((await fetch(`${sidecar.adminUrl()}/readyz`)).status).toBe(200);
    expect((await fetch(`${sidecar.dataUrl()}/vehicles`)).status).toBe(200);
    expect(tokenServer.stats.requests).toBe(2);
  });

  it("R8: a wall clock set back 1 h keeps the renewal on schedule and /status's times in today's frame", async () => {
    const { sidecar, tokenServer, clock, advance } = await harness.session({ server: { lifetimeSeconds: 600 } });
    await sidecar.settled();
    const before = await fleetStatus(sidecar.adminUrl());
    const renewalIn = Date.parse(before.nextRefreshAt ?? '') - clock.now();
    clock.stepWall(-HOUR);
    await advance(JUMP_POLL_MS);
    const after = await fleetStatus(sidecar.adminUrl());
    expect(Date.parse(after.nextRefreshAt ?? '') - clock.now()).toBe(renewalIn - JUMP_POLL_MS);
    expect(Date.parse(after.expiresAt) - clock.now()).toBe(600 * SECOND - JUMP_POLL_MS);
    await advance(renewalIn - JUMP_POLL_MS - 1);
    expect(tokenServer.stats.refreshes).toBe(0);
    await advance(1);
    expect(tokenServer.stats.refreshes).toBe(1);
  });
});
