import type { Cluster, Redis } from 'ioredis';
import { STORE_FORMAT } from './codec.js';

/*
 * The Redis store's atomic steps (T10, R7): each is one Lua script, so Redis runs it as one step,
 * and each reply is parsed here. Every script looks at a key before it trusts it: a key of another
 * Redis type, a value over MAX_RECORD_BYTES, or a value that is not a token-v1 JSON object with a
 * positive integer revision is renamed to `<key>:corrupt:<time>` in the same step. So no script
 * fails on a bad record, and nothing is set aside that changed since it was found bad (R7).
 *
 * Each function below rejects with the client's error when Redis does not answer (the store turns
 * it into StoreUnavailableError), and throws when a reply has a shape these scripts never give.
 * Times are milliseconds; `stamp` is the ISO 8601 time put in a set-aside key's name.
 */

/** One server (or the master a Sentinel group names), or a Redis Cluster (H1): both run the scripts alike. */
export type RedisClient = Redis | Cluster;

/** R7: a stored record is at most this long; a longer value is set aside unread. */
export const MAX_RECORD_BYTES = 4 * 1024 * 1024;

/** How long a set-aside key is kept for a person to inspect (7 days): a key that is rewritten
 * with junk over and over must not fill Redis. */
export const SET_ASIDE_KEEP_MS = 7 * 24 * 60 * 60 * 1000;

/**
 * What a script found at a token key:
 * - `absent`: nothing stored;
 * - `set-aside`: it could not be a record and was renamed to `setAsideAs` (`reason`: wrong_type,
 *   too_large, not_json, not_an_object, foreign_format, missing_field);
 * - `value`: a record for the codec to decode, with the SHA-1 (hex) of its bytes as Redis holds them.
 */
export type Inspection =
  | { kind: 'absent' }
  | { kind: 'set-aside'; reason: string; setAsideAs: string }
  | { kind: 'value'; raw: string; digest: string };

/** A key that was not a lock and was renamed (`reason`: wrong_type, or no_expiry: it would never be released). */
export interface LockSetAside {
  reason: string;
  setAsideAs: string;
}

/** The name a bad key is renamed to (an `-N` suffix is added if it is taken): `<key>:corrupt:<stamp>`. */
export function setAsideName(key: string, stamp: string): string {
  return `${key}:corrupt:${stamp}`;
}

const LUA_PRELUDE = `
local MAX_RECORD_BYTES = ${MAX_RECORD_BYTES}
local SET_ASIDE_KEEP_MS = ${SET_ASIDE_KEEP_MS}
local FORMAT = ${JSON.stringify(STORE_FORMAT)}
local MAX_REVISION = 9007199254740991

-- Renames key to name (or name-1, name-2, ...: an earlier set-aside is never overwritten).
local function set_aside(key, name)
  local target = name
  local n = 0
  while redis.call('EXISTS', target) == 1 do
    n = n + 1
    target = name .. '-' .. n
  end
  redis.call('RENAME', key, target)
  redis.call('PEXPIRE', target, SET_ASIDE_KEEP_MS)
  return target
end

local function is_revision(value)
  return type(value) == 'number' and value >= 1 and value <= MAX_REVISION and value == math.floor(value)
end

-- Why the string value cannot be a record (nil when it may be one), and its revision.
local function record_problem(value)
  local decoded, record = pcall(cjson.decode, value)
  if not decoded then return 'not_json' end
  if type(record) ~= 'table' or not string.find(value, '^%s*{') then return 'not_an_object' end
  if record.format ~= FORMAT then return 'foreign_format' end
  if not is_revision(record.revision) then return 'missing_field' end
  return nil, record.revision
end

-- nil when nothing is stored; {'set-aside', reason, target} after renaming a bad key;
-- {'value', value, sha1} and its revision otherwise. Reads at most MAX_RECORD_BYTES.
local function inspect(key, name)
  local kind = redis.call('TYPE', key).ok
  if kind == 'none' then return nil end
  local problem, revision, value
  if kind ~= 'string' then
    problem = 'wrong_type'
  elseif redis.call('STRLEN', key) > MAX_RECORD_BYTES then
    problem = 'too_large'
  else
    value = redis.call('GET', key)
    problem, revision = record_problem(value)
  end
  if problem then return {'set-aside', problem, set_aside(key, name)} end
  return {'value', value, redis.sha1hex(value)}, revision
end

-- True when key is a string that is exactly holder (nothing longer is read).
local function holds(key, holder)
  return redis.call('TYPE', key).ok == 'string' and redis.call('STRLEN', key) == #holder and redis.call('GET', key) == holder
end
`;

