import type { AuthConfig } from '../config/resolve.js';
import { createOAuth2Flow } from './oauth2.js';
import { createSessionFlow } from './session.js';
import type { TokenFlow } from './types.js';

export function createFlow(auth: AuthConfig): TokenFlow {
  return auth.flow === 'session' ? createSessionFlow(auth) : createOAuth2Flow(auth);
}
