/**
 * The least a Redis user of the store needs, as docs/behaviour.md lists it: its own keys and events
 * channel, and the commands of the client's handshake (HELLO, CLIENT SETINFO, the INFO of its
 * ready check), of the store's Lua scripts (an ACL applies inside EVAL too), of WAIT and
 * SUBSCRIBE. `prefix` is the start of the key prefixes (and so of the channel) it may use.
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
