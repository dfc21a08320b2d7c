import { messageOf } from '../util/errors.js';
import { readSecretFileAtStart, SecretFile } from '../util/secret-file.js';
import type { SecretSource } from '../util/secret-source.js';
import { parsePrivateSigningKey, readPrivateSigningKey } from '../util/signing-key.js';
import type { Secret } from '../util/secret.js';
import { loadDpopKey, type DpopKey } from '../util/dpop-key.js';
import type { ConfigProblem } from './problems.js';
import type { OAuth2AuthConfig } from './schema.js';
import { checkCertificatePair, secretSource } from './secret-settings.js';

export interface OAuth2Auth extends Omit<
  OAuth2AuthConfig,
  | 'clientSecret'
  | 'clientSecretFile'
  | 'password'
  | 'passwordFile'
  | 'refreshToken'
  | 'refreshTokenFile'
  | 'assertionFile'
  | 'subjectTokenFile'
  | 'actorTokenFile'
  | 'dpop'
> {
  clientSecret?: SecretSource;
  password?: SecretSource;
  refreshToken?: SecretSource;
  /** E3: the jwt_bearer assertion, and token_exchange's subject and actor tokens (files, read at every request). */
  assertion?: SecretSource;
  subjectToken?: SecretSource;
  actorToken?: SecretSource;
  /** E1: `privateKeyFile` as a watched file (R6: its last good content is used while it cannot be read). */
  privateKey?: SecretFile;
  /** E4: the DPoP key, loaded (or generated) once at start; undefined without `auth.dpop`. */
  dpop?: DpopKey;
}

/** The oauth2 dialect's settings: secrets read, and what each grant and client authentication needs. */
export function resolveOAuth2(
  auth: OAuth2AuthConfig,
  path: string,
  problems: ConfigProblem[],
  context: { chainInStore: boolean },
): OAuth2Auth {
  const { clientSecret, clientSecretFile, password, passwordFile, refreshToken, refreshTokenFile, ...others } = auth;
  const { assertionFile, subjectTokenFile, actorTokenFile, dpop, ...rest } = others;
  const resolved: OAuth2Auth = {
    ...rest,
    clientSecret: secretSource(clientSecret, clientSecretFile, `${path}.clientSecret`, problems),
    password: secretSource(password, passwordFile, `${path}.password`, problems),
    refreshToken: secretSource(refreshToken, refreshTokenFile, `${path}.refreshToken`, problems),
    assertion: secretSource(undefined, assertionFile, `${path}.assertion`, problems),
    subjectToken: secretSource(undefined, subjectTokenFile, `${path}.subjectToken`, problems),
    actorToken: secretSource(undefined, actorTokenFile, `${path}.actorToken`, problems),
  };
  checkGrantInputs(resolved, path, problems);
  if (resolved.grant === 'password') {
    if (resolved.username === undefined)
      problems.push({ path: `${path}.username`, message: 'required for grant password' });
    if (resolved.password === undefined)
      problems.push({ path: `${path}.password`, message: 'required for grant password (password or passwordFile)' });
  }
  // With a file/redis store the chain may live there alone (put there by `bearer-sidecar authorize`).
  if (resolved.grant === 'refresh_token' && resolved.refreshToken === undefined && !context.chainInStore) {
    problems.push({
      path: `${path}.refreshToken`,
      message:
        'required for grant refresh_token with the memory store (refreshToken or refreshTokenFile; bearer-sidecar authorize makes one)',
    });
  }
  if (resolved.grant === 'client_credentials' && resolved.clientId === undefined) {
    problems.push({ path: `${path}.clientId`, message: 'required for grant client_credentials' });
  }
  if (resolved.clientSecret !== undefined && resolved.clientId === undefined) {
    problems.push({ path: `${path}.clientId`, message: 'required when a client secret is set' });
  }
  checkClientAuth(resolved, path, problems);
  if (dpop !== undefined) {
    try {
      resolved.dpop = loadDpopKey(dpop.keyFile);
    } catch (error) {
      problems.push({ path: `${path}.dpop.keyFile`, message: messageOf(error) });
    }
  }
  return resolved;
}

/**
 * E3: what the jwt_bearer and token_exchange grants need, and their settings under other grants.
 * jwt_bearer takes `assertionFile`, or signs its own assertion with `privateKeyFile` (checked as
 * for private_key_jwt).
 */
