// The chart's values reference, from the `## @param` comments of values.yaml (bitnami style):
//   - every @param names a value that exists, and every value is covered by a @param
//     (a value documented as [object] or [array] covers what is under it);
//   - every @param is a property in values.schema.json, and every schema property has a @param;
//   - the reference tables in docs/kubernetes.md and helm/bearer-sidecar/README.md are generated
//     from them, between `<!-- values:start -->` and `<!-- values:end -->`.
//   node helm/ci/params.mjs --check | --write
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { chartDir, failIfProblems, repoRoot, writeOrCheck } from './lib.mjs';

const valuesText = readFileSync(path.join(chartDir, 'values.yaml'), 'utf8');
const values = parseYaml(valuesText);
const schema = JSON.parse(readFileSync(path.join(chartDir, 'values.schema.json'), 'utf8'));
const problems = [];

/** `## @section Title` and `## @param key [modifier] Description`, in file order. */
const params = [];
let section = 'Parameters';
for (const line of valuesText.split('\n')) {
  const sectionMatch = /^\s*## @section (.+)$/.exec(line);
  if (sectionMatch) section = sectionMatch[1].trim();
  const match = /^\s*## @param (\S+)(?: \[(object|array)\])? (.+)$/.exec(line);
  if (match) params.push({ key: match[1], modifier: match[2], description: match[3].trim(), section });
}

function valueAt(key) {
  let node = values;
  for (const part of key.split('.')) {
    if (node === null || typeof node !== 'object' || !(part in node)) return { found: false };
    node = node[part];
  }
  return { found: true, value: node };
}

const documented = new Set(params.map((param) => param.key));
const covers = new Set(params.filter((param) => param.modifier).map((param) => param.key));
for (const param of params) {
  if (!valueAt(param.key).found) problems.push(`@param ${param.key}: no such value in values.yaml`);
}
if (documented.size !== params.length) problems.push('a @param is documented twice');

/** Leaves of values.yaml (an empty map or list counts as a leaf). */
function leaves(node, prefix) {
  if (node === null || typeof node !== 'object' || Array.isArray(node) || Object.keys(node).length === 0) return [prefix];
  return Object.entries(node).flatMap(([key, value]) => leaves(value, prefix ? `${prefix}.${key}` : key));
}
for (const leaf of leaves(values, '')) {
  const parts = leaf.split('.');
  const coveredBy = parts.map((_, i) => parts.slice(0, i + 1).join('.')).find((prefix) => documented.has(prefix) && (prefix === leaf || covers.has(prefix)));
  if (!coveredBy) problems.push(`${leaf}: a value with no @param (or an [object] @param above it)`);
}

/** Schema node of a dotted key, following `properties`. */
function schemaAt(key) {
  let node = schema;
  for (const part of key.split('.')) {
    node = node?.properties?.[part];
    if (node === undefined) return undefined;
  }
  return node;
}
for (const param of params) if (!schemaAt(param.key)) problems.push(`@param ${param.key}: not a property in values.schema.json`);
function schemaKeys(node, prefix) {
  if (!node?.properties) return [];
  return Object.entries(node.properties).flatMap(([key, child]) => {
    const here = prefix ? `${prefix}.${key}` : key;
    if (here === 'global' || here === 'config') return here === 'config' ? [here] : [];
    return child.properties ? [here, ...schemaKeys(child, here)] : [here];
  });
}
for (const key of schemaKeys(schema, '')) {
  const hasChildren = schemaAt(key)?.properties !== undefined;
  if (!hasChildren && !documented.has(key) && !params.some((param) => covers.has(param.key) && key.startsWith(`${param.key}.`))) {
    problems.push(`values.schema.json property ${key} has no @param in values.yaml`);
  }
}
failIfProblems('values.yaml @param documentation', problems);

// The generated reference tables.
function formatDefault(value) {
  if (value === '') return '`""`';
  const json = JSON.stringify(value);
  return json.length > 60 ? 'see values.yaml' : `\`${json.replace(/\|/g, '\\|')}\``;
}
const table = [];
for (const name of [...new Set(params.map((param) => param.section))]) {
  table.push('', `#### ${name}`, '', '| Name | Description | Default |', '| --- | --- | --- |');
  for (const param of params.filter((p) => p.section === name)) {
    table.push(`| \`${param.key}\` | ${param.description.replace(/\|/g, '\\|')} | ${formatDefault(valueAt(param.key).value)} |`);
  }
}
const START = '<!-- values:start (generated from values.yaml by `bash .ci/k8s-checks.sh --update`) -->';
const END = '<!-- values:end -->';
const block = `${START}\n${table.join('\n').trim()}\n${END}`;

for (const file of [path.join(repoRoot, 'docs/kubernetes.md'), path.join(chartDir, 'README.md')]) {
  const text = readFileSync(file, 'utf8');
  const start = text.indexOf('<!-- values:start');
  const end = text.indexOf(END);
  if (start < 0 || end < 0) failIfProblems(path.relative(repoRoot, file), ['no <!-- values:start --> ... <!-- values:end --> block for the values reference']);
  writeOrCheck(file, `${text.slice(0, start)}${block}${text.slice(end + END.length)}`, 'bash .ci/k8s-checks.sh --update');
}
console.log(`    ${params.length} values documented in ${new Set(params.map((p) => p.section)).size} sections`);
