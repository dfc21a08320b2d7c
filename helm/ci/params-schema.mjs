// The values.yaml `## @param` / `## @extra` comments against values.schema.json, both ways:
//   - every @param or @extra names a property of the schema, or a key inside an object the schema
//     leaves open (`resources.requests.cpu` under `resources: {type: object}`);
//   - every property the schema defines (its `config` part as one) is documented: by a @param or
//     @extra of its own, by an [object]/[array] @param above it, or by @params below it.
// The comments are read by readme-generator-for-helm's own parser, the tool that checks them
// against values.yaml and generates the README tables from them (.ci/k8s-checks.sh runs it).
//   node helm/ci/params-schema.mjs
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { chartDir, failIfProblems, toolsRequire } from './lib.mjs';

const requireTool = toolsRequire();
const { parseMetadataComments } = requireTool('@bitnami/readme-generator-for-helm/lib/parser.js');
const generatorConfig = requireTool('@bitnami/readme-generator-for-helm/config.json');
const schema = JSON.parse(readFileSync(path.join(chartDir, 'values.schema.json'), 'utf8'));
const metadata = parseMetadataComments(path.join(chartDir, 'values.yaml'), generatorConfig);
const params = metadata.parameters.filter((param) => !param.skip);
const problems = [];

/** A schema node that accepts keys it does not list: an object with no `properties`, or with `additionalProperties` other than false. */
const isOpen = (node) =>
  node.type === 'object' &&
  (!node.properties || (node.additionalProperties !== undefined && node.additionalProperties !== false));

/** The schema node of a dotted key (following `properties`), 'open' when an open object above holds it, or undefined. */
function schemaAt(key) {
  let node = schema;
  for (const part of key.split('.')) {
    const child = node.properties?.[part];
    if (child === undefined) return isOpen(node) && node !== schema ? 'open' : undefined;
    node = child;
  }
  return node;
}

for (const param of params) {
  if (!schemaAt(param.name))
    problems.push(`@${param.extra ? 'extra' : 'param'} ${param.name}: not a property in values.schema.json`);
}

const documented = new Set(params.map((param) => param.name));
const covering = params
  .filter((param) => param.modifiers.includes('object') || param.modifiers.includes('array'))
  .map((param) => param.name);
const isDocumented = (key) =>
  documented.has(key) ||
  covering.some((name) => key.startsWith(`${name}.`)) ||
  params.some((param) => param.name.startsWith(`${key}.`));

/** The schema's properties, dotted; `config` (the product's own schema, generated) counts as one. */
function schemaKeys(node, prefix) {
  return Object.entries(node.properties ?? {}).flatMap(([key, child]) => {
    const here = prefix ? `${prefix}.${key}` : key;
    if (here === 'global') return [];
    return child.properties && here !== 'config' ? schemaKeys(child, here) : [here];
  });
}
for (const key of schemaKeys(schema, '')) {
  if (!isDocumented(key)) problems.push(`values.schema.json property ${key} has no @param in values.yaml`);
}

failIfProblems('values.yaml @param documentation against values.schema.json', problems);
const sections = metadata.sections.length;
console.log(
  `    ${params.filter((p) => !p.extra).length} @params and ${params.filter((p) => p.extra).length} @extras in ${sections} sections match values.schema.json`,
);
