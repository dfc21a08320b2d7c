import { readFile } from 'node:fs/promises';
import { Secret } from './secret.js';

/** Where a secret comes from: inline (after ${VAR} expansion) or a file read at each use. */
export type SecretSource = { kind: 'value'; secret: Secret } | { kind: 'file'; path: string };

/**
 * Reads a secret at the moment it is needed. Files are re-read every time so a rotated
 * Kubernetes Secret takes effect without a restart; only trailing CR/LF is removed (§8).
 */
export async function readSecret(source: SecretSource): Promise<Secret> {
  if (source.kind === 'value') return source.secret;
  const text = await readFile(source.path, 'utf8');
  return new Secret(text.replace(/[\r\n]+$/, ''));
}

export function describeSecretSource(source: SecretSource | undefined): string {
  if (source === undefined) return 'none';
  return source.kind === 'file' ? `file ${source.path}` : 'inline';
}
