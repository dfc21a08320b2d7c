import { formatDuration } from '../util/duration.js';
import type { CheckResult } from './check.js';

/** The table for a person: one block per account, the same fields as --json, no secrets. */
export function formatCheckReport(result: CheckResult): string {
  const lines: string[] = [];
  for (const a of result.accounts) {
    const mark = a.good ? 'OK  ' : 'FAIL';
    lines.push(`${mark} ${a.account} (${a.dialect})`);
    const rows: Array<[string, string | null]> = [
      ['token endpoint', a.tokenEndpoint],
      ['client auth', a.clientAuth],
      ['dpop key', a.dpop === null ? null : `${a.dpop.alg}, ${a.dpop.key}, jkt ${a.dpop.jkt ?? ''}`],
      ['proxy', formatProxies(a.proxy)],
      [
        'checked',
        a.method === 'token_request'
          ? `${a.kind ?? 'token'} request sent`
          : a.method === 'store'
            ? `${result.store} store read (nothing sent)`
            : 'nothing sent',
      ],
      [
        'outcome',
        `${a.outcome}${a.detail === '' ? '' : `: ${a.detail}`}${a.durationMs === null ? '' : ` (${a.durationMs} ms)`}`,
      ],
      [
        'lifetime',
        a.lifetimeSeconds === null
          ? null
          : `${formatDuration(a.lifetimeSeconds * 1000)}${a.lifetimeSource === null || a.lifetimeSource === 'lifetime' ? '' : ` (from ${a.lifetimeSource})`}${a.anomalies.length > 0 ? `; anomalies: ${a.anomalies.join(', ')}` : ''}`,
      ],
      ['expires', a.expiresAt === null ? null : `${a.expiresAt} (local clock)`],
      [
        'clock skew',
        a.clockSkewSeconds === null
          ? null
          : `${a.clockSkewSeconds >= 0 ? '+' : ''}${a.clockSkewSeconds}s (server Date minus local time)`,
      ],
      ['fingerprint', a.fingerprint],
      ['refresh token', a.hasRefreshToken === null ? null : a.hasRefreshToken ? 'yes' : 'no'],
      ['revision', a.revision === null ? null : String(a.revision)],
      ['next', a.next],
    ];
    for (const [key, value] of rows) if (value !== null) lines.push(`     ${key.padEnd(15)} ${value}`);
    lines.push('');
  }
  const bad = result.accounts.filter((a) => !a.good).length;
  lines.push(
    `${result.accounts.length} account${result.accounts.length === 1 ? '' : 's'}: ${result.accounts.length - bad} good${bad > 0 ? `, ${bad} with a problem` : ''} (store: ${result.store}${result.login ? ', --login' : ''})`,
  );
  return `${lines.join('\n')}\n`;
}

/** E6: `direct`, one proxy for both, or each one named. */
function formatProxies(proxy: { tokenEndpoint: string; upstream: string }): string {
  if (proxy.tokenEndpoint === proxy.upstream) return `${proxy.tokenEndpoint}, for the token endpoint and the upstream`;
  return `token endpoint: ${proxy.tokenEndpoint}; upstream: ${proxy.upstream}`;
}
