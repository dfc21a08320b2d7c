import type { Secret } from './secret.js';
import type { SecretFile } from './secret-file.js';

/** Where a secret comes from: inline (after ${VAR} expansion) or a file read at each use. */
export type SecretSource = { kind: 'value'; secret: Secret } | SecretFile;

/**
 * Reads a secret at the moment it is needed. Files are re-read every time so a rotated
 * Kubernetes Secret takes effect without a restart; only trailing CR/LF is removed (§8); a file
 * that fails or reads empty later keeps its last good value (R6, see SecretFile).
 */
export async function readSecret(source: SecretSource): Promise<Secret> {
  return source.kind === 'value' ? source.secret : source.read();
}
