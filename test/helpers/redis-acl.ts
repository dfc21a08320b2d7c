/**
 * The least a Redis user of the store needs, as docs/behaviour.md lists it: its own keys and events
 * channel; INFO (the client's ready check, and the store's look for a connected replica); EVAL and
 * the commands of the store's Lua scripts (an ACL applies inside a script too); WAIT and
 * SUBSCRIBE. HELLO is allowed to every user, and ioredis goes on when CLIENT SETINFO is refused.
 * `prefix` is the start of the key prefixes (and so of the channel) the user may use.
 */
export function leastStoreAcl(user: string, password: string, prefix: string): string[] {
  return [
    'SETUSER',
    user,
    'reset',
    'on',
    `>${password}`,
    `~${prefix}*`,
    `&${prefix}*`,
    '+info',
    '+eval',
    '+wait',
    '+subscribe',
    ...['+exists', '+type', '+strlen', '+get', '+set', '+rename', '+pexpire', '+pttl', '+del', '+publish'],
  ];
}
