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