/** KEYS: token key, set-aside name. */
const READ_RECORD = `${LUA_PRELUDE}
return (inspect(KEYS[1], KEYS[2])) or false
`;

/**
 * Saves only if the stored record is the expected one: ARGV[1] its revision ("" = nothing stored)
 * and ARGV[2] the SHA-1 of its bytes, so a planted value that happens to carry the expected
 * revision is never overwritten unseen: the writer gets it back for the codec to judge (R7).
 * KEYS: token key, set-aside name. ARGV[3]: the new value, ARGV[4]: the account, ARGV[5]: the
 * events channel (a channel is not a key: in a Cluster, KEYS must all share the account's slot).
 */
const COMPARE_AND_SET = `${LUA_PRELUDE}
local found, revision = inspect(KEYS[1], KEYS[2])
local matches
if found == nil or found[1] == 'set-aside' then
  matches = ARGV[1] == ''
else
  matches = ARGV[1] ~= '' and tonumber(ARGV[1]) == revision and ARGV[2] == found[3]
end
if not matches then return {'stale', found or {}} end
redis.call('SET', KEYS[1], ARGV[3])
-- The save stands even when its announcement is refused (an ACL without the channel): the others
-- read it later. pcall, so that a refusal is returned, not raised after the SET has landed.
local announced = redis.pcall('PUBLISH', ARGV[5], ARGV[4])
local refused = type(announced) == 'table' and announced.err or false
if found and found[1] == 'set-aside' then return {'saved', found, refused} end
return {'saved', {}, refused}
`;

/** KEYS: key, set-aside name. ARGV[1]: the SHA-1 of the value found bad. */
const SET_ASIDE_IF_UNCHANGED = `${LUA_PRELUDE}
if redis.call('TYPE', KEYS[1]).ok ~= 'string' or redis.call('STRLEN', KEYS[1]) > MAX_RECORD_BYTES then return false end
if redis.sha1hex(redis.call('GET', KEYS[1])) ~= ARGV[1] then return false end
return set_aside(KEYS[1], KEYS[2])
`;

/** A lock key that is not a string with an expiry would block every replica forever. KEYS: lock key, set-aside name. ARGV: holder, ttl ms. */
const OBTAIN_LOCK = `${LUA_PRELUDE}
local kind = redis.call('TYPE', KEYS[1]).ok
local aside = {}
if kind ~= 'none' and kind ~= 'string' then
  aside = {'wrong_type', set_aside(KEYS[1], KEYS[2])}
elseif kind == 'string' and redis.call('PTTL', KEYS[1]) == -1 then
  aside = {'no_expiry', set_aside(KEYS[1], KEYS[2])}
end
local taken = redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX')
return {taken and 1 or 0, aside}
`;

/** Extends or releases a lock only for the holder that owns it. KEYS: lock key. ARGV: holder, (ttl ms). */
const EXTEND_LOCK = `${LUA_PRELUDE}
if holds(KEYS[1], ARGV[1]) then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`;
const RELEASE_LOCK = `${LUA_PRELUDE}
if holds(KEYS[1], ARGV[1]) then return redis.call('DEL', KEYS[1]) end
return 0
`;

/** Reads the record at `key`; a key that cannot be a record is set aside as `<key>:corrupt:<stamp>` (R7). */
export async function readRecord(client: RedisClient, key: string, stamp: string): Promise<Inspection> {
  return parseInspection(await client.eval(READ_RECORD, 2, key, setAsideName(key, stamp)));
}

export interface CompareAndSetRequest {
  key: string;
  /** The pub/sub channel told `account` after a save. */
  channel: string;
  account: string;
  /** null: save only if nothing is stored. */
  expectedRevision: number | null;
  /** SHA-1 (hex) of the expected record's bytes; unknown: the save is refused and the record returned. */
  expectedDigest: string | undefined;
  value: string;
  stamp: string;
}

