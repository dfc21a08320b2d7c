import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from './ports.js';

export { freePort, waitFor };

/** One command in RESP over a fresh connection; the raw reply text. */
export function redisCommand(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let reply = '';
    const timer = setTimeout(() => socket.destroy(new Error('no reply')), 1_000);
    socket.on('connect', () =>
      socket.write(`*${args.length}\r\n${args.map((a) => `$${a.length}\r\n${a}\r\n`).join('')}`),
    );
    socket.on('data', (chunk) => {
      reply += chunk.toString('utf8');
      clearTimeout(timer);
      // Enough for the short answers the helpers read; a second data event is not waited for.
      setTimeout(() => socket.end(), 20);
    });
    socket.on('close', () => resolve(reply));
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

export interface RedisProcess {
  port: number;
  /** Sends a signal to the process (SIGSTOP freezes it: its peers still see it connected). */
  signal(name: NodeJS.Signals): void;
  kill(): Promise<void>;
}

/** Starts `command args(port)` on a free port (redis-server by default); a port lost to a race is retried with another. */
export async function startRedisProcess(
  args: (port: number) => string[],
  command = 'redis-server',
  /** Whether the process answers on `port` (default: PING over plain TCP). */
  answers: (port: number) => Promise<boolean> = async (port) => (await redisCommand(port, 'PING')).startsWith('+PONG'),
): Promise<RedisProcess> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const child: ChildProcess = spawn(command, args(port), { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const up = await waitFor(
      `redis on ${port}`,
      async () => {
        if (child.exitCode !== null) throw new Error('exited');
        return answers(port);
      },
      5_000,
    ).then(
      () => true,
      () => false,
    );
    const kill = async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    };
    if (up) return { port, kill, signal: (name) => child.kill(name) };
    await kill();
  }
  throw new Error('redis-server did not start on a free port');
}

export interface SentinelGroup {
  /** `127.0.0.1:<port>` of each of the three sentinels. */
  sentinels: string[];
  name: string;
  master: RedisProcess;
  replica: RedisProcess;
  /** The port of the master as the sentinels see it now. */
  masterPort(): Promise<number>;
  close(): Promise<void>;
}

const NO_PERSISTENCE = ['--save', '', '--appendonly', 'no', '--bind', '127.0.0.1'];

/**
 * H1: a master, a replica and three sentinels (quorum 2) on free ports, real processes, with no
 * persistence; resolves once every sentinel knows the replica and the two other sentinels, so a
 * failover can happen. A master that stops answering is judged down after 1 s.
 * `.ci/run` installs redis-server and redis-sentinel when they are missing.
 */
export async function startSentinelGroup(name = 'mymaster'): Promise<SentinelGroup> {
  for (const command of ['redis-server', 'redis-sentinel'])
    if (spawnSync(command, ['--version']).status !== 0)
      throw new Error(`${command} is not installed (apt-get install ${command}; .ci/run does it)`);
  const dir = mkdtempSync(join(tmpdir(), 'bs-sentinel-'));
  const processes: RedisProcess[] = [];
  const master = await startRedisProcess((port) => ['--port', String(port), '--dir', dir, ...NO_PERSISTENCE]);
  processes.push(master);
  const replica = await startRedisProcess((port) => [
    '--port',
    String(port),
    '--dir',
    dir,
    '--replicaof',
    '127.0.0.1',
    String(master.port),
    ...NO_PERSISTENCE,
  ]);
  processes.push(replica);
  const sentinelPorts: number[] = [];
  for (let i = 0; i < 3; i++) {
    const sentinel = await startRedisProcess((port) => {
      const file = join(dir, `sentinel-${i}-${port}.conf`);
      writeFileSync(
        file,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor ${name} 127.0.0.1 ${master.port} 2`,
          `sentinel down-after-milliseconds ${name} 1000`,
          `sentinel failover-timeout ${name} 5000`,
          '',
        ].join('\n'),
      );
      return [file];
    }, 'redis-sentinel');
    processes.push(sentinel);
    sentinelPorts.push(sentinel.port);
  }
  const group: SentinelGroup = {
    sentinels: sentinelPorts.map((port) => `127.0.0.1:${port}`),
    name,
    master,
    replica,
    async masterPort() {
      const reply = await redisCommand(sentinelPorts[0] as number, 'SENTINEL', 'get-master-addr-by-name', name);
      return Number(reply.trim().split('\r\n').at(-1));
    },
    async close() {
      await Promise.all(processes.map((p) => p.kill()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await waitFor('sentinels that know the replica and each other', async () => {
    for (const port of sentinelPorts) {
      const reply = await redisCommand(port, 'SENTINEL', 'master', name);
      const fields = reply.split('\r\n');
      const value = (field: string) => fields[fields.indexOf(field) + 2];
      if (value('num-slaves') !== '1' || value('num-other-sentinels') !== '2') return false;
    }
    return true;
  });
  return group;
}
