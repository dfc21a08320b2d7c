import { randomBytes } from 'node:crypto';
import { credentialsFingerprint } from '../config/credentials-fingerprint.js';
import { ConfigError } from '../config/load.js';
import type { AccountConfig, ConfigProblem, OAuth2Auth, SidecarConfig } from '../config/resolve.js';
import { tokenEndpointTls } from '../config/tls.js';
import { sendTokenRequest } from '../flows/http-client.js';
import { TokenEgress } from '../flows/proxy-agent.js';
import {
  buildAuthorizationCodeRequest,
  makeClientAssertion,
  buildAuthorizeUrl,
  parseOAuth2Response,
  pkceChallenge,
  type AuthorizationCodeGrant,
} from '../flows/oauth2.js';
import { createStore } from '../stores/index.js';
import type { TokenState, TokenStore } from '../stores/types.js';
import { exchangeToken } from '../tokens/exchange.js';
import type { SendTokenRequest } from '../tokens/types.js';
import { formatDuration } from '../util/duration.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { checkWritableTarget, UnsafeFileError, writeRegularFile } from '../util/safe-file.js';
import { Secret } from '../util/secret.js';
import { readSecret } from '../util/secret-source.js';
import { AuthorizeError, startRedirectListener } from './redirect-listener.js';
import { messageOf } from '../util/errors.js';

/*
 * `bearer-sidecar authorize ACCOUNT` (docs/contract.md §2, seed 004): the one-time authorization_code
 * bootstrap. PKCE S256, a loopback redirect listener on 127.0.0.1, state checked in constant
 * time, the code exchanged as the account's token requests are (clientAuth, bodyEncoding), and
 * the refresh token stored where the sidecar will pick the chain up.
 */

export { AuthorizeError, REDIRECT_PATH } from './redirect-listener.js';
export const DEFAULT_REDIRECT_TIMEOUT_MS = 5 * 60_000;

export interface AuthorizeOptions {
  account: string;
  /** Also write the refresh token here (mode 0600). */
  out?: string;
  redirectTimeoutMs?: number;
  /** Where instructions go (the terminal). Called with the URL to open before waiting. */
  print(text: string): void;
  store?: TokenStore;
  send?: SendTokenRequest;
  now?: () => number;
  logger?: Logger;
}

export interface AuthorizeResult {
  account: string;
  redirectUri: string;
  /** Fingerprints only: what the operator can compare with /status. */
  accessTokenFingerprint: string;
  refreshTokenFingerprint: string;
  expiresAt: string;
  /** Revision written to a file/redis store. */
  storedRevision: number | undefined;
  outFile: string | undefined;
}

type AuthorizableAuth = OAuth2Auth & { authorizeUrl: string; clientId: string };

export async function runAuthorize(config: SidecarConfig, options: AuthorizeOptions): Promise<AuthorizeResult> {
  const account = authorizableAccount(config, options.account);
  if (options.out !== undefined) checkOutFile(options.out);
  const auth = account.auth as AuthorizableAuth;
  const logger = options.logger ?? silentLogger();
  const verifier = new Secret(randomBytes(32).toString('base64url'));
  const { code, redirectUri } = await waitForCode(account, auth, verifier, options, logger);
  const { state, refreshToken } = await exchangeCode(
    account,
    auth,
    { code, redirectUri, codeVerifier: verifier },
    options,
  );

  const storedRevision =
    config.store.type === 'memory'
      ? undefined
      : await saveToStore(
          config,
          account.name,
          { ...state, credentials: await runningFingerprint(auth) },
          options.store,
          logger,
        );
  if (options.out !== undefined) await writeSecretFile(options.out, refreshToken);
  options.print(
    nextSteps(config, account.name, { storedRevision, out: options.out, refreshToken, expiresAt: state.expiresAt }),
  );
  return {
    account: account.name,
    redirectUri,
    accessTokenFingerprint: state.accessToken.fingerprint(),
    refreshTokenFingerprint: refreshToken.fingerprint(),
    expiresAt: new Date(state.expiresAt).toISOString(),
    storedRevision,
    outFile: options.out,
  };
}

