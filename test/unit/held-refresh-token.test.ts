import { describe, expect, it } from 'vitest';
import { HeldRefreshToken } from '../../src/tokens/held-refresh-token.js';
import { Secret } from '../../src/util/secret.js';

describe('T3 rotating refresh tokens', () => {
  it('T3: a rejected or consumed refresh token is dropped when held, and never usable again', () => {
    const held = new HeldRefreshToken();
    const first = new Secret('ref-1');
    held.adopt(first);
    held.discard(new Secret('ref-1'));
    expect(held.current).toBeUndefined();
    expect(held.isSpent(first)).toBe(true);
  });

  it('T3: a rotated refresh token replaces the held one; the one sent is marked spent, and discarding another token keeps the held one', () => {
    const held = new HeldRefreshToken();
    held.adopt(new Secret('ref-1'));
    held.markSpent(new Secret('ref-1'));
    held.replaceWith(new Secret('ref-2'));
    held.discard(new Secret('ref-1'));
    expect(held.current?.equals(new Secret('ref-2'))).toBe(true);
    expect(held.isSpent(new Secret('ref-1'))).toBe(true);
    expect(held.isSpent(new Secret('ref-2'))).toBe(false);
  });
});

describe('T5 transient failures back off', () => {
  it('T5: two unclear answers with the held token make it doubtful; a clear answer or a new chain clears the doubt', () => {
    const held = new HeldRefreshToken();
    held.adopt(new Secret('ref-1'));
    held.unclearAnswer(new Secret('ref-1'));
    expect(held.doubtful).toBe(false);
    held.unclearAnswer(new Secret('ref-other'));
    expect(held.doubtful).toBe(false);
    held.unclearAnswer(new Secret('ref-1'));
    expect(held.doubtful).toBe(true);
    held.answeredClearly();
    expect(held.doubtful).toBe(false);
    held.unclearAnswer(new Secret('ref-1'));
    held.unclearAnswer(new Secret('ref-1'));
    held.adopt(new Secret('ref-2'));
    expect(held.doubtful).toBe(false);
  });
});
