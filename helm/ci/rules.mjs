// dashboards/prometheus-rules.yaml is the chart's PrometheusRule rendered with default values, as a
// plain Prometheus rule file (for a Prometheus without the Operator, and for `promtool test rules`).
//   node helm/ci/rules.mjs --check|--write RENDERED_PROMETHEUSRULE.yaml dashboards/prometheus-rules.yaml
import path from 'node:path';
import process from 'node:process';
import { stringify } from 'yaml';
import { failIfProblems, readManifests, repoRoot, writeOrCheck } from './lib.mjs';

const [rendered, target] = process.argv.slice(2).filter((arg) => !arg.startsWith('--'));
const rule = readManifests(rendered).find((object) => object.kind === 'PrometheusRule');
if (!rule) failIfProblems('rules', [`${rendered} holds no PrometheusRule`]);
const header = [
  '# Generated from the Helm chart (helm/bearer-sidecar/templates/_alerts.tpl, metrics.prometheusRule',
  '# with default values): do not edit here; edit the template and run `bash .ci/k8s-checks.sh --update`.',
  '# Tests: dashboards/prometheus-rules.test.yaml (promtool test rules). Runbooks: docs/kubernetes.md.',
];
const body = stringify({ groups: rule.spec.groups }, { lineWidth: 0 });
writeOrCheck(path.resolve(repoRoot, target), `${header.join('\n')}\n${body}`, 'bash .ci/k8s-checks.sh --update');
