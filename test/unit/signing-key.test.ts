import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compactVerify, decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import { signClientAssertion } from '../../src/flows/client-assertion.js';
import { makeClientAssertion } from '../../src/flows/oauth2.js';
import { parseConfig } from '../../src/config/load.js';
import type { SecretReadEvent } from '../../src/util/secret-file.js';
import { problemsOf } from '../helpers/config-problems.js';
import { Secret } from '../../src/util/secret.js';
import { clientSecretSigningKey, parsePrivateSigningKey, readPrivateSigningKey } from '../../src/util/signing-key.js';

const pem = (key: ReturnType<typeof generateKeyPairSync>['privateKey']) =>
  key.export({ format: 'pem', type: 'pkcs8' }).toString();

describe('E1 signing keys and client assertions', () => {
  it('E1: the algorithm comes from the key when not configured: RSA RS256, RSA-PSS PS256, P-256/384/521 ES256/384/512, Ed25519 EdDSA', () => {
    const cases = [
      [generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, 'RS256'],
      [generateKeyPairSync('rsa-pss', { modulusLength: 2048 }).privateKey, 'PS256'],
      [generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, 'ES256'],
      [generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey, 'ES384'],
      [generateKeyPairSync('ec', { namedCurve: 'P-521' }).privateKey, 'ES512'],
      [generateKeyPairSync('ed25519').privateKey, 'EdDSA'],
    ] as const;
    for (const [key, alg] of cases) expect(parsePrivateSigningKey(pem(key), 'k.pem').alg).toBe(alg);
  });

  it("E1: a JWK's own alg and kid are used; signingAlg and keyId override them", () => {
    const jwk = {
      ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
      alg: 'PS384',
      kid: 'from-jwk',
    };
    expect(parsePrivateSigningKey(JSON.stringify(jwk), 'k.jwk')).toMatchObject({ alg: 'PS384', kid: 'from-jwk' });
    expect(parsePrivateSigningKey(JSON.stringify(jwk), 'k.jwk', { alg: 'RS512', keyId: 'mine' })).toMatchObject({
      alg: 'RS512',
      kid: 'mine',
    });
  });

  it('E1: a key that does not fit signingAlg, a public key, a curve no JWS algorithm uses, and an unreadable file are refused, naming the file and never its content', () => {
    const ec = pem(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
    expect(() => parsePrivateSigningKey(ec, 'k.pem', { alg: 'RS256' })).toThrow(
      /signingAlg RS256 does not fit a ec key/,
    );
    expect(() => parsePrivateSigningKey(ec, 'k.pem', { alg: 'ES384' })).toThrow(/signingAlg ES384 does not fit/);
    const rsa = pem(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);
    expect(() => parsePrivateSigningKey(rsa, 'k.pem', { alg: 'HS256' })).toThrow(/does not fit/);
    const publicKey = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .publicKey.export({ format: 'pem', type: 'spki' })
      .toString();
    expect(() => parsePrivateSigningKey(publicKey, 'pub.pem')).toThrow(/pub\.pem is not a private key/);
    const k1 = pem(generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey);
    expect(() => parsePrivateSigningKey(k1, 'k1.pem')).toThrow(/secp256k1 cannot sign a client assertion/);
    const junk = () => parsePrivateSigningKey('{"kty":"EC","d":"not-a-key-SECRETVALUE"}', 'bad.jwk');
    expect(junk).toThrow(/bad\.jwk is not a private key/);
    expect(junk).not.toThrow(/SECRETVALUE/);
    const dir = mkdtempSync(join(tmpdir(), 'bs-key-'));
    expect(() => readPrivateSigningKey(join(dir, 'missing.pem'))).toThrow(/missing\.pem/);
    writeFileSync(join(dir, 'ok.pem'), ec);
    expect(readPrivateSigningKey(join(dir, 'ok.pem')).alg).toBe('ES256');
  });

  it('E1: client_secret_jwt takes HS256 by default and only HS algorithms', () => {
    expect(clientSecretSigningKey(new Secret('s3cret')).alg).toBe('HS256');
    expect(clientSecretSigningKey(new Secret('s3cret'), { alg: 'HS512' }).alg).toBe('HS512');
    expect(() => clientSecretSigningKey(new Secret('s3cret'), { alg: 'ES256' })).toThrow(/HS256, HS384 or HS512/);
  });

  it('E1: an assertion carries iss = sub = client id, aud = token URL, a new jti each time, iat and exp 5 minutes later, and verifies with the public key', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const signingKey = parsePrivateSigningKey(pem(privateKey), 'k.pem', { keyId: 'k1' });
    const make = () =>
      signClientAssertion({
        clientId: 'svc',
        audience: 'https://idp.example/token',
        signingKey,
        nowSeconds: 1_800_000_000,
      });
    const [one, two] = [await make(), await make()];
    const verified = await compactVerify(one.reveal(), publicKey);
    expect(verified.protectedHeader).toEqual({ alg: 'ES256', kid: 'k1', typ: 'JWT' });
    expect(decodeJwt(one.reveal())).toMatchObject({
      iss: 'svc',
      sub: 'svc',
      aud: 'https://idp.example/token',
      iat: 1_800_000_000,
      exp: 1_800_000_300,
    });
    expect(decodeJwt(one.reveal()).jti).not.toBe(decodeJwt(two.reveal()).jti);
    expect(String(one)).not.toContain(one.reveal().slice(0, 20));
  });
});

