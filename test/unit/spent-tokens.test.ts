import { describe, expect, it } from 'vitest';
import { SpentRefreshTokens } from '../../src/tokens/spent-tokens.js';
import { Secret } from '../../src/util/secret.js';

describe('T3 spent refresh tokens', () => {
  it('T3: a spent refresh token is recognised by its value, whatever Secret object carries it', () => {
    const spent = new SpentRefreshTokens();
    spent.add(new Secret('ref-1'));
    expect(spent.has(new Secret('ref-1'))).toBe(true);
    expect(spent.has(new Secret('ref-2'))).toBe(false);
  });

  it('T3: the 64 most recently spent are remembered; older ones are forgotten (bounded memory)', () => {
    const spent = new SpentRefreshTokens();
    for (let i = 0; i < 100; i++) spent.add(new Secret(`ref-${i}`));
    expect(spent.has(new Secret('ref-99'))).toBe(true);
    expect(spent.has(new Secret('ref-36'))).toBe(true);
    expect(spent.has(new Secret('ref-35'))).toBe(false);
  });
});
