import { createHash, generateKeyPairSync } from 'node:crypto';
import { calculateJwkThumbprint, compactVerify, EmbeddedJWK, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { accessTokenHash, asksForDpopNonce, DpopProver } from '../../src/flows/dpop.js';
import { parseOAuth2Response } from '../../src/flows/oauth2.js';
import type { DpopKey } from '../../src/util/dpop-key.js';

const answer = (tokenType: unknown) => ({
  status: 200,
  headers: {},
  body: JSON.stringify({
    access_token: 'tok-1',
    expires_in: 60,
    ...(tokenType === undefined ? {} : { token_type: tokenType }),
  }),
});

function keys(): DpopKey[] {
  return [
    { key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, alg: 'ES256', file: undefined },
    { key: generateKeyPairSync('ed25519').privateKey, alg: 'EdDSA', file: '/k.pem' },
  ];
}

describe('E4 DPoP proofs and token types', () => {
  it('E4: with DPoP only token_type DPoP is taken (a Bearer answer is a downgrade, an error); without it DPoP is an error', () => {
    expect(parseOAuth2Response(answer('DPoP'), [], { dpop: true }).outcome).toBe('success');
    expect(parseOAuth2Response(answer('dpop'), [], { dpop: true }).outcome).toBe('success');
    const downgrade = parseOAuth2Response(answer('Bearer'), [], { dpop: true });
    expect(downgrade).toMatchObject({ outcome: 'error', reason: expect.stringContaining('only DPoP') });
    expect(parseOAuth2Response(answer(undefined), [], { dpop: true }).outcome).toBe('error');
    expect(parseOAuth2Response(answer('DPoP'), []).outcome).toBe('error');
    expect(parseOAuth2Response(answer('Bearer'), []).outcome).toBe('success');
  });

  for (const key of keys()) {
    it(`E4: a ${key.alg} request proof verifies with jose: typ dpop+jwt, the public key in the header (its RFC 7638 thumbprint is jkt), htm, htu, ath, a fresh jti, iat, the upstream nonce once given`, async () => {
      const prover = new DpopProver(key, () => 1_700_000_000_500);
      await prover.ready;
      const ath = accessTokenHash('tok-1');
      expect(ath).toBe(createHash('sha256').update('tok-1').digest('base64url'));
      const first = prover.requestProof('POST', 'http://up.example/a/b', ath);
      const { payload, protectedHeader } = await jwtVerify(first, EmbeddedJWK, {
        typ: 'dpop+jwt',
        currentDate: new Date(1_700_000_000_500),
      });
      expect(protectedHeader.alg).toBe(key.alg);
      expect(protectedHeader.jwk).not.toHaveProperty('d');
      expect(await calculateJwkThumbprint(protectedHeader.jwk!)).toBe(prover.report().jkt);
      expect(payload).toMatchObject({ htm: 'POST', htu: 'http://up.example/a/b', ath, iat: 1_700_000_000 });
      expect(payload.nonce).toBeUndefined();
      expect(prover.takeNonce('upstream', 'n-"1"')).toBe(true);
      const second = prover.requestProof('GET', 'http://up.example/', ath);
      const claims = JSON.parse(new TextDecoder().decode((await compactVerify(second, EmbeddedJWK)).payload));
      expect(claims.nonce).toBe('n-"1"');
      expect(claims.jti).not.toBe(payload.jti);
      expect(prover.report()).toMatchObject({ alg: key.alg, key: key.file ?? 'generated at start' });
    });
  }

  it("E4: a token request proof (jose) has htm POST, htu the token URL without query, and the token endpoint's nonce", async () => {
    const prover = new DpopProver(keys()[0]!);
    prover.takeNonce('token', 'tn');
    expect(prover.takeNonce('token', 'bad\nnonce')).toBe(false);
    const proof = await prover.tokenRequestProof(new URL('https://idp.example/oauth/token?x=1#f'));
    const { payload } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt' });
    expect(payload).toMatchObject({ htm: 'POST', htu: 'https://idp.example/oauth/token', nonce: 'tn' });
    expect(prover.nonce('upstream')).toBeUndefined();
  });

  it('E4: only a 401 with WWW-Authenticate DPoP error="use_dpop_nonce" asks for a nonce', () => {
    expect(asksForDpopNonce(401, 'DPoP error="use_dpop_nonce", error_description="x"')).toBe(true);
    expect(asksForDpopNonce(401, ['Bearer realm="a"', 'DPoP algs="ES256", error="use_dpop_nonce"'])).toBe(true);
    expect(asksForDpopNonce(401, 'DPoP error="invalid_token"')).toBe(false);
    expect(asksForDpopNonce(403, 'DPoP error="use_dpop_nonce"')).toBe(false);
    expect(asksForDpopNonce(401, undefined)).toBe(false);
  });
});