describe('E1 the private key file at run time', () => {
  const keyDir = mkdtempSync(join(tmpdir(), 'bs-signing-key-'));
  const oauth2 = (auth: Record<string, unknown>) => ({
    accounts: {
      a: {
        upstream: 'https://api.example',
        auth: { flow: 'oauth2', tokenUrl: 'https://idp.example/token', clientId: 'svc', ...auth },
      },
    },
  });

  it('E1: a key file rewritten with something that is not a usable key keeps the last good key (said once); a good key is used again', async () => {
    const file = join(keyDir, 'rotating.pem');
    const first = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(file, pem(first.privateKey));
    const config = parseConfig(oauth2({ clientAuth: 'private_key_jwt', privateKeyFile: file, signingAlg: 'ES256' }), {
      env: {},
    });
    const auth = config.accounts[0]!.auth;
    if (auth.flow !== 'oauth2') throw new Error('oauth2 expected');
    const events: SecretReadEvent[] = [];
    auth.privateKey!.watch((event) => events.push(event));
    writeFileSync(file, '-----BEGIN PRIVATE KEY-----\nMIGH'); // half written
    for (let login = 0; login < 3; login += 1) {
      const assertion = await makeClientAssertion(auth, undefined);
      await compactVerify(assertion!.reveal(), first.publicKey);
    }
    writeFileSync(file, pem(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey)); // fits no longer (ES256)
    await compactVerify((await makeClientAssertion(auth, undefined))!.reveal(), first.publicKey);
    expect(events.filter((event) => event.type === 'failed' && event.first)).toHaveLength(1);
    expect(JSON.stringify(events)).not.toContain('MIGH');
    const second = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(file, pem(second.privateKey));
    await compactVerify((await makeClientAssertion(auth, undefined))!.reveal(), second.publicKey);
    expect(events.at(-1)).toEqual({ type: 'recovered', path: file });
  });

  it('E1: an RSA key under 2048 bits stops start-up, naming the setting and the 2048-bit minimum', () => {
    const file = join(keyDir, 'small-rsa.pem');
    writeFileSync(file, pem(generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey));
    const problems = problemsOf(() =>
      parseConfig(oauth2({ clientAuth: 'private_key_jwt', privateKeyFile: file }), { env: {} }),
    );
    expect(problems).toEqual([
      expect.objectContaining({ path: 'accounts.a.auth.privateKeyFile', message: expect.stringMatching(/2048/) }),
    ]);
    expect(() =>
      parsePrivateSigningKey(pem(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey), 'k'),
    ).not.toThrow();
  });
});
