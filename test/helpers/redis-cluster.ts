import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, redisCommand, startRedisProcess, waitFor, type RedisProcess } from './redis-sentinel.js';

export interface RedisClusterGroup {
  /** `127.0.0.1:<port>` of each master. */
  nodes: string[];
  close(): Promise<void>;
}

/**
 * H1: a Redis Cluster of three masters (no replicas) on free ports, real processes with no
 * persistence, created with `redis-cli --cluster create`; resolves once every node says
 * `cluster_state:ok`. Each node's cluster bus gets a free port of its own (`--cluster-port`).
 */
export async function startRedisCluster(): Promise<RedisClusterGroup> {
  const dir = mkdtempSync(join(tmpdir(), 'bs-cluster-'));
  const nodes: RedisProcess[] = [];
  const close = async () => {
    await Promise.all(nodes.map((node) => node.kill()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 3; i++) {
      const busPort = await freePort();
      nodes.push(
        await startRedisProcess((port) => [
          '--port',
          String(port),
          '--cluster-port',
          String(busPort),
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout',
          '2000',
          '--dir',
          dir,
          '--save',
          '',
          '--appendonly',
          'no',
          '--bind',
          '127.0.0.1',
        ]),
      );
    }
    const addresses = nodes.map((node) => `127.0.0.1:${node.port}`);
    const created = spawnSync('redis-cli', ['--cluster', 'create', ...addresses, '--cluster-yes'], {
      encoding: 'utf8',
    });
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
    await waitFor('every cluster node in state ok', async () => {
      for (const node of nodes)
        if (!(await redisCommand(node.port, 'CLUSTER', 'INFO')).includes('cluster_state:ok')) return false;
      return true;
    });
    return { nodes: addresses, close };
  } catch (error) {
    await close();
    throw error;
  }
}
