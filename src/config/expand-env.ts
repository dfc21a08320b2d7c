import type { ConfigProblem } from './resolve.js';

const REFERENCE = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/**
 * Replaces `${VAR}` and `${VAR:-default}` in every string of a parsed config tree.
 * `$$` stands for a literal `$`. An unset variable without a default is a problem at its path.
 */
export function expandEnv(
  value: unknown,
  env: NodeJS.ProcessEnv,
  problems: ConfigProblem[],
  path: string[] = [],
): unknown {
  if (typeof value === 'string') return expandString(value, env, problems, path);
  if (Array.isArray(value)) return value.map((item, index) => expandEnv(item, env, problems, [...path, String(index)]));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, expandEnv(item, env, problems, [...path, key])]),
    );
  }
  return value;
}

function expandString(text: string, env: NodeJS.ProcessEnv, problems: ConfigProblem[], path: string[]): string {
  return text.replace(REFERENCE, (match, name: string | undefined, fallback: string | undefined) => {
    if (match === '$$') return '$';
    const found = env[name as string];
    if (found !== undefined && found !== '') return found;
    if (fallback !== undefined) return fallback;
    problems.push({ path: path.join('.') || '(root)', message: `environment variable ${name} is not set` });
    return '';
  });
}

/** Every variable name a config tree refers to as `${VAR}` or `${VAR:-default}` (§2: such a variable is known). */
export function referencedVariables(value: unknown): Set<string> {
  const names = new Set<string>();
  const visit = (item: unknown): void => {
    if (typeof item === 'string') {
      for (const match of item.matchAll(REFERENCE)) if (match[1] !== undefined) names.add(match[1]);
    } else if (item !== null && typeof item === 'object') {
      Object.values(item).forEach(visit);
    }
  };
  visit(value);
  return names;
}
