// Validates rendered Kubernetes manifests (helm template output, or the plain examples):
//   1. every object against its Kubernetes schema (kubernetes-models, prometheus-operator models);
//   2. no unknown fields anywhere (TypeScript's excess-property check against the same models'
//      types: the JSON schemas accept unknown keys, `kubectl apply --validate=strict` would not);
//   3. the wiring between objects (Service -> pod ports, selectors, monitors, volumes, checksums)
//      and the rules for the bearer-sidecar container (non-root, read-only root, probes, ...);
//   4. the bearer-sidecar config in each ConfigMap, loaded by the product's own loadConfig()
//      with its `...File` secrets pointed at placeholder files, and cross-checked with the pod.
//   node helm/ci/validate-manifests.mjs [--label NAME] FILE...
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { parse as parseYaml } from 'yaml';
import { failIfProblems, readManifests, repoRoot, toolsRequire } from './lib.mjs';

const { loadConfig, ConfigError } = await import(new URL('../../dist/config/load.js', import.meta.url).href);

const args = process.argv.slice(2);
const labelAt = args.indexOf('--label');
const label = labelAt >= 0 ? args.splice(labelAt, 2)[1] : 'manifests';
const objects = args.flatMap((file) => readManifests(file).map((object) => ({ object, file: path.relative(repoRoot, file) })));
const problems = [];
const report = (where, message) => problems.push(`${where}: ${message}`);
const nameOf = ({ object }) => `${object.kind}/${object.metadata?.name ?? '?'}`;

if (objects.length === 0) failIfProblems(label, ['no objects rendered']);

// 1. Schemas -----------------------------------------------------------------------------------
const requireTool = toolsRequire();
const CUSTOM_MODELS = { 'monitoring.coreos.com/v1': '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1' };
const modulePath = ({ apiVersion, kind }) => `${CUSTOM_MODELS[apiVersion] ?? `kubernetes-models/${apiVersion}`}/${kind}`;

for (const entry of objects) {
  const { object } = entry;
  let Model;
  try {
    Model = requireTool(modulePath(object))[object.kind];
  } catch {
    Model = undefined;
  }
  if (typeof Model !== 'function') {
    report(nameOf(entry), `no schema for apiVersion ${object.apiVersion} kind ${object.kind}`);
    continue;
  }
  entry.modulePath = modulePath(object);
  try {
    new Model(object).validate();
  } catch (error) {
    report(nameOf(entry), error.message);
  }
}

// 2. Unknown fields ----------------------------------------------------------------------------
strictFieldCheck(objects.filter((entry) => entry.modulePath));