/** The browser part: print the URL to open, wait for the redirect that carries our state, and return its code. */
async function waitForCode(
  account: AccountConfig,
  auth: AuthorizableAuth,
  verifier: Secret,
  options: AuthorizeOptions,
  logger: Logger,
): Promise<{ code: string; redirectUri: string }> {
  const state = randomBytes(16).toString('base64url');
  const listener = await startRedirectListener(auth.redirectPort ?? 0, state, logger);
  try {
    const url = buildAuthorizeUrl(auth, {
      redirectUri: listener.redirectUri,
      state,
      codeChallenge: pkceChallenge(verifier),
    });
    const timeoutMs = options.redirectTimeoutMs ?? DEFAULT_REDIRECT_TIMEOUT_MS;
    options.print(
      [
        `Authorizing account ${account.name} (authorization_code with PKCE).`,
        `Open this URL in a browser on this machine and sign in; it comes back to ${listener.redirectUri}`,
        `(register that redirect URI with the client ${auth.clientId} if the server asks):`,
        '',
        `  ${url.href}`,
        '',
        `Waiting up to ${formatDuration(timeoutMs)} for the redirect (Ctrl-C gives up)...`,
        '',
      ].join('\n'),
    );
    return { code: await listener.code(timeoutMs), redirectUri: listener.redirectUri };
  } finally {
    await listener.close();
  }
}

/**
 * The code exchange (RFC 6749 §4.1.3), through the same token exchange as the sidecar's own
 * requests (clientAuth, bodyEncoding, R4 scrubbing, lifetime). It must yield a refresh token.
 */
async function exchangeCode(
  account: AccountConfig,
  auth: AuthorizableAuth,
  grant: AuthorizationCodeGrant,
  options: AuthorizeOptions,
): Promise<{ state: TokenState; refreshToken: Secret }> {
  const send = options.send ?? sendTokenRequest;
  const tokenTls = tokenEndpointTls(account);
  const egress = new TokenEgress(account.egress, { tls: tokenTls, connectTimeoutMs: account.timeouts.connectMs });
  const result = await exchangeToken(
    {
      build: async () => {
        const clientSecret = auth.clientSecret === undefined ? undefined : await readSecret(auth.clientSecret);
        const clientAssertion = await makeClientAssertion(auth, clientSecret);
        const request = buildAuthorizationCodeRequest(auth, grant, { clientSecret, clientAssertion });
        return { kind: 'login', request, spends: undefined };
      },
      send: (request) => send(request, { timeoutMs: account.refresh.timeoutMs, ...tokenTls, egress }),
      parse: (response, secrets) => parseOAuth2Response(response, secrets),
      rotatesRefreshTokens: false,
    },
    { clock: { now: options.now ?? Date.now }, policy: account.refresh },
  ).finally(() => egress.close());
  if (result.outcome === 'unbuildable') throw result.error;
  if (result.outcome === 'error' && result.thrown !== undefined)
    throw new AuthorizeError(`code exchange at ${auth.tokenUrl} failed: ${result.thrown.message}`);
  if (result.outcome !== 'success') throw new AuthorizeError(`code exchange ${result.outcome}: ${result.reason}`);
  const refreshToken = result.issued.refreshToken;
  if (refreshToken === undefined) {
    throw new AuthorizeError(
      'the token endpoint issued no refresh token: ask for offline access (e.g. scope "offline_access"), and allow the client grant refresh_token',
    );
  }
  return { state: result.state, refreshToken };
}

/** The account must speak OAuth 2 and say where to send the browser (else ConfigError: exit 2, each problem by path). */
function authorizableAccount(config: SidecarConfig, name: string): AccountConfig {
  const account = config.accounts.find((candidate) => candidate.name === name);
  if (account === undefined) {
    throw new ConfigError([
      {
        path: `accounts.${name}`,
        message: `no such account (accounts: ${config.accounts.map((a) => a.name).join(', ')})`,
      },
    ]);
  }
  const path = `accounts.${name}.auth`;
  if (account.auth.flow !== 'oauth2')
    throw new ConfigError([
      { path: `${path}.flow`, message: `authorize needs flow oauth2 (authorization_code), not ${account.auth.flow}` },
    ]);
  const problems: ConfigProblem[] = [];
  if (account.auth.authorizeUrl === undefined)
    problems.push({
      path: `${path}.authorizeUrl`,
      message: "required for bearer-sidecar authorize (the server's authorization endpoint)",
    });
  if (account.auth.clientId === undefined)
    problems.push({ path: `${path}.clientId`, message: 'required for bearer-sidecar authorize' });
  if (problems.length > 0) throw new ConfigError(problems);
  return account;
}

