const UNITS_BYTES: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };

/**
 * Parses a size: a whole number of bytes, or a string such as `512KiB`, `32MiB`, `1GiB` (binary
 * units) or `4096` (bytes). Returns undefined for anything else (negative, fractional bytes,
 * unknown units) so the schema can name the offending path.
 */
export function parseSize(input: string | number): number | undefined {
  if (typeof input === 'number') return Number.isSafeInteger(input) && input >= 0 ? input : undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB)?\s*$/.exec(input);
  if (!match) return undefined;
  const bytes = Number(match[1]) * (UNITS_BYTES[match[2] ?? 'B'] ?? 1);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}
