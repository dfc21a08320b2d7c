import { expect } from 'vitest';
import { ConfigError } from '../../src/config/load.js';
import type { ConfigProblem } from '../../src/config/resolve.js';

/** The problems of a config that must be refused; fails the test if it is accepted. */
export function problemsOf(load: () => unknown): ConfigProblem[] {
  try {
    load();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return [...(error as ConfigError).problems];
  }
  throw new Error('expected a ConfigError, but the configuration was accepted');
}
