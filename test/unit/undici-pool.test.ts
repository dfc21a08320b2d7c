import { Pool } from 'undici';
import { describe, expect, it } from 'vitest';
import { UndiciPool } from '../../src/proxy/transport.js';

describe('the transport loads only undici Pool (memory)', () => {
  it('the Pool loaded by its module path is the class undici exports (guards an undici upgrade)', () => {
    expect(UndiciPool).toBe(Pool);
  });
});
