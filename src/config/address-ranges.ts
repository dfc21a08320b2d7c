import { BlockList, isIP } from 'node:net';
import type { ConfigProblem } from './problems.js';

// Address lists of the configuration (`inbound.allow`, `inbound.trustedProxies`, `admin.allow`):
// parsing, the nearest fix for a bad entry, and whether a list lets everyone in (S4).

/**
 * A list of addresses and CIDR ranges (`inbound.allow`, `inbound.trustedProxies`, `admin.allow`)
 * as a BlockList; each entry that is not one is a problem at `path.INDEX`, with the nearest fix.
 */
export function buildAddressList(entries: readonly string[], path: string, problems: ConfigProblem[]): BlockList {
  const list = new BlockList();
  entries.forEach((entry, index) => {
    const range = addressRangeOf(entry);
    if (range === undefined) {
      const fix = addressRangeFix(entry);
      problems.push({
        path: `${path}.${index}`,
        message: `not an address or CIDR range: ${JSON.stringify(entry)}${fix === undefined ? '' : ` (${fix})`}`,
      });
      return;
    }
    list.addSubnet(range.address, range.prefix, range.family);
  });
  return list;
}

/**
 * The nearest valid entry to a wrong one, in words: a prefix too long for its family, a host name
 * (ranges are addresses), a wildcard (`10.0.*`) written as a range. Undefined when none is near.
 */
export function addressRangeFix(entry: string): string | undefined {
  const text = entry.trim();
  const [address = '', prefix] = text.split('/', 2);
  const family = isIP(address);
  if (family !== 0 && prefix !== undefined && /^\d+$/.test(prefix))
    return `the prefix is at most /${family === 6 ? 128 : 32} for an IPv${family} address`;
  if (family !== 0) return `write ${address}/PREFIX, e.g. ${address}/${family === 6 ? 64 : 24}`;
  if (address === 'localhost') return 'for loopback write 127.0.0.0/8 and ::1/128';
  const wildcard = /^(\d{1,3}(?:\.\d{1,3}){0,2})\.\*(?:\.\*)*$/.exec(text);
  if (wildcard !== null) {
    const octets = wildcard[1]!.split('.');
    return `did you mean ${[...octets, ...Array<string>(4 - octets.length).fill('0')].join('.')}/${octets.length * 8}?`;
  }
  if (text === '*' || text === 'all' || text === 'any') return 'for any address write 0.0.0.0/0 and ::/0';
  return /^[A-Za-z]/.test(text) ? 'host names are not allowed: write the address or range' : undefined;
}

/**
 * S4: true when `entries` (CIDRs or addresses; others ignored) together cover every IPv4 address
 * or every IPv6 address, however the ranges are cut (`0.0.0.0/1` + `128.0.0.0/1` is everyone).
 */
export function coversAFamily(entries: readonly string[]): boolean {
  return (['ipv4', 'ipv6'] as const).some((family) => {
    const bits = family === 'ipv4' ? 32n : 128n;
    const ranges = entries
      .map((entry) => addressRangeOf(entry))
      .filter((range) => range?.family === family)
      .map((range) => {
        const size = 1n << (bits - BigInt(range!.prefix));
        const start = (addressValue(range!.address, family) / size) * size;
        return { start, end: start + size };
      })
      .sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    let covered = 0n;
    for (const range of ranges) {
      if (range.start > covered) return false;
      if (range.end > covered) covered = range.end;
    }
    return covered === 1n << bits;
  });
}

/** An IP address as a number (IPv6 with `::` and a dotted IPv4 tail expanded). */
function addressValue(address: string, family: 'ipv4' | 'ipv6'): bigint {
  if (family === 'ipv4') return address.split('.').reduce((value, part) => (value << 8n) | BigInt(Number(part)), 0n);
  let text = address;
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail) {
    const v4 = addressValue(tail[1]!, 'ipv4');
    text = `${text.slice(0, -tail[1]!.length)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = '', rest] = text.split('::');
  const groups = (part: string | undefined) => (part === undefined || part === '' ? [] : part.split(':'));
  const left = groups(head);
  const right = groups(rest);
  const all =
    rest === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return all.reduce((value, group) => (value << 16n) | BigInt(Number.parseInt(group, 16)), 0n);
}

/**
 * An `inbound.allow` entry (`10.0.0.0/8`, `::1`, `192.168.1.7`) as a subnet, or undefined when it
 * is not exactly an address or a CIDR range. Strict: "10.0.0.0/" or "10.0.0.0/8/16" must not
 * quietly become a wider range.
 */
export function addressRangeOf(
  entry: string,
): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const match = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(entry.trim());
  const address = match?.[1] ?? '';
  const family = isIP(address);
  const maxPrefix = family === 6 ? 128 : 32;
  const prefix = match?.[2] === undefined ? maxPrefix : Number(match[2]);
  if (match === null || family === 0 || prefix > maxPrefix) return undefined;
  return { address, prefix, family: family === 6 ? 'ipv6' : 'ipv4' };
}
