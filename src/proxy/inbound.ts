import { createHash, timingSafeEqual } from 'node:crypto';
import type { BlockList } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { Secret } from '../util/secret.js';
import { AddressList, unmappedAddress } from './address-list.js';

export const API_KEY_HEADER = 'x-sidecar-key';

/** Who may use the data plane: source addresses in `inbound.allow`, plus X-Sidecar-Key when keys are set. */
export class InboundPolicy {
  readonly #allow: AddressList;
  readonly #keys: ApiKeys;

  constructor(allow: BlockList, apiKeys: readonly Secret[]) {
    this.#allow = new AddressList(allow);
    this.#keys = new ApiKeys(apiKeys);
  }

  /**
   * A reason to refuse (403 forbidden), or undefined when the client may proceed. Unix-socket
   * clients have no address (the socket file's permissions are the fence); on TCP a missing
   * address (a socket already gone) fails closed.
   */
  check(req: IncomingMessage, unixSocket = false): string | undefined {
    const address = req.socket.remoteAddress;
    if (address === undefined && !unixSocket) return 'the client address is unknown (the connection is gone)';
    if (address !== undefined && !this.#allow.has(address)) return notAllowedMessage(address);
    if (this.#keys.required && !this.#keys.matches(req.headers[API_KEY_HEADER]))
      return 'missing or invalid X-Sidecar-Key';
    return undefined;
  }
}

/** F5: the 403 names the client's address and the setting that would let it in. */
function notAllowedMessage(address: string): string {
  return `client address ${unmappedAddress(address)} is not allowed: add it (or a range holding it) to inbound.allow, or --allow in quick mode`;
}

/** A set of API keys (`inbound.apiKeys`, `admin.apiKeys`), kept as digests and compared in constant time. */
export class ApiKeys {
  readonly #digests: Buffer[];

  constructor(keys: readonly Secret[]) {
    this.#digests = keys.map((key) => sha256(key.reveal()));
  }

  /** True when at least one key is configured: requests must then present one. */
  get required(): boolean {
    return this.#digests.length > 0;
  }

  /** Constant time: every configured key is compared, over fixed-length digests. False for no or several values. */
  matches(value: string | string[] | undefined): boolean {
    if (typeof value !== 'string') return false;
    const digest = sha256(value);
    let matched = false;
    for (const key of this.#digests) matched = timingSafeEqual(digest, key) || matched;
    return matched;
  }
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
