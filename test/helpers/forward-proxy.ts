import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A real forward proxy (Debian's tinyproxy) of our own, on a free loopback port (E6). */
export interface ForwardProxy {
  /** `http://127.0.0.1:PORT`, without credentials. */
  url: string;
  port: number;
  /** The request lines the proxy logged, in order: `GET http://host:port/path HTTP/1.1`, `CONNECT host:port HTTP/1.1`. */
  requests(): string[];
  /** Stops it (the port is then refused); `close()` also removes its directory. */
  stop(): Promise<void>;
  close(): Promise<void>;
}

const INSTALL = 'apt-get install -y tinyproxy (.ci/run does it)';

/** A port nothing listens on right now (tinyproxy takes a port number, not 0). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * tinyproxy in the foreground with a config in a temp dir: loopback clients only, CONNECT to any
 * port (no ConnectPort line), every request line logged (LogLevel Info), and with `basicAuth`
 * only authenticated clients served (407 otherwise). `.ci/run` installs tinyproxy when missing.
 */
export async function startForwardProxy(
  options: { basicAuth?: { user: string; password: string } } = {},
): Promise<ForwardProxy> {
  if (spawnSync('tinyproxy', ['-v']).status !== 0) throw new Error(`tinyproxy is not installed: ${INSTALL}`);
  const dir = mkdtempSync(join(tmpdir(), 'bs-proxy-'));
  const logFile = join(dir, 'tinyproxy.log');
  const port = await freePort();
  const lines = [
    `Port ${port}`,
    'Listen 127.0.0.1',
    'Timeout 30',
    `LogFile "${logFile}"`,
    'LogLevel Info',
    'MaxClients 100',
    'Allow 127.0.0.1',
    'DisableViaHeader Yes',
  ];
  if (options.basicAuth) lines.push(`BasicAuth ${options.basicAuth.user} ${options.basicAuth.password}`);
  writeFileSync(join(dir, 'tinyproxy.conf'), `${lines.join('\n')}\n`);
  let child: ChildProcess | undefined = spawn('tinyproxy', ['-d', '-c', join(dir, 'tinyproxy.conf')], {
    stdio: 'ignore',
  });
  for (let i = 0; i < 300 && !(await accepts(port)); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  if (!(await accepts(port))) throw new Error(`tinyproxy did not start on port ${port}`);
  const stop = async () => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGKILL');
    await exited;
  };
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests() {
      let text = '';
      try {
        text = readFileSync(logFile, 'utf8');
      } catch {
        return [];
      }
      return [...text.matchAll(/: Request \(file descriptor \d+\): (.*)$/gm)].map((match) => match[1] as string);
    },
    stop,
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
