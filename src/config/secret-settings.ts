import { readCertificatePair } from '../util/client-certificate.js';
import { messageOf } from '../util/errors.js';
import { Secret } from '../util/secret.js';
import { readSecretFileAtStart, SecretFile } from '../util/secret-file.js';
import type { SecretSource } from '../util/secret-source.js';
import type { ConfigProblem } from './problems.js';

/**
 * A secret given both inline and as a file is ambiguous: which one would a rotation change?
 * R6: an empty secret is a problem, never sent; a file is read now (R5: a regular file or a pipe,
 * at most 1 MiB) and its value kept as the last good one.
 */
export function secretSource(
  inline: string | undefined,
  file: string | undefined,
  path: string,
  problems: ConfigProblem[],
): SecretSource | undefined {
  if (inline !== undefined && file !== undefined) {
    problems.push({ path, message: `set either ${lastKey(path)} or ${lastKey(path)}File, not both` });
  }
  if (file !== undefined) return secretFile(file, `${path}File`, problems);
  if (inline === '') problems.push({ path, message: 'is empty (an empty secret is never sent)' });
  return inline === undefined ? undefined : { kind: 'value', secret: new Secret(inline) };
}

export function secretFile(file: string, path: string, problems: ConfigProblem[]): SecretFile {
  try {
    return new SecretFile(file, readSecretFileAtStart(file));
  } catch (error) {
    problems.push({ path, message: messageOf(error) });
    return new SecretFile(file);
  }
}

function lastKey(path: string): string {
  return path.slice(path.lastIndexOf('.') + 1);
}

/**
 * E2: `certFile` and `keyFile` come together and make a pair (the key belongs to the
 * certificate); a problem at `path.certFile` otherwise.
 */
export function checkCertificatePair(
  files: { certFile?: string | undefined; keyFile?: string | undefined },
  path: string,
  problems: ConfigProblem[],
): void {
  if (files.certFile === undefined && files.keyFile === undefined) return;
  if (files.certFile === undefined || files.keyFile === undefined) {
    problems.push({ path, message: 'give certFile and keyFile together (a client certificate and its key)' });
    return;
  }
  try {
    readCertificatePair(files.certFile, files.keyFile);
  } catch (error) {
    problems.push({ path: `${path}.certFile`, message: messageOf(error) });
  }
}
