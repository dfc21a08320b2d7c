// Shared by the helm/ci scripts that .ci/k8s-checks.sh runs.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import process from 'node:process';
import { parseAllDocuments } from 'yaml';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
export const chartDir = path.join(repoRoot, 'helm/bearer-sidecar');

/** Prints every problem and exits 1; prints nothing and returns when there are none. */
export function failIfProblems(title, problems) {
  if (problems.length === 0) return;
  console.error(`${title}:`);
  for (const problem of problems) console.error(`  - ${problem}`);
  process.exit(1);
}

/** `--write` regenerates a file, anything else checks it is current. */
export function writeOrCheck(file, expected, howToFix) {
  const relative = path.relative(repoRoot, file);
  if (process.argv.includes('--write')) {
    writeFileSync(file, expected);
    console.log(`    wrote ${relative}`);
    return;
  }
  let actual = '';
  try {
    actual = readFileSync(file, 'utf8');
  } catch {
    // Missing counts as out of date.
  }
  if (actual !== expected) failIfProblems(`${relative} is out of date`, [`regenerate it: ${howToFix}`]);
}

/** require() for the CI tools that .ci/k8s-checks.sh installs into the cache (not the project's deps). */
export function toolsRequire() {
  const dir = process.env.BEARER_SIDECAR_K8S_TOOLS;
  if (!dir) failIfProblems('missing tools', ['BEARER_SIDECAR_K8S_TOOLS is not set: run .ci/k8s-checks.sh']);
  return createRequire(path.join(dir, 'package.json'));
}

/** Kubernetes manifests as kubectl reads them: YAML 1.1 (so 0444 is octal), several documents a file. */
export function readManifests(file) {
  const docs = [];
  for (const doc of parseAllDocuments(readFileSync(file, 'utf8'), { version: '1.1' })) {
    if (doc.errors.length > 0)
      failIfProblems(
        `${file} is not valid YAML`,
        doc.errors.map((e) => e.message),
      );
    const value = doc.toJS({ maxAliasCount: 100 });
    if (value !== null && value !== undefined) docs.push(value);
  }
  return docs;
}
