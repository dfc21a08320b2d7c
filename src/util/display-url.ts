/** A URL as shown to operators: never with userinfo, never with a query (F6). */
export function displayUrl(url: URL | string): string {
  const parsed = typeof url === 'string' ? new URL(url) : url;
  return `${parsed.origin}${parsed.pathname === '/' ? '' : parsed.pathname}`;
}
