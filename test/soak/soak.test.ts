import { describe, expect, it } from 'vitest';
import { FAULT_KINDS, runSoak } from './soak.js';

/*
 * CI runs one simulated day; `npm run soak` runs seven (SOAK_DAYS) and prints the report.
 */
const days = Number(process.env.SOAK_DAYS ?? 1);
const seed = Number(process.env.SOAK_SEED ?? 20261129);
const faults =
  process.env.SOAK_FAULTS === undefined
    ? FAULT_KINDS
    : (process.env.SOAK_FAULTS.split(',') as (typeof FAULT_KINDS)[number][]);

describe('T2-T10 soak: two replicas, a shared store, faults at random', () => {
  it(`T10: ${days} simulated day(s): no refresh token sent twice, no expired token upstream, no unhandled error, token requests near the schedule`, async () => {
    const report = await runSoak({ days, seed, faults });
    console.log(JSON.stringify(report, null, 2));
    expect(report.violations).toEqual([]);
    expect(report.tokenRequests).toBeGreaterThan(0);
  }, 600_000);
});
