/*
 * The schema's findings in the words of the file (docs/contract.md §3): one problem per unknown
 * key with the nearest key valid at that place, a bad `auth.flow` that does not hide the rest of
 * the account, and no second problem where an unset ${VAR} already explains the first.
 */
import { isAbsolute, resolve } from 'node:path';
import type { z } from 'zod';
import { nearestName } from '../util/nearest.js';
import type { ConfigProblem } from './resolve.js';
import { configSchema, FLOWS, guessFlow } from './schema.js';

/** A zod schema's definition, read only to list the keys valid at a place. */
interface SchemaDef {
  type: string;
  shape?: Record<string, unknown>;
  valueType?: unknown;
  element?: unknown;
  innerType?: unknown;
  in?: unknown;
  options?: unknown[];
  discriminator?: string;
}

function defOf(schema: unknown): SchemaDef {
  return (schema as { _zod: { def: SchemaDef } })._zod.def;
}

/** Looks through default / prefault / optional / transform wrappers to the schema that has keys. */
function unwrap(schema: unknown): SchemaDef {
  let def = defOf(schema);
  while (def.innerType !== undefined || (def.type === 'pipe' && def.in !== undefined))
    def = defOf(def.innerType ?? def.in);
  return def;
}

/** The union option that `data` selects (by the discriminator), or every option. */
function optionsFor(def: SchemaDef, data: unknown): unknown[] {
  const options = def.options ?? [];
  if (def.discriminator === undefined || data === null || typeof data !== 'object') return options;
  const value = (data as Record<string, unknown>)[def.discriminator];
  const chosen = options.filter((option) => {
    const literal = unwrap(option).shape?.[def.discriminator as string];
    return literal !== undefined && (defOf(literal) as { values?: unknown[] }).values?.includes(value) === true;
  });
  return chosen.length > 0 ? chosen : options;
}

/** The object schemas valid at `path` of the data (several for a union without a discriminator). */
function objectsAt(schema: unknown, path: readonly string[], data: unknown): SchemaDef[] {
  const def = unwrap(schema);
  if (def.type === 'union') return optionsFor(def, data).flatMap((option) => objectsAt(option, path, data));
  const [head, ...rest] = path;
  if (head === undefined) return def.type === 'object' ? [def] : [];
  const child = data !== null && typeof data === 'object' ? (data as Record<string, unknown>)[head] : undefined;
  const next = def.type === 'object' ? def.shape?.[head] : def.type === 'record' ? def.valueType : def.element;
  return next === undefined ? [] : objectsAt(next, rest, child);
}

/** The other flow whose auth has `key` (`tokenUrl` in a session account), for a plainer hint than a guess. */
function otherFlowOf(key: string, path: readonly string[], data: unknown): string | undefined {
  if (path.length !== 3 || path[0] !== 'accounts' || path[2] !== 'auth') return undefined;
  const given = valueAt(data, [...path, 'flow']);
  const authPath = ['accounts', 'a', 'auth'];
  return FLOWS.find((flow) => flow !== given && keysAt(authPath, { accounts: { a: { auth: { flow } } } }).has(key));
}

function keysAt(path: readonly string[], data: unknown): Set<string> {
  return new Set(objectsAt(configSchema, path, data).flatMap((def) => Object.keys(def.shape ?? {})));
}

function valueAt(data: unknown, path: readonly string[]): unknown {
  return path.reduce<unknown>(
    (node, key) => (node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined),
    data,
  );
}

function asRecord(data: unknown): Record<string, unknown> {
  return data !== null && typeof data === 'object' ? (data as Record<string, unknown>) : {};
}

/**
 * Turns zod's issues into problems, ordered by path: each unknown key on its own with the nearest
 * valid key, and a missing key that such a guess already points at is not reported again.
 */
export function zodProblems(error: z.ZodError, data: unknown): ConfigProblem[] {
  const problems = error.issues.flatMap((issue) => issueProblems(issue, data));
  const guessed = new Set(problems.flatMap((problem) => guessedPath(problem) ?? []));
  return problems
    .filter((problem) => !(problem.message === 'required' && guessed.has(problem.path)))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** `accounts.crm` + `unknown key "upstrem"; did you mean "upstream"?` -> `accounts.crm.upstream`. */
function guessedPath(problem: ConfigProblem): string | undefined {
  const key = /; did you mean "([^"]+)"\?$/.exec(problem.message)?.[1];
  return key === undefined ? undefined : problem.path === '(root)' ? key : `${problem.path}.${key}`;
}

