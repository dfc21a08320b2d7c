import { createHash } from 'node:crypto';
import { BlockList } from 'node:net';
import { Secret } from '../util/secret.js';
import type { AccountConfig, SidecarConfig } from './resolve.js';

/** H2: what a reload would change, by account and by top-level setting; never a secret's value. */
export interface ConfigChanges {
  /** Why the new configuration cannot be applied while running (it takes a restart), or undefined. */
  refusal: string | undefined;
  added: string[];
  removed: string[];
  /** Accounts present in both, with the settings that differ (`auth`, `upstream`, `timeouts`, ...). */
  changed: Array<{ account: string; parts: string[] }>;
  /** Top-level settings that differ (`listen`, `admin`, `limits`, `inbound`, `logLevel`, ...). */
  settings: string[];
}

/** Settings whose change needs a restart, with the reason logged. */
const RESTART_ONLY: Partial<Record<keyof SidecarConfig, string>> = {
  store: 'store changed: a different token store needs a restart',
  // H3: the OpenTelemetry SDK is loaded (or not) once, at start-up.
  tracing: 'tracing changed: tracing is set up at start-up and needs a restart',
};

/** The settings of an account that its token manager is built from: a change starts a new one. */
export const TOKEN_SIDE_PARTS: ReadonlyArray<keyof AccountConfig> = ['auth', 'refresh', 'tls', 'egress'];

/**
 * H2: compares the running configuration with a new one, setting by setting. Values are compared
 * through a digest (secrets included, as SHA-256), so the result names settings, never values.
 */
export function diffConfigs(running: SidecarConfig, next: SidecarConfig): ConfigChanges {
  const before = new Map(running.accounts.map((account) => [account.name, account]));
  const after = new Map(next.accounts.map((account) => [account.name, account]));
  const changed: ConfigChanges['changed'] = [];
  for (const [name, account] of after) {
    const old = before.get(name);
    const parts = old === undefined ? [] : changedAccountParts(old, account);
    if (parts.length > 0) changed.push({ account: name, parts });
  }
  const settings = changedKeys(running, next, ['accounts']).map((key) => key.replace(/Ms$/, ''));
  const refusal = changedKeys(running, next, ['accounts'])
    .map((key) => RESTART_ONLY[key])
    .find((reason) => reason !== undefined);
  return {
    refusal,
    added: [...after.keys()].filter((name) => !before.has(name)),
    removed: [...before.keys()].filter((name) => !after.has(name)),
    changed,
    settings,
  };
}

/** Account settings named as the config file spells them, where the resolved form renamed them. */
const FILE_NAMES: Partial<Record<keyof AccountConfig, string>> = {
  isDefault: 'default',
  tls: 'upstreamTls',
  egress: 'proxy',
};

/** The settings of one account that differ, as the config file names them. */
export function changedAccountParts(old: AccountConfig, next: AccountConfig): string[] {
  return changedKeys(old, next, ['name']).map((key) => FILE_NAMES[key] ?? key);
}

/** True when two values are the same setting (URLs, address lists and secrets compared by content). */
export function sameSetting(a: unknown, b: unknown): boolean {
  return settingDigest(a) === settingDigest(b);
}

function changedKeys<T extends object>(a: T, b: T, skip: ReadonlyArray<keyof T>): Array<keyof T & string> {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)] as Array<keyof T & string>);
  return [...keys].filter((key) => !skip.includes(key) && !sameSetting(a[key], b[key]));
}

/** SHA-256 of a canonical form: object keys sorted, class instances by their own enumerable fields. */
function settingDigest(value: unknown): string {
  return createHash('sha256')
    .update(JSON.stringify(canonicalSetting(value)) ?? 'undefined')
    .digest('hex');
}

/** A secret's value, hashed: its own toJSON would redact it and hide a change. */
function hashedSecret(secret: Secret): unknown {
  return { secret: createHash('sha256').update(secret.reveal()).digest('hex') };
}

/**
 * A setting as plain JSON-able data: object keys sorted, class instances by their own enumerable
 * fields, URLs and address lists by content. `secret` says what stands for each secret's value
 * (by default its SHA-256, for comparisons that never leave the process).
 */
export function canonicalSetting(value: unknown, secret: (value: Secret) => unknown = hashedSecret): unknown {
  const canonical = (inner: unknown) => canonicalSetting(inner, secret);
  if (value === null || typeof value !== 'object') return typeof value === 'function' ? undefined : value;
  if (value instanceof Secret) return secret(value);
  if (value instanceof URL) return value.href;
  if (value instanceof BlockList) return { blockList: value.rules };
  if (value instanceof RegExp) return value.source;
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex');
  if (value instanceof Map) return [...value.entries()].map(canonical);
  if (value instanceof Set || Array.isArray(value)) return [...(value as Iterable<unknown>)].map(canonical);
  const record = value as Record<string, unknown>;
  return Object.fromEntries(
    Object.keys(record)
      .sort()
      .map((key) => [key, canonical(record[key])]),
  );
}