function strictFieldCheck(entries) {
  if (entries.length === 0) return;
  const ts = createRequire(path.join(repoRoot, 'package.json'))('typescript');
  // Inside the tools directory so `kubernetes-models` resolves from its node_modules.
  const dir = mkdtempSync(path.join(process.env.BEARER_SIDECAR_K8S_TOOLS, 'strict-'));
  try {
    const lines = [];
    const owners = [];
    entries.forEach((entry, index) => {
      lines.push(`import type { I${entry.object.kind} as T${index} } from '${entry.modulePath}';`);
      owners.push(undefined);
    });
    entries.forEach((entry, index) => {
      const body = JSON.stringify(entry.object, null, 2).split('\n');
      body[0] = `export const o${index}: T${index} = ${body[0]}`;
      body[body.length - 1] += ';';
      for (const line of body) {
        lines.push(line);
        owners.push(entry);
      }
    });
    const file = path.join(dir, 'objects.ts');
    writeFileSync(file, lines.join('\n'));
    const program = ts.createProgram([file], {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      module: ts.ModuleKind.CommonJS,
      moduleResolution: ts.ModuleResolutionKind.Node10,
      target: ts.ScriptTarget.ES2020,
      types: [],
    });
    for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
      const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, ' ');
      if (!diagnostic.file) {
        problems.push(`TypeScript: ${message}`);
        continue;
      }
      const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start ?? 0);
      const owner = owners[line];
      report(owner ? nameOf(owner) : 'TypeScript', `${message.replace(/ in type '.{200,}$/, '')} (at: ${lines[line].trim()})`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// 3. Wiring and the bearer-sidecar container ---------------------------------------------------
const byKind = (kind) => objects.filter((entry) => entry.object.kind === kind).map((entry) => entry.object);
const configMaps = new Map(byKind('ConfigMap').map((cm) => [cm.metadata.name, cm]));
const pods = workloads();

/** Every pod template in the manifests, with where it came from. */
function workloads() {
  const found = [];
  for (const { object } of objects) {
    const where = `${object.kind}/${object.metadata?.name}`;
    if (object.kind === 'Pod') found.push({ where, object, meta: object.metadata ?? {}, spec: object.spec ?? {} });
    else if (['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job'].includes(object.kind)) {
      const template = object.spec?.template ?? {};
      found.push({ where, object, meta: template.metadata ?? {}, spec: template.spec ?? {} });
    } else if (object.kind === 'CronJob') {
      const template = object.spec?.jobTemplate?.spec?.template ?? {};
      found.push({ where, object, meta: template.metadata ?? {}, spec: template.spec ?? {} });
    }
  }
  return found;
}

const podContainers = (pod) => [...(pod.spec.containers ?? []), ...(pod.spec.initContainers ?? [])];
const podPortNames = (pod) => new Set(podContainers(pod).flatMap((c) => (c.ports ?? []).flatMap((p) => [p.name, p.containerPort])));

function selects(selector, labels = {}) {
  if (!selector) return false;
  const matchLabels = selector.matchLabels ?? (selector.matchExpressions ? {} : selector);
  if (Object.keys(matchLabels).length === 0 && !selector.matchExpressions) return false;
  const labelsOk = Object.entries(matchLabels).every(([key, value]) => labels[key] === value);
  const expressionsOk = (selector.matchExpressions ?? []).every(({ key, operator, values = [] }) => {
    if (operator === 'In') return values.includes(labels[key]);
    if (operator === 'NotIn') return !values.includes(labels[key]);
    if (operator === 'Exists') return key in labels;
    if (operator === 'DoesNotExist') return !(key in labels);
    return false;
  });
  return labelsOk && expressionsOk;
}

const podsSelectedBy = (selector) => pods.filter((pod) => selects(selector, pod.meta.labels));

for (const service of byKind('Service')) {
  const where = `Service/${service.metadata.name}`;
  const selected = podsSelectedBy(service.spec?.selector);
  if (selected.length === 0) {
    if (pods.length > 0) report(where, 'selects no pod in these manifests');
    continue;
  }
  for (const port of service.spec?.ports ?? []) {
    const target = port.targetPort ?? port.port;
    for (const pod of selected) if (!podPortNames(pod).has(target)) report(where, `targetPort ${target} is not a port of ${pod.where}`);
  }
}
for (const policy of byKind('NetworkPolicy')) {
  const where = `NetworkPolicy/${policy.metadata.name}`;
  const selected = podsSelectedBy(policy.spec?.podSelector);
  if (selected.length === 0) {
    if (pods.length > 0) report(where, 'selects no pod in these manifests');
    continue;
  }
  for (const rule of policy.spec?.ingress ?? []) {
    for (const port of rule.ports ?? []) {
      for (const pod of selected) if (!podPortNames(pod).has(port.port)) report(where, `port ${port.port} is not a port of ${pod.where}`);
    }
    if (rule.from !== undefined && rule.from.length === 0) report(where, 'an ingress rule with `from: []` admits every source');
  }
}
for (const pdb of byKind('PodDisruptionBudget')) {
  if (pods.length > 0 && podsSelectedBy(pdb.spec?.selector).length === 0) report(`PodDisruptionBudget/${pdb.metadata.name}`, 'selects no pod');
}
for (const hpa of byKind('HorizontalPodAutoscaler')) {
  const target = hpa.spec?.scaleTargetRef ?? {};
  if (!objects.some(({ object }) => object.kind === target.kind && object.metadata?.name === target.name)) {
    report(`HorizontalPodAutoscaler/${hpa.metadata.name}`, `scaleTargetRef ${target.kind}/${target.name} is not in these manifests`);
  }
}
for (const monitor of byKind('ServiceMonitor')) {
  const where = `ServiceMonitor/${monitor.metadata.name}`;
  const services = byKind('Service').filter((service) => selects(monitor.spec?.selector, service.metadata.labels));
  if (services.length === 0) report(where, 'selects no Service in these manifests');
  for (const endpoint of monitor.spec?.endpoints ?? []) {
    for (const service of services) {
      if (!(service.spec?.ports ?? []).some((port) => port.name === endpoint.port)) report(where, `port ${endpoint.port} is not a port of Service/${service.metadata.name}`);
    }
  }
}
for (const monitor of byKind('PodMonitor')) {
  for (const pod of podsSelectedBy(monitor.spec?.selector)) {
    for (const endpoint of monitor.spec?.podMetricsEndpoints ?? []) {
      if (!podPortNames(pod).has(endpoint.port)) report(`PodMonitor/${monitor.metadata.name}`, `port ${endpoint.port} is not a port of ${pod.where}`);
    }
  }
}

let sidecarContainers = 0;
let configsLoaded = 0;
// Every ConfigMap key that holds a bearer-sidecar config (a mapping with `accounts`), loaded once.
const loadedConfigs = new Map();
for (const configMap of configMaps.values()) {
  for (const [key, text] of Object.entries(configMap.data ?? {})) {
    if (!/\.(ya?ml|json)$/.test(key)) continue;
    let parsed;
    try {
      parsed = parseYaml(text);
    } catch {
      continue;
    }
    if (parsed === null || typeof parsed !== 'object' || !('accounts' in parsed)) continue;
    loadedConfigs.set(`${configMap.metadata.name}/${key}`, loadProductConfig(`ConfigMap/${configMap.metadata.name} ${key}`, text));
  }
}

for (const pod of pods) {
  const volumes = new Map((pod.spec.volumes ?? []).map((volume) => [volume.name, volume]));
  for (const container of podContainers(pod)) {
    for (const mount of container.volumeMounts ?? []) {
      if (!volumes.has(mount.name)) report(pod.where, `container ${container.name} mounts volume ${mount.name}, which the pod does not define`);
    }
  }
  const isInit = (c) => (pod.spec.initContainers ?? []).includes(c);
  for (const container of podContainers(pod).filter(isBearerSidecar)) {
    sidecarContainers += 1;
    checkSidecarContainer(pod, container, volumes, isInit(container));
  }
}

function isBearerSidecar(container) {
  return container.name === 'bearer-sidecar' || /(^|\/)bearer-sidecar(:|@|$)/.test(container.image ?? '');
}

function checkSidecarContainer(pod, container, volumes, isInit) {
  const where = `${pod.where} container ${container.name}`;
  const podSecurity = pod.spec.securityContext ?? {};
  const security = container.securityContext ?? {};
  const effective = (key) => security[key] ?? podSecurity[key];
  if (effective('runAsNonRoot') !== true) report(where, 'runAsNonRoot must be true');
  if (effective('runAsUser') === 0) report(where, 'runAsUser must not be 0');
  if (security.readOnlyRootFilesystem !== true) report(where, 'readOnlyRootFilesystem must be true');
  if (security.allowPrivilegeEscalation !== false) report(where, 'allowPrivilegeEscalation must be false');
  if (security.privileged === true) report(where, 'must not be privileged');
  if (!(security.capabilities?.drop ?? []).includes('ALL')) report(where, 'capabilities.drop must include ALL');
  if (!['RuntimeDefault', 'Localhost'].includes(effective('seccompProfile')?.type)) report(where, 'seccompProfile must be RuntimeDefault (container or pod)');
  if (!container.resources?.requests?.memory || !container.resources?.requests?.cpu) report(where, 'resources.requests.cpu and .memory must be set');
  if (!container.resources?.limits?.memory) report(where, 'resources.limits.memory must be set');
  if (isInit && container.restartPolicy !== 'Always') {
    report(where, 'an init container that never exits blocks the pod: a native sidecar needs restartPolicy: Always');
  }

  const ports = new Map((container.ports ?? []).map((port) => [port.name, port.containerPort]));
  const probePort = (probe) => {
    const port = probe?.httpGet?.port;
    return typeof port === 'string' ? ports.get(port) : port;
  };
  if (container.livenessProbe?.httpGet?.path !== '/healthz') report(where, 'livenessProbe must be GET /healthz');
  if (!['/readyz', '/healthz'].includes(container.readinessProbe?.httpGet?.path)) report(where, 'readinessProbe must be GET /readyz (or /healthz)');

  for (const mount of container.volumeMounts ?? []) {
    if (volumes.get(mount.name)?.secret && mount.subPath) report(where, `secret volume ${mount.name} is mounted with subPath: a rotated Secret would never reach the file`);
  }

  // The config: --config PATH -> a mounted ConfigMap that holds it.
  const argv = [...(container.command ?? []), ...(container.args ?? [])];
  const configPath = argv[argv.indexOf('--config') + 1];
  if (!argv.includes('--config') || !configPath) {
    report(where, 'no --config argument');
    return;
  }
  const mount = (container.volumeMounts ?? []).find((m) => configPath.startsWith(`${m.mountPath.replace(/\/$/, '')}/`));
  const volume = mount && volumes.get(mount.name);
  const configMap = volume?.configMap && configMaps.get(volume.configMap.name);
  const key = mount && path.posix.relative(mount.mountPath, configPath);
  if (!configMap || !(key in (configMap.data ?? {}))) {
    report(where, `--config ${configPath} is not a key of a ConfigMap in these manifests mounted into the container`);
    return;
  }
  const text = configMap.data[key];
  const configKey = `${configMap.metadata.name}/${key}`;
  // Referenced by --config: load it even when it does not look like a config (so the product names the problem).
  if (!loadedConfigs.has(configKey)) loadedConfigs.set(configKey, loadProductConfig(`ConfigMap/${configMap.metadata.name} ${key}`, text));
  const config = loadedConfigs.get(configKey);
  if (!config) return;
  const defined = new Set((container.env ?? []).map((e) => e.name));
  for (const [, name, hasDefault] of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}/g)) {
    if (!hasDefault && !defined.has(name) && (container.envFrom ?? []).length === 0) {
      report(where, `\${${name}} is used in the config but the container sets no env var ${name}`);
    }
  }

  const raw = parseYaml(text);
  if ('port' in config.listen && ![...ports.values()].includes(config.listen.port)) report(where, `listen.port ${config.listen.port} is not a container port`);
  if (![...ports.values()].includes(config.admin.port)) report(where, `admin.port ${config.admin.port} is not a container port`);
  for (const probe of [container.livenessProbe, container.readinessProbe, container.startupProbe].filter(Boolean)) {
    if (probePort(probe) !== config.admin.port) report(where, `a probe targets port ${probe.httpGet?.port}, not admin.port ${config.admin.port}`);
  }
  if (config.admin.host !== '0.0.0.0' && config.admin.host !== '::') report(where, `admin.host ${config.admin.host}: the kubelet's probes come from outside the pod`);
  const hasApp = podContainers(pod).some((c) => !isBearerSidecar(c));
  if (hasApp && 'host' in config.listen && !['127.0.0.1', 'localhost', '::1'].includes(config.listen.host)) {
    report(where, `beside an app the data plane should listen on 127.0.0.1, not ${config.listen.host}`);
  }

  const mounts = container.volumeMounts ?? [];
  const under = (file, writable) =>
    mounts.some((m) => file.startsWith(`${m.mountPath.replace(/\/$/, '')}/`) && (!writable || m.readOnly !== true));
  for (const { path: field, value } of fileFields(raw)) {
    if (!under(value, false)) report(where, `${field} ${value} is not under a volume mounted into the container`);
  }
  if (raw.store?.type === 'file' && !under(raw.store.path, true)) report(where, `store.path ${raw.store.path} is not under a writable volume`);

  const shutdownSeconds = config.shutdownTimeoutMs / 1000;
  const preStop = Number(container.lifecycle?.preStop?.exec?.command?.[1] ?? container.lifecycle?.preStop?.sleep?.seconds ?? 0);
  const grace = pod.spec.terminationGracePeriodSeconds ?? 30;
  if (grace <= shutdownSeconds + preStop) {
    report(where, `terminationGracePeriodSeconds ${grace} must exceed preStop ${preStop}s + shutdownTimeout ${shutdownSeconds}s`);
  }

  const checksum = pod.meta.annotations?.['checksum/bearer-sidecar-config'];
  const helmManaged = pod.object.metadata?.labels?.['helm.sh/chart'];
  const expected = createHash('sha256').update(text.replace(/\n$/, '')).digest('hex');
  if (checksum !== undefined && checksum !== expected) report(where, 'checksum/bearer-sidecar-config does not match the ConfigMap');
  if (checksum === undefined && helmManaged) report(where, 'no checksum/bearer-sidecar-config pod annotation: a config change would not roll the pods');
}