function checkGrantInputs(auth: OAuth2Auth, path: string, problems: ConfigProblem[]): void {
  const grant = auth.grant;
  const misplaced = (key: string, owner: string) =>
    problems.push({ path: `${path}.${key}`, message: `only used with grant ${owner} (it is ${grant})` });
  if (grant !== 'jwt_bearer' && auth.assertion !== undefined) misplaced('assertionFile', 'jwt_bearer');
  if (grant !== 'token_exchange')
    for (const key of ['subjectToken', 'actorToken', 'actorTokenType', 'requestedTokenType', 'resource'] as const)
      if (auth[key] !== undefined)
        misplaced(key === 'subjectToken' || key === 'actorToken' ? `${key}File` : key, 'token_exchange');
  if (grant === 'jwt_bearer' && auth.assertion === undefined) {
    if (auth.privateKeyFile === undefined)
      problems.push({
        path: `${path}.assertionFile`,
        message:
          'required for grant jwt_bearer (e.g. a projected service-account token), or privateKeyFile to sign one',
      });
    else if (auth.clientId === undefined)
      problems.push({ path: `${path}.clientId`, message: 'required to sign a jwt_bearer assertion (its iss and sub)' });
    else if (auth.clientAuth !== 'private_key_jwt') checkPrivateKey(auth, path, problems, 'grant jwt_bearer');
  }
  if (grant === 'token_exchange' && auth.subjectToken === undefined)
    problems.push({
      path: `${path}.subjectTokenFile`,
      message: 'required for grant token_exchange: the token to exchange',
    });
  if (auth.actorTokenType !== undefined && auth.actorToken === undefined)
    problems.push({ path: `${path}.actorTokenType`, message: 'only used with actorTokenFile' });
}

/**
 * E1: what each `clientAuth` needs, and settings no method would use. A private key is read and
 * checked against `signingAlg` now, so a bad key stops start-up (exit 2) instead of every login.
 */
function checkClientAuth(auth: OAuth2Auth, path: string, problems: ConfigProblem[]): void {
  const method = auth.clientAuth;
  const jwt = method === 'private_key_jwt' || method === 'client_secret_jwt';
  if ((jwt || method === 'none' || method === 'tls_client_auth') && auth.clientId === undefined)
    problems.push({ path: `${path}.clientId`, message: `required for clientAuth ${method}` });
  const signsGrant = auth.grant === 'jwt_bearer' && auth.assertion === undefined;
  if (!jwt && !signsGrant)
    for (const key of ['privateKeyFile', 'signingAlg', 'keyId'] as const)
      if (auth[key] !== undefined)
        problems.push({
          path: `${path}.${key}`,
          message: `only used with clientAuth private_key_jwt or client_secret_jwt (it is ${method})`,
        });
  if (method === 'none' && auth.clientSecret !== undefined)
    problems.push({
      path: `${path}.clientSecret`,
      message:
        'clientAuth none sends no client authentication: remove the secret, or use basic, body or client_secret_jwt',
    });
  if (method === 'client_secret_jwt') {
    if (auth.clientSecret === undefined)
      problems.push({
        path: `${path}.clientSecret`,
        message: 'required for clientAuth client_secret_jwt (clientSecret or clientSecretFile)',
      });
    // E3: a jwt_bearer grant signed with privateKeyFile owns signingAlg; the client's HMAC is then HS256.
    if (auth.privateKeyFile !== undefined && !signsGrant)
      problems.push({ path: `${path}.privateKeyFile`, message: 'only used with clientAuth private_key_jwt' });
    if (auth.privateKeyFile === undefined && auth.signingAlg !== undefined && !auth.signingAlg.startsWith('HS'))
      problems.push({ path: `${path}.signingAlg`, message: 'client_secret_jwt signs with HS256, HS384 or HS512' });
  }
  if (method === 'private_key_jwt') checkPrivateKey(auth, path, problems);
  if (method === 'tls_client_auth' && auth.tls === undefined)
    problems.push({ path: `${path}.tls`, message: 'required for clientAuth tls_client_auth: { certFile, keyFile }' });
  if (method !== 'tls_client_auth' && auth.tls !== undefined)
    problems.push({ path: `${path}.tls`, message: `only used with clientAuth tls_client_auth (it is ${method})` });
  if (method === 'tls_client_auth' && auth.tls !== undefined) checkCertificatePair(auth.tls, `${path}.tls`, problems);
}

function checkPrivateKey(
  auth: OAuth2Auth,
  path: string,
  problems: ConfigProblem[],
  forWhat = 'clientAuth private_key_jwt',
): void {
  if (auth.privateKeyFile === undefined) {
    problems.push({
      path: `${path}.privateKeyFile`,
      message: `required for ${forWhat}: a PKCS#8 PEM or a private JWK file`,
    });
    return;
  }
  if (auth.clientSecret !== undefined && auth.clientAuth === 'private_key_jwt')
    problems.push({ path: `${path}.clientSecret`, message: 'not used with clientAuth private_key_jwt: remove it' });
  try {
    const file = auth.privateKeyFile;
    const options = { alg: auth.signingAlg, keyId: auth.keyId };
    readPrivateSigningKey(file, options);
    // R6: a rewrite that is not a usable key keeps the last good one, as an unreadable file does.
    const check = (text: Secret) => void parsePrivateSigningKey(text.reveal(), file, options);
    auth.privateKey = new SecretFile(file, readSecretFileAtStart(file), check);
  } catch (error) {
    const message = messageOf(error);
    problems.push({ path: `${path}.${message.includes('signingAlg') ? 'signingAlg' : 'privateKeyFile'}`, message });
  }
}
