// Keeps the `config` part of values.schema.json equal to the product's own config schema
// (src/config/schema.ts, via dist/), so `helm install` rejects what bearer-sidecar would reject.
// `listen`, `admin` and `store` are left out: the chart sets them from its own values.
//   node helm/ci/config-schema.mjs --check | --write      (needs `npm run build` first)
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { chartDir, writeOrCheck } from './lib.mjs';

const { configSchema } = await import(new URL('../../dist/config/schema.js', import.meta.url).href);
const CHART_OWNED = ['listen', 'admin', 'store'];

/** Drops `default` keywords (Helm does not apply them) so the schema reads as a contract. */
function withoutDefaults(node) {
  if (Array.isArray(node)) return node.map(withoutDefaults);
  if (node === null || typeof node !== 'object') return node;
  const entries = Object.entries(node).filter(([key]) => key !== 'default');
  return Object.fromEntries(
    entries.map(([key, value]) => [
      key,
      key === 'properties' ? mapValues(value, withoutDefaults) : withoutDefaults(value),
    ]),
  );
}

/** A `properties` map: its keys are property names (an account's `default` among them), not keywords. */
function mapValues(properties, transform) {
  return Object.fromEntries(Object.entries(properties).map(([name, value]) => [name, transform(value)]));
}

const generated = withoutDefaults(
  z.toJSONSchema(configSchema, { io: 'input', target: 'draft-7', unrepresentable: 'any' }),
);
delete generated.$schema;
for (const key of CHART_OWNED) delete generated.properties[key];
generated.required = (generated.required ?? []).filter((key) => !CHART_OWNED.includes(key));
generated.description =
  "bearer-sidecar's configuration without listen, admin and store (set by the chart). Generated from src/config/schema.ts by helm/ci/config-schema.mjs.";

const file = path.join(chartDir, 'values.schema.json');
const schema = JSON.parse(readFileSync(file, 'utf8'));
schema.properties.config = generated;
writeOrCheck(file, `${JSON.stringify(schema, null, 2)}\n`, 'bash .ci/k8s-checks.sh --update');
