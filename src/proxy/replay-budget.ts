/**
 * R9: the process-wide budget for T8 replay copies. Every ReplayableBody takes bytes from it as
 * it keeps chunks and gives them back when the copy is dropped; a body that cannot take what it
 * needs keeps no copy at all (its replay is `skipped`). Without it, many large concurrent
 * uploads to a slow upstream would each keep up to `replayMaxBody` (issue 17: 250 × 1 MiB).
 */
export class ReplayBudget {
  #free: number;

  /** `limitBytes`: `limits.replayBudget`; 0 keeps no replay copy at all. */
  constructor(readonly limitBytes: number) {
    this.#free = limitBytes;
  }

  /** Takes `bytes` when that many are free (true), else takes nothing (false). */
  take(bytes: number): boolean {
    if (bytes > this.#free) return false;
    this.#free -= bytes;
    return true;
  }

  /** Gives back bytes an earlier take() had taken. */
  give(bytes: number): void {
    this.#free = Math.min(this.limitBytes, this.#free + bytes);
  }

  /** Bytes held by copies now (for tests and the bench). */
  inUse(): number {
    return this.limitBytes - this.#free;
  }
}

/** No shared bound: for a data plane built without one (tests of other items). */
export const UNBOUNDED_REPLAY_BUDGET = new ReplayBudget(Number.MAX_SAFE_INTEGER);
