import { readFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenCodec } from '../../src/stores/codec.js';
import { readRedisTls, type RedisTlsFiles } from '../../src/stores/index.js';
import { RedisTokenStore } from '../../src/stores/redis.js';
import { silentLogger } from '../../src/util/logger.js';
import { startRedisProcess, type RedisProcess } from '../helpers/redis-sentinel.js';
import { makeTestCertificates, type TestCertificates } from '../helpers/test-certificates.js';
import { describeTokenStore, makeTokenState } from './token-store.suite.js';

/*
 * H1: the Redis store over TLS with a client certificate (store.tls), against a real redis-server
 * that listens on TLS only and demands client certificates. Certificates are made at run time.
 */
let certs: TestCertificates;
let redis: RedisProcess;
beforeAll(async () => {
  certs = makeTestCertificates();
  redis = await startRedisProcess(
    (port) => [
      '--port',
      '0',
      '--tls-port',
      String(port),
      '--tls-cert-file',
      certs.serverCertFile,
      '--tls-key-file',
      certs.serverKeyFile,
      '--tls-ca-cert-file',
      certs.caFile,
      '--tls-auth-clients',
      'yes',
      '--save',
      '',
      '--appendonly',
      'no',
      '--bind',
      '127.0.0.1',
    ],
    'redis-server',
    (port) => answersOverTls(port),
  );
}, 30_000);
afterAll(async () => {
  await redis.kill();
  certs.remove();
});

/** A TLS handshake with the client certificate succeeds: the server is up. */
function answersOverTls(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      ca: certs.ca,
      cert: readFileSync(certs.clientCertFile),
      key: readFileSync(certs.clientKeyFile),
    });
    socket.once('secureConnect', () => {
      socket.end();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

let prefixes = 0;
async function openStore(keyPrefix: string, files: RedisTlsFiles, url = `redis://127.0.0.1:${redis.port}`) {
  const store = new RedisTokenStore({
    url,
    tls: readRedisTls(files),
    keyPrefix,
    codec: new TokenCodec(),
    logger: silentLogger(),
  });
  await store.ready();
  return store;
}

const clientTls = () => ({ caFile: certs.caFile, certFile: certs.clientCertFile, keyFile: certs.clientKeyFile });

describeTokenStore(
  'redis over TLS with a client certificate',
  async () => {
    const keyPrefix = `tls-suite${(prefixes += 1)}:`;
    const store = await openStore(keyPrefix, clientTls());
    return { store, other: () => openStore(keyPrefix, clientTls()), cleanup: () => store.close() };
  },
  { shared: true },
);

describe('H1 Redis over TLS', () => {
  it('H1: store.tls with the CA and a client certificate reaches a Redis that demands client certificates (a rediss:// URL too)', async () => {
    const store = await openStore('tls-url:', clientTls(), `rediss://127.0.0.1:${redis.port}`);
    try {
      const state = makeTokenState('acct');
      await store.save('acct', state);
      expect((await store.load('acct'))?.state.accessToken.reveal()).toBe(state.accessToken.reveal());
    } finally {
      await store.close();
    }
  });

  it('H1: without the client certificate the TLS handshake is refused: the store is unreachable, and says where (never a secret)', async () => {
    await expect(openStore('tls-nocert:', { caFile: certs.caFile })).rejects.toThrow(/127\.0\.0\.1/);
  });

  it("H1: without the CA the server's certificate is not trusted: the store is unreachable", async () => {
    await expect(
      openStore('tls-noca:', { certFile: certs.clientCertFile, keyFile: certs.clientKeyFile }),
    ).rejects.toThrow(/127\.0\.0\.1/);
  });
});