/** Every `...File` field of a product config, with its path. */
function fileFields(node, prefix = '') {
  if (node === null || typeof node !== 'object') return [];
  return Object.entries(node).flatMap(([key, value]) => {
    const here = prefix ? `${prefix}.${key}` : key;
    if (key.endsWith('File') && typeof value === 'string') return [{ path: here, value }];
    return fileFields(value, here);
  });
}

// 4. The product's config ----------------------------------------------------------------------
/** Loads a config with loadConfig(): `...File` paths point at placeholder files, `${VAR}` at placeholders. */
function loadProductConfig(where, text) {
  const raw = parseYaml(text);
  const dir = mkdtempSync(path.join(tmpdir(), 'bearer-sidecar-config-'));
  try {
    const secrets = path.join(dir, 'files');
    mkdirSync(secrets);
    const rewrite = (node) => {
      if (Array.isArray(node)) return node.map(rewrite);
      if (node === null || typeof node !== 'object') return node;
      return Object.fromEntries(
        Object.entries(node).map(([key, value]) => {
          if (key.endsWith('File') && typeof value === 'string') {
            const file = path.join(secrets, `${key}-${randomBytes(6).toString('hex')}`);
            // The store's key must be a real one: the product checks it at load time.
            writeFileSync(file, key === 'encryptionKeyFile' ? `${randomBytes(32).toString('hex')}\n` : 'placeholder\n');
            return [key, file];
          }
          return [key, rewrite(value)];
        }),
      );
    };
    const env = {};
    for (const [, name] of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}/g)) env[name] = `placeholder-${name.toLowerCase()}`;
    const tryLoad = (tree) => {
      const file = path.join(dir, 'config.yaml');
      writeFileSync(file, JSON.stringify(tree));
      try {
        return { config: loadConfig({ file, env }) };
      } catch (error) {
        if (error instanceof ConfigError) return { problems: error.problems };
        throw error;
      }
    };
    const tree = rewrite(raw);
    // The product checks that a file store's directory is writable: point it at a temporary one.
    if (tree.store?.type === 'file') tree.store = { ...tree.store, path: path.join(dir, 'state', path.basename(tree.store.path)) };
    mkdirSync(path.join(dir, 'state'));
    // The store is checked like the rest: no store problem is set aside. What cannot be had at CI
    // time is stood in for above, for every section alike: `...File` paths (the store's
    // encryptionKeyFile gets a real key), `${VAR}`s (the chart's ${BEARER_SIDECAR_REDIS_PASSWORD}
    // in store.url among them) and the file store's directory. Nothing connects to Redis here.
    const result = tryLoad(tree);
    if (result.problems) {
      for (const problem of result.problems) report(where, `bearer-sidecar config: ${problem.path}: ${problem.message}`);
      return undefined;
    }
    configsLoaded += 1;
    return result.config;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

failIfProblems(`${label}: invalid manifests`, problems);
const kinds = [...new Set(objects.map(({ object }) => object.kind))].sort().join(', ');
console.log(`    ${label}: ${objects.length} objects (${kinds}); ${sidecarContainers} bearer-sidecar container(s); ${configsLoaded} config(s) loaded by loadConfig()`);