/**
 * Compare-and-set in one step (T10). `found` is what was there: a value when the save was refused
 * (the record compared against), `set-aside` when a bad key was renamed first (then the save went
 * ahead only if nothing stored was expected). `announceRefused` is Redis's error when a save
 * landed but its announcement on `channel` was refused (an ACL without the channel).
 */
export async function compareAndSet(
  client: RedisClient,
  request: CompareAndSetRequest,
): Promise<{ saved: boolean; found: Inspection; announceRefused?: string }> {
  const { key, channel, account, expectedRevision, expectedDigest, value, stamp } = request;
  const expected = expectedRevision === null ? '' : String(expectedRevision);
  const reply = await client.eval(
    COMPARE_AND_SET,
    2,
    key,
    setAsideName(key, stamp),
    expected,
    expectedDigest ?? '',
    value,
    account,
    channel,
  );
  if (!Array.isArray(reply) || (reply[0] !== 'saved' && reply[0] !== 'stale')) throw unexpectedReply('compare-and-set');
  const found: unknown = reply[1];
  return {
    saved: reply[0] === 'saved',
    found: parseInspection(Array.isArray(found) && found.length === 0 ? null : found),
    ...(typeof reply[2] === 'string' && { announceRefused: reply[2] }),
  };
}

/**
 * Renames `key` to `<key>:corrupt:<stamp>` only if it still holds the value whose SHA-1 is
 * `digest` (the one found bad); resolves the new name, or undefined when the value changed (R7).
 */
export async function setAsideIfUnchanged(
  client: RedisClient,
  key: string,
  digest: string,
  stamp: string,
): Promise<string | undefined> {
  const reply = await client.eval(SET_ASIDE_IF_UNCHANGED, 2, key, setAsideName(key, stamp), digest);
  if (reply === null) return undefined;
  if (typeof reply !== 'string') throw unexpectedReply('set-aside');
  return reply;
}

/** SET NX PX, after setting aside a key that is not a lock (another type, or no expiry). */
export async function obtainLock(
  client: RedisClient,
  key: string,
  holder: string,
  ttlMs: number,
  stamp: string,
): Promise<{ taken: boolean; setAside: LockSetAside | undefined }> {
  const reply = await client.eval(OBTAIN_LOCK, 2, key, setAsideName(key, stamp), holder, String(Math.ceil(ttlMs)));
  if (!Array.isArray(reply) || (reply[0] !== 0 && reply[0] !== 1) || !Array.isArray(reply[1]))
    throw unexpectedReply('obtain-lock');
  const [reason, setAsideAs] = reply[1] as unknown[];
  const setAside = typeof reason === 'string' && typeof setAsideAs === 'string' ? { reason, setAsideAs } : undefined;
  return { taken: reply[0] === 1, setAside };
}

/** True when `holder` still held the lock and its expiry is now `ttlMs` from now. */
export async function extendLock(client: RedisClient, key: string, holder: string, ttlMs: number): Promise<boolean> {
  return (await client.eval(EXTEND_LOCK, 1, key, holder, String(Math.ceil(ttlMs)))) === 1;
}

/** Deletes the lock if `holder` still holds it; anything else at the key is left alone. */
export async function releaseLock(client: RedisClient, key: string, holder: string): Promise<void> {
  await client.eval(RELEASE_LOCK, 1, key, holder);
}

function parseInspection(reply: unknown): Inspection {
  if (reply === null) return { kind: 'absent' };
  if (Array.isArray(reply)) {
    const [kind, first, second] = reply as unknown[];
    if (typeof first === 'string' && typeof second === 'string') {
      if (kind === 'set-aside') return { kind, reason: first, setAsideAs: second };
      if (kind === 'value') return { kind, raw: first, digest: second };
    }
  }
  throw unexpectedReply('read');
}

/** Our own scripts answered in a shape they never give: a bug, or not Redis at the other end. */
function unexpectedReply(script: string): Error {
  return new Error(`unexpected reply to the ${script} script`);
}
