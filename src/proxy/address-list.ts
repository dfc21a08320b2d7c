import type { BlockList } from 'node:net';
import { LRUCache } from 'lru-cache';

/**
 * A list of client addresses and ranges (`inbound.allow`, `inbound.trustedProxies`,
 * `admin.allow`) asked on every request. BlockList.check builds a SocketAddress per call;
 * clients are few, so each address's answer is cached.
 */
export class AddressList {
  readonly #list: BlockList;
  readonly #decisions = new LRUCache<string, boolean>({ max: 4096 });
  /** The last address asked and its answer: most requests come from one client, and this skips the LRU's bookkeeping. */
  #last: { address: string; found: boolean } | undefined;

  constructor(list: BlockList) {
    this.#list = list;
  }

  /** True when no address is in the list (nothing to look up). */
  get empty(): boolean {
    return this.#list.rules.length === 0;
  }

  /** True when `address` (a socket's remoteAddress, IPv4-mapped or not) is in the list. Never throws. */
  has(address: string): boolean {
    if (this.#last?.address === address) return this.#last.found;
    let found = this.#decisions.get(address);
    if (found === undefined) {
      const plain = unmappedAddress(address);
      found = this.#list.check(plain, plain.includes(':') ? 'ipv6' : 'ipv4');
      this.#decisions.set(address, found);
    }
    this.#last = { address, found };
    return found;
  }
}

/** IPv4 clients of a dual-stack listener appear as ::ffff:a.b.c.d; the lists and messages use a.b.c.d. */
export function unmappedAddress(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
