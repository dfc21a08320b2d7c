// One version everywhere: package.json, the chart's appVersion, the default image tag and the
// Dockerfile's VERSION build argument.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { chartDir, failIfProblems, repoRoot } from './lib.mjs';

const read = (file) => readFileSync(path.join(repoRoot, file), 'utf8');
const product = JSON.parse(read('package.json')).version;
const chart = parseYaml(readFileSync(path.join(chartDir, 'Chart.yaml'), 'utf8'));
const values = parseYaml(readFileSync(path.join(chartDir, 'values.yaml'), 'utf8'));
const dockerVersion = /^ARG VERSION=(\S+)$/m.exec(read('Dockerfile'))?.[1];
const problems = [];
if (chart.appVersion !== product)
  problems.push(`Chart.yaml appVersion ${chart.appVersion} != package.json version ${product}`);
if (String(values.image.tag) !== product)
  problems.push(`values.yaml image.tag ${values.image.tag} != package.json version ${product}`);
if (dockerVersion !== product)
  problems.push(`Dockerfile ARG VERSION=${dockerVersion} != package.json version ${product}`);
failIfProblems('versions', problems);
console.log(`    bearer-sidecar ${product}, chart ${chart.version}`);
