/**
 * `8080`, `0.0.0.0:8080` or `[::1]:8080` as a raw `{ host, port }` (brackets stripped) for a schema to
 * check: text that is not of that shape comes back as `{ port: text }`. Never throws.
 */
export function parseHostPort(text: string): { host?: string; port: unknown } {
  const match = /^(?:\[([^\]]+)\]:|([^:]+):)?(\d+)$/.exec(text.trim());
  if (!match) return { port: text };
  const host = match[1] ?? match[2];
  return host === undefined ? { port: Number(match[3]) } : { host, port: Number(match[3]) };
}

const LABEL = '[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?';
/**
 * S1: a host name alone (`bearer-sidecar.tools.svc`, at most 253 characters, one trailing dot
 * allowed): labels of letters, digits, `_` and inner `-`, no scheme, port or path. An IPv4
 * literal matches too. Used for `inbound.hosts` and for the Host a client sends.
 */
export const HOST_NAME = new RegExp(`^(?=.{1,253}$)${LABEL}(?:\\.${LABEL})*\\.?$`);
