import type { Server } from 'node:http';
import { connect, createServer as createNetServer, type Socket } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { ListenAddress } from '../../src/util/http-server.js';
import { useHarness } from '../helpers/harness.js';
import { connectionRefused } from '../helpers/raw-client.js';
import { freePort, waitFor } from '../helpers/ports.js';

// The seams: a bind of the held port completes, then waits for the test before the reload hears of
// it; a bind of the port held before waits for the test before it is tried.
const held = vi.hoisted(() => ({
  port: 0,
  bound: (): void => undefined,
  release: Promise.resolve(),
  portBefore: 0,
  reached: (): void => undefined,
}));
vi.mock('../../src/util/http-server.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../src/util/http-server.js')>();
  return {
    ...original,
    listen: async (server: Server, address: ListenAddress) => {
      if ('port' in address && address.port === held.portBefore && held.portBefore !== 0) {
        held.reached();
        await held.release;
      }
      await original.listen(server, address);
      if ('port' in address && address.port === held.port && held.port !== 0) {
        held.bound();
        await held.release;
      }
    },
  };
});

const harness = useHarness();

/** True once a connection to `port` is refused (nothing listens there any more). */
function refused(port: number): Promise<boolean> {
  return connectionRefused(`http://127.0.0.1:${port}`);
}

/** A client connection to `port` that sends nothing (a pre-opened keep-alive connection), once connected. */
function idleConnection(port: number): Promise<{ socket: Socket; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const closed = new Promise<void>((done) => socket.once('close', () => done()));
    socket.once('connect', () => resolve({ socket, closed }));
    socket.once('error', reject);
  });
}

describe('H2 live reload: a stop during the reload binding its new ports', () => {
  it('H2: a port a reload binds after stop() began is closed at once, not drained later on a fresh shutdownTimeout; stop ends with its idle connection closed', async () => {
    const { tokenServer, password } = await harness.sessionTokenServer();
    const account = (extra: Record<string, unknown> = {}) => ({
      upstream: 'http://127.0.0.1:9/api',
      auth: { flow: 'session', loginUrl: tokenServer.loginUrl, username: 'u', password },
      ...extra,
    });
    // Longer than the test's own timeout: a port left to a later drain would hold stop() that long.
    const base = { shutdownTimeout: '5m', accounts: { a: account({ default: true }) } };
    const sidecar = await harness.sidecar(base);
    const [first, second] = [await freePort(), await freePort()];
    let release: () => void = () => undefined;
    held.release = new Promise<void>((resolve) => (release = resolve));
    const bound = new Promise<void>((resolve) => (held.bound = resolve));
    held.port = second;
    harness.defer(() => (held.port = 0));
    const next = parseConfig({
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      ...base,
      accounts: {
        ...base.accounts,
        b: account({ route: { port: first } }),
        c: account({ route: { port: second } }),
      },
    });
    const reload = sidecar.reload(next);
    await bound;
    const stopped = sidecar.stop();
    // stop() has drained what it knew of (the first new port) while the second bind was under way.
    await waitFor('the first new port to close', () => refused(first));
    const idle = await idleConnection(second);
    release();
    expect(await reload).toEqual({ outcome: 'rejected', reasons: ['not serving (still starting, or stopping)'] });
    await stopped;
    await idle.closed;
    expect(await refused(second)).toBe(true);
  }, 15_000);

  it("H2: a new port that fails to bind after stop() began leaves the ports the reload bound before it to the stop's drain: a request in flight on one is answered", async () => {
    const upstream = await harness.recordingUpstream();
    let answerUpstream: () => void = () => undefined;
    upstream.hold = new Promise<void>((resolve) => (answerUpstream = resolve));
    const { tokenServer, password } = await harness.sessionTokenServer();
    const auth = { flow: 'session', loginUrl: tokenServer.loginUrl, username: 'u', password };
    const base = { shutdownTimeout: '5m', accounts: { a: { upstream: upstream.url, default: true, auth } } };
    const sidecar = await harness.sidecar(base);
    // Registered after the sidecar, so they run before its stop: a failing test leaves nothing held.
    harness.defer(() => answerUpstream());
    const moved = await freePort();
    // The second new port is taken by another program: its bind fails.
    const taken = createNetServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    harness.defer(() => new Promise((resolve) => taken.close(resolve)));
    const takenPort = (taken.address() as { port: number }).port;
    let release: () => void = () => undefined;
    held.release = new Promise<void>((resolve) => (release = resolve));
    const reached = new Promise<void>((resolve) => (held.reached = resolve));
    held.portBefore = takenPort;
    harness.defer(() => {
      held.portBefore = 0;
      release();
    });
    const next = parseConfig({
      listen: { host: '127.0.0.1', port: moved },
      admin: { host: '127.0.0.1', port: 0 },
      ...base,
      accounts: { ...base.accounts, c: { upstream: upstream.url, auth, route: { port: takenPort } } },
    });
    const reload = sidecar.reload(next);
    // The moved data port is bound and serving (the running configuration's accounts); the next bind waits.
    await reached;
    const answer = fetch(`http://127.0.0.1:${moved}/api/x`).then(async (res) => ({
      status: res.status,
      body: await res.text(),
    }));
    await waitFor('the request to reach the upstream', async () => upstream.requests.length === 1);
    const stopped = sidecar.stop();
    release();
    expect(await reload).toMatchObject({ outcome: 'rejected', reasons: [expect.stringMatching(/^cannot listen/)] });
    answerUpstream();
    expect((await answer).status).toBe(200);
    await stopped;
    expect(await refused(moved)).toBe(true);
  }, 15_000);
});
