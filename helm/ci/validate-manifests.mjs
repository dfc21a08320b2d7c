// Validates rendered Kubernetes manifests (helm template output, or the plain examples) against
// the named rules of helm/ci/manifest-rules/index.mjs: each object against its Kubernetes schema
// and with no unknown field, the wiring between objects (Service -> pod ports, selectors,
// monitors, volumes, checksums), the rules for the bearer-sidecar container (non-root, read-only
// root, probes, ...), and the bearer-sidecar config in each ConfigMap, loaded by the product's own
// loadConfig() and cross-checked with the container that runs it. A problem names its rule.
//   node helm/ci/validate-manifests.mjs [--label NAME] FILE...
//   node helm/ci/validate-manifests.mjs --rules        (the rules, one line each)
import path from 'node:path';
import process from 'node:process';
import { failIfProblems, readManifests, repoRoot } from './lib.mjs';
import { RULES } from './manifest-rules/index.mjs';

const args = process.argv.slice(2);
if (args.includes('--rules')) {
  const width = Math.max(...RULES.map((rule) => rule.name.length));
  for (const rule of RULES) console.log(`${rule.name.padEnd(width)}  ${rule.description}`);
  process.exit(0);
}
const labelAt = args.indexOf('--label');
const label = labelAt >= 0 ? args.splice(labelAt, 2)[1] : 'manifests';
const entries = args.flatMap((file) =>
  readManifests(file).map((object) => ({ object, file: path.relative(repoRoot, file) })),
);
if (entries.length === 0) failIfProblems(label, ['no objects rendered']);

// Imported here, not above: the context needs dist/ (the product's loadConfig) and the CI tools, --rules neither.
const { buildContext } = await import('./manifest-rules/context.mjs');
const context = buildContext(entries);
const problems = [];
const failed = new Set();
for (const rule of RULES) {
  rule.check(context, (where, message) => {
    problems.push(`[${rule.name}] ${where}: ${message}`);
    failed.add(rule);
  });
}
if (problems.length > 0) {
  problems.push(...[...failed].map((rule) => `(rule ${rule.name}: ${rule.description})`));
  failIfProblems(`${label}: invalid manifests`, problems);
}

const kinds = [...new Set(entries.map(({ object }) => object.kind))].sort().join(', ');
console.log(
  `    ${label}: ${entries.length} objects (${kinds}); ${context.sidecars.length} bearer-sidecar container(s); ` +
    `${context.configsLoaded()} config(s) loaded by loadConfig(); ${RULES.length} rules`,
);
