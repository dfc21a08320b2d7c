import { BlockList } from 'node:net';
import { AddressList } from './address-list.js';

/**
 * S2: the clients whose forwarding headers (`Forwarded`, `X-Real-IP`, `X-Forwarded-*`) are believed:
 * `inbound.trustedProxies`. With none configured (the default) the answer is "no" without a lookup,
 * so the hot path pays one comparison.
 */
export class TrustedProxies {
  readonly #list: AddressList | undefined;

  /** `list`: the resolved `inbound.trustedProxies`; an empty list trusts no one. */
  constructor(list: BlockList = new BlockList()) {
    const addresses = new AddressList(list);
    this.#list = addresses.empty ? undefined : addresses;
  }

  /** True when `address` (a socket's remoteAddress; undefined for a unix socket) is a trusted proxy. Never throws. */
  trusts(address: string | undefined): boolean {
    return this.#list !== undefined && address !== undefined && this.#list.has(address);
  }
}
