import { createHash, timingSafeEqual } from 'node:crypto';
import type { BlockList } from 'node:net';
import { LRUCache } from 'lru-cache';
import type { IncomingMessage } from 'node:http';
import type { Secret } from '../util/secret.js';

export const API_KEY_HEADER = 'x-sidecar-key';

/** Who may use the data plane: source addresses in `inbound.allow`, plus X-Sidecar-Key when keys are set. */
export class InboundPolicy {
  readonly #allow: BlockList;
  readonly #keyDigests: Buffer[];
  readonly #decisions = new LRUCache<string, boolean>({ max: 4096 });

  constructor(allow: BlockList, apiKeys: readonly Secret[]) {
    this.#allow = allow;
    this.#keyDigests = apiKeys.map((key) => sha256(key.reveal()));
  }

  /**
   * A reason to refuse (403 forbidden), or undefined when the client may proceed. Unix-socket
   * clients have no address (the socket file's permissions are the fence); on TCP a missing
   * address (a socket already gone) fails closed.
   */
  check(req: IncomingMessage, unixSocket = false): string | undefined {
    const address = req.socket.remoteAddress;
    if (address === undefined && !unixSocket) return 'the client address is unknown (the connection is gone)';
    if (address !== undefined && !this.#addressAllowed(address)) return notAllowedMessage(address);
    if (this.#keyDigests.length > 0 && !this.#keyMatches(req.headers[API_KEY_HEADER]))
      return 'missing or invalid X-Sidecar-Key';
    return undefined;
  }

  #addressAllowed(address: string): boolean {
    // BlockList.check builds a SocketAddress per call; clients are few, so decisions are cached.
    let allowed = this.#decisions.get(address);
    if (allowed === undefined) {
      const mapped = unmapped(address);
      allowed = this.#allow.check(mapped, mapped.includes(':') ? 'ipv6' : 'ipv4');
      this.#decisions.set(address, allowed);
    }
    return allowed;
  }

  /** Constant time: every configured key is compared, over fixed-length digests. */
  #keyMatches(header: string | string[] | undefined): boolean {
    if (typeof header !== 'string') return false;
    const digest = sha256(header);
    let matched = false;
    for (const key of this.#keyDigests) matched = timingSafeEqual(digest, key) || matched;
    return matched;
  }
}

/** IPv4 clients of a dual-stack listener appear as ::ffff:a.b.c.d; the allow-list and messages use a.b.c.d. */
function unmapped(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/** F5: the 403 names the client's address and the setting that would let it in. */
function notAllowedMessage(address: string): string {
  return `client address ${unmapped(address)} is not allowed: add it (or a range holding it) to inbound.allow, or --allow in quick mode`;
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