/**
 * H2: the fingerprint of the credentials that will run the stored chain: the account's `auth` with
 * `grant: refresh_token`, as the printed next step says to set it, so only replicas running them
 * adopt it (not those still on other credentials).
 */
function runningFingerprint(auth: OAuth2Auth): Promise<string> {
  return credentialsFingerprint({ ...auth, grant: 'refresh_token' });
}

/** Compare-and-set against what is stored, so a chain saved meanwhile is replaced knowingly, never blindly. */
async function saveToStore(
  config: SidecarConfig,
  account: string,
  state: TokenState,
  given: TokenStore | undefined,
  logger: Logger,
): Promise<number> {
  const store = given ?? createStore(config.store, logger);
  try {
    await store.ready?.();
    for (let attempt = 0; attempt < 3; attempt++) {
      const current = await store.load(account);
      const result = await store.save(account, state, current?.revision ?? null);
      if (result.saved) return result.record.revision;
    }
    throw new AuthorizeError(`the ${config.store.type} store kept changing while saving; run authorize again`);
  } catch (error) {
    if (error instanceof AuthorizeError) throw error;
    throw new AuthorizeError(`cannot save to the ${config.store.type} store: ${messageOf(error)}`);
  } finally {
    if (given === undefined) await store.close();
  }
}

/** R5: a --out that could not be written is refused before the browser dance, not after it (exit 2). */
function checkOutFile(path: string): void {
  try {
    checkWritableTarget(path);
  } catch (error) {
    if (error instanceof UnsafeFileError) throw new ConfigError([{ path: '--out', message: error.message }]);
    throw error;
  }
}

async function writeSecretFile(path: string, secret: Secret): Promise<void> {
  try {
    // R5: mode 0600, never through a symlink, never blocking on a FIFO.
    await writeRegularFile(path, `${secret.reveal()}\n`, { mode: 0o600 });
  } catch (error) {
    const reason =
      error instanceof UnsafeFileError ? error.message : ((error as NodeJS.ErrnoException).code ?? messageOf(error));
    throw new AuthorizeError(`cannot write --out ${path}: ${reason}`);
  }
}

function nextSteps(
  config: SidecarConfig,
  account: string,
  done: { storedRevision: number | undefined; out: string | undefined; refreshToken: Secret; expiresAt: number },
): string {
  const lines = [
    '',
    `Authorized: account ${account} has a refresh token (fingerprint ${done.refreshToken.fingerprint()}); the access token expires ${new Date(done.expiresAt).toISOString()}.`,
  ];
  if (done.storedRevision !== undefined) {
    lines.push(
      `Saved to the ${config.store.type} store (revision ${done.storedRevision}).`,
      '',
      'Next:',
      `  1. In accounts.${account}.auth set  grant: refresh_token  (no refreshToken needed: the chain lives in the store).`,
      config.store.type === 'redis'
        ? '  2. Running sidecars on this Redis adopt the new chain at once; others pick it up when they start.'
        : '  2. Start (or restart) the sidecar: it uses the stored token and goes on with the refresh token chain.',
    );
  }
  if (done.out !== undefined) lines.push(`Wrote the refresh token to ${done.out} (mode 0600).`);
  if (done.storedRevision === undefined) {
    if (done.out === undefined) {
      lines.push(
        '',
        'The refresh token (a secret: keep it out of shell history, tickets and logs):',
        '',
        `  ${done.refreshToken.reveal()}`,
        '',
        'Put it in a file only the sidecar can read (e.g. umask 077; cat > /secrets/refresh-token, paste, Ctrl-D),',
        'or run authorize again with --out FILE to have it written (mode 0600).',
      );
    }
    lines.push(
      '',
      'Next:',
      `  1. In accounts.${account}.auth set  grant: refresh_token  and  refreshTokenFile: ${done.out ?? '/secrets/refresh-token'}`,
      '  2. Start the sidecar. With the memory store the chain is kept in memory only: a restart needs a fresh',
      '     authorize if the server rotates refresh tokens; a file or redis store keeps the chain across restarts.',
    );
  }
  return `${lines.join('\n')}\n`;
}
