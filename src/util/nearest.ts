/*
 * "Did you mean ...?" for flags, commands, environment variables and config keys: the closest
 * known name by edit distance, when it is close enough to be a typo and not another word.
 */

/**
 * The known name closest to `given` (case ignored), or undefined when none is within typo range:
 * at most 2 edits, or 3 for names of 6 characters or more.
 */
export function nearestName(given: string, names: Iterable<string>): string | undefined {
  const lower = given.toLowerCase();
  let best: { name: string; distance: number } | undefined;
  for (const name of names) {
    const distance = editDistance(lower, name.toLowerCase());
    if (best === undefined || distance < best.distance) best = { name, distance };
  }
  return best !== undefined && best.distance <= Math.max(2, Math.min(3, Math.floor(given.length / 2)))
    ? best.name
    : undefined;
}

/** Levenshtein distance between two strings (insertions, deletions, substitutions). */
function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0] ?? 0;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j] ?? 0;
      row[j] = Math.min(current + 1, (row[j - 1] ?? 0) + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length] ?? 0;
}
