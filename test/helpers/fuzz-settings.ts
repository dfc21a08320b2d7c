/**
 * How long property-based tests run. `npm test` (and CI) runs a bounded number of cases with a
 * fixed seed, so a failure is reproducible; `npm run fuzz` sets FUZZ_SECONDS and runs as many
 * random cases as fit (its seed is printed by fast-check when a case fails).
 */
export interface FuzzSettings {
  numRuns: number;
  seed: number | undefined;
  interruptAfterTimeLimit: number | undefined;
  markInterruptAsFailure: false;
}

export function fuzzSettings(ciRuns: number): FuzzSettings {
  const seconds = Number(process.env.FUZZ_SECONDS ?? 0);
  if (seconds > 0) {
    return {
      numRuns: Number.MAX_SAFE_INTEGER,
      seed: process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED),
      interruptAfterTimeLimit: seconds * 1000,
      markInterruptAsFailure: false,
    };
  }
  return {
    numRuns: ciRuns,
    seed: Number(process.env.FUZZ_SEED ?? 20261129),
    interruptAfterTimeLimit: undefined,
    markInterruptAsFailure: false,
  };
}

/** The test's own time limit: the fuzz budget plus a minute, or vitest's default. */
export function fuzzTestTimeout(defaultMs: number): number {
  const seconds = Number(process.env.FUZZ_SECONDS ?? 0);
  return seconds > 0 ? (seconds + 60) * 1000 : defaultMs;
}

/** Counts runs, so `npm run fuzz` can print how many cases it tried. */
export class RunCounter {
  count = 0;
  report(label: string): void {
    if (Number(process.env.FUZZ_SECONDS ?? 0) > 0) console.log(`fuzz: ${label}: ${this.count} cases`);
  }
}