function issueProblems(issue: z.core.$ZodIssue, data: unknown): ConfigProblem[] {
  {
    const segments = issue.path.map(String);
    const path = segments.join('.') || '(root)';
    if (issue.code === 'unrecognized_keys') {
      const valid = keysAt(segments, data);
      return issue.keys.map((key) => {
        const otherFlow = otherFlowOf(key, segments, data);
        const nearest = otherFlow === undefined ? nearestName(key, valid) : undefined;
        const hint =
          otherFlow !== undefined
            ? ` (a key of flow ${otherFlow}; this account has flow ${String(valueAt(data, [...segments, 'flow']))})`
            : nearest === undefined
              ? ''
              : `; did you mean ${JSON.stringify(nearest)}?`;
        return { path, message: `unknown key ${JSON.stringify(key)}${hint}` };
      });
    }
    if (issue.code === 'invalid_union' && 'discriminator' in issue) {
      // zod already puts the discriminator at the end of the path; name it once.
      const discriminator = String(issue.discriminator);
      return [
        {
          path: path.endsWith(`.${discriminator}`) || path === discriminator ? path : `${path}.${discriminator}`,
          message: issue.message,
        },
      ];
    }
    if (issue.code === 'invalid_union' && !('discriminator' in issue)) {
      // No shape fits (listen: host and port, or a path): name what is wrong in the closest one.
      const closest = closestBranch(issue.errors);
      if (closest !== undefined)
        return closest.flatMap((nested) => issueProblems({ ...nested, path: [...issue.path, ...nested.path] }, data));
    }
    const value = valueAt(data, segments);
    if (issue.code === 'invalid_type' && issue.expected === 'number' && typeof value === 'string')
      return [{ path, message: `expected a number, not the string ${JSON.stringify(value)}${NUMBER_HINT}` }];
    const missing = issue.code === 'invalid_type' && / received undefined$/.test(issue.message);
    return [{ path, message: missing ? 'required' : issue.message }];
  }
}

const NUMBER_HINT = ': write it without quotes (a ${VAR} always gives a string, so a number cannot come from one)';

/** The union branch with the fewest issues, when one has fewer than every other; else undefined. */
function closestBranch(branches: readonly (readonly z.core.$ZodIssue[])[]): readonly z.core.$ZodIssue[] | undefined {
  const sizes = branches.map((branch) => branch.length).sort((a, b) => a - b);
  if (sizes.length === 0 || sizes[0] === sizes[1]) return undefined;
  return branches.find((branch) => branch.length === sizes[0]);
}

/**
 * A missing or unknown `auth.flow` would stop zod at the flow and hide everything else in the
 * account. It is reported here and replaced by the nearest flow (or the one the keys point to),
 * so the rest is checked in the same run. Works on the expanded tree in place.
 */
export function checkFlows(tree: unknown, problems: ConfigProblem[]): void {
  for (const [name, account] of Object.entries(asRecord(asRecord(tree).accounts))) {
    const auth = asRecord(account).auth;
    if (auth === null || typeof auth !== 'object') continue;
    const record = auth as Record<string, unknown>;
    const { flow } = record;
    if (typeof flow === 'string' && (FLOWS as readonly string[]).includes(flow)) continue;
    const guessed = guessFlow(flow, 'loginUrl' in record);
    const what = flow === undefined ? 'required' : `${JSON.stringify(flow)} is not a flow`;
    problems.push({
      path: `accounts.${name}.auth.flow`,
      message: `${what} (oauth2 or session); the rest is checked as ${guessed}`,
    });
    record.flow = guessed;
  }
}

/**
 * An unset ${VAR} leaves an empty value behind, which later checks would report again at the
 * same place ("not a URL", "is empty"): the variable is the one cause worth naming.
 */
export function withoutEchoes(problems: readonly ConfigProblem[], variablePaths: ReadonlySet<string>): ConfigProblem[] {
  return problems.filter(
    (problem) => !variablePaths.has(problem.path) || problem.message.startsWith('environment variable '),
  );
}

/** Where a config file names a file: relative ones resolve against the file's directory (§3). */
const PATH_KEYS: ReadonlyArray<readonly string[]> = [
  ['store', 'path'],
  ['store', 'encryptionKeyFile'],
  ['store', 'passwordFile'],
  ['store', 'tls', 'caFile'],
  ['store', 'tls', 'certFile'],
  ['store', 'tls', 'keyFile'],
  ['upstreamTls', 'caFile'],
  ['accounts', '*', 'upstreamTls', 'caFile'],
  ['accounts', '*', 'auth', 'passwordFile'],
  ['accounts', '*', 'auth', 'clientSecretFile'],
  ['accounts', '*', 'auth', 'refreshTokenFile'],
  ['accounts', '*', 'auth', 'privateKeyFile'],
  ['accounts', '*', 'auth', 'dpop', 'keyFile'],
  ['accounts', '*', 'auth', 'assertionFile'],
  ['accounts', '*', 'auth', 'subjectTokenFile'],
  ['accounts', '*', 'auth', 'actorTokenFile'],
  ['inbound', 'apiKeyFiles', '*'],
  ['admin', 'apiKeyFiles', '*'],
  ['accounts', '*', 'proxyAuthFile'],
];

/**
 * §3: the file paths of a config file (secret files, store.path, store.encryptionKeyFile, TLS
 * files) that are relative resolve against `baseDir`, the config file's directory. In place.
 */
export function resolveRelativePaths(tree: unknown, baseDir: string): void {
  const visit = (node: unknown, keys: readonly string[]): void => {
    const [head, ...rest] = keys;
    if (head === undefined || node === null || typeof node !== 'object') return;
    const record = node as Record<string, unknown>;
    if (head === '*') {
      // A last `*` names every entry of a list of paths (apiKeyFiles).
      for (const key of Object.keys(record)) {
        if (rest.length > 0) visit(record[key], rest);
        else resolveAt(record, key);
      }
      return;
    }
    if (rest.length > 0) visit(record[head], rest);
    else resolveAt(record, head);
  };
  const resolveAt = (record: Record<string, unknown>, key: string): void => {
    const value = record[key];
    if (typeof value === 'string' && value !== '' && !isAbsolute(value)) record[key] = resolve(baseDir, value);
  };
  for (const keys of PATH_KEYS) visit(tree, keys);
}
