/** Plain words for the socket errors a token endpoint or an upstream can produce. */
const DESCRIPTIONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed while sending',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host name does not resolve',
  EAI_AGAIN: 'host name does not resolve (temporary)',
};

export function describeNetworkError(error: NodeJS.ErrnoException): string {
  const code = error.code ?? 'error';
  return DESCRIPTIONS[code] ?? `${code}: ${error.message}`;
}
