// Turns the pod snippet that sidecar mode's NOTES print (`helm get notes`) into a Pod beside a
// stand-in app container, so validate-manifests.mjs checks what users paste: a valid container,
// volumes that exist, and a checksum that matches the ConfigMap.
//   node helm/ci/notes-pod.mjs HELM_INSTALL_DRY_RUN_OUTPUT > pod.yaml
import { readFileSync } from 'node:fs';
import process from 'node:process';
import { parse as parseYaml, stringify } from 'yaml';
import { failIfProblems } from './lib.mjs';

const output = readFileSync(process.argv[2], 'utf8');
const notes = output.slice(output.indexOf('\nNOTES:\n') + 1);
const lines = notes.split('\n');
const start = lines.findIndex((line) => line === '    metadata:');
const end = lines.findIndex((line, index) => index > start && line.trim() !== '' && !line.startsWith('    '));
if (start < 0 || end < 0) failIfProblems('NOTES', ['no pod snippet (an indented `metadata:` ... block) in the NOTES']);
const snippet = parseYaml(
  lines
    .slice(start, end)
    .map((line) => line.slice(4))
    .join('\n'),
);
const pod = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'notes-snippet', labels: { app: 'legacy-app' }, ...snippet.metadata },
  spec: {
    ...snippet.spec,
    securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
    terminationGracePeriodSeconds: 35,
    containers: [...(snippet.spec.containers ?? []), { name: 'app', image: 'legacy-app:1.0' }],
  },
};
process.stdout.write(stringify(pod));
