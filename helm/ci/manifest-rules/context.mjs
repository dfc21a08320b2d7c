// What the manifest rules look at, computed once from the objects: the Kubernetes model of each
// object, the pod templates, the bearer-sidecar containers with the config their --config names,
// and every bearer-sidecar config loaded (once) by the product's loadConfig().
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { toolsRequire } from '../lib.mjs';
import { loadProductConfig } from './product-config.mjs';

const CUSTOM_MODELS = { 'monitoring.coreos.com/v1': '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1' };
const WORKLOADS = ['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job'];

export const nameOf = (object) => `${object.kind}/${object.metadata?.name ?? '?'}`;
export const podContainers = (pod) => [...(pod.spec.containers ?? []), ...(pod.spec.initContainers ?? [])];
export const podPortNames = (pod) =>
  new Set(podContainers(pod).flatMap((c) => (c.ports ?? []).flatMap((p) => [p.name, p.containerPort])));

export function isBearerSidecar(container) {
  return container.name === 'bearer-sidecar' || /(^|\/)bearer-sidecar(:|@|$)/.test(container.image ?? '');
}

/** Does a label selector (matchLabels/matchExpressions, or a plain map as in a Service) select these labels? */
export function selects(selector, labels = {}) {
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

/** The model class of an object, and the module it comes from, if kubernetes-models has one. */
function modelOf(object, requireTool) {
  const modulePath = `${CUSTOM_MODELS[object.apiVersion] ?? `kubernetes-models/${object.apiVersion}`}/${object.kind}`;
  try {
    const Model = requireTool(modulePath)[object.kind];
    return typeof Model === 'function' ? { Model, modulePath } : {};
  } catch {
    return {};
  }
}

/** Every pod template in the manifests, with where it came from. */
function workloads(objects) {
  const found = [];
  for (const object of objects) {
    const where = `${object.kind}/${object.metadata?.name}`;
    if (object.kind === 'Pod') found.push({ where, object, meta: object.metadata ?? {}, spec: object.spec ?? {} });
    else if (WORKLOADS.includes(object.kind)) {
      const template = object.spec?.template ?? {};
      found.push({ where, object, meta: template.metadata ?? {}, spec: template.spec ?? {} });
    } else if (object.kind === 'CronJob') {
      const template = object.spec?.jobTemplate?.spec?.template ?? {};
      found.push({ where, object, meta: template.metadata ?? {}, spec: template.spec ?? {} });
    }
  }
  return found;
}

/** A ConfigMap key that holds a bearer-sidecar config: YAML or JSON, a mapping with `accounts`. */
function looksLikeConfig(key, text) {
  if (!/\.(ya?ml|json)$/.test(key)) return false;
  try {
    const parsed = parseYaml(text);
    return parsed !== null && typeof parsed === 'object' && 'accounts' in parsed;
  } catch {
    return false;
  }
}

/**
 * The config a bearer-sidecar container's --config names: { configMap, key, text }, or
 * { error } when there is no --config or it is not a key of a ConfigMap mounted into the container.
 */
function configOfContainer(container, volumes, configMaps) {
  const argv = [...(container.command ?? []), ...(container.args ?? [])];
  const configPath = argv[argv.indexOf('--config') + 1];
  if (!argv.includes('--config') || !configPath) return { error: 'no --config argument' };
  const mount = (container.volumeMounts ?? []).find((m) => configPath.startsWith(`${m.mountPath.replace(/\/$/, '')}/`));
  const volume = mount && volumes.get(mount.name);
  const configMap = volume?.configMap && configMaps.get(volume.configMap.name);
  const key = mount && path.posix.relative(mount.mountPath, configPath);
  if (!configMap || !(key in (configMap.data ?? {}))) {
    return {
      error: `--config ${configPath} is not a key of a ConfigMap in these manifests mounted into the container`,
    };
  }
  return { configMap, key, text: configMap.data[key] };
}

export function buildContext(entries) {
  const requireTool = toolsRequire();
  const objects = entries.map((entry) => entry.object);
  for (const entry of entries) Object.assign(entry, modelOf(entry.object, requireTool));

  const byKind = (kind) => objects.filter((object) => object.kind === kind);
  const configMaps = new Map(byKind('ConfigMap').map((cm) => [cm.metadata.name, cm]));
  const pods = workloads(objects);
  const podsSelectedBy = (selector) => pods.filter((pod) => selects(selector, pod.meta.labels));

  const sidecars = [];
  for (const pod of pods) {
    const volumes = new Map((pod.spec.volumes ?? []).map((volume) => [volume.name, volume]));
    for (const container of podContainers(pod).filter(isBearerSidecar)) {
      sidecars.push({
        pod,
        container,
        volumes,
        where: `${pod.where} container ${container.name}`,
        isInit: (pod.spec.initContainers ?? []).includes(container),
        ports: new Map((container.ports ?? []).map((port) => [port.name, port.containerPort])),
        configRef: configOfContainer(container, volumes, configMaps),
      });
    }
  }

  // Each config is loaded once, whichever rule asks first: { where, text, config } or { where, text, problems }.
  const loaded = new Map();
  const loadConfig = (configMap, key) => {
    const id = `${configMap.metadata.name}/${key}`;
    if (!loaded.has(id)) {
      const text = configMap.data[key];
      loaded.set(id, { where: `ConfigMap/${configMap.metadata.name} ${key}`, text, ...loadProductConfig(text) });
    }
    return loaded.get(id);
  };

  return {
    entries,
    objects,
    byKind,
    configMaps,
    pods,
    podsSelectedBy,
    sidecars,
    /** Every bearer-sidecar config: each ConfigMap key that looks like one, then those --config names (loaded even when they do not look like one, so the product names the problem). */
    configs() {
      const found = [];
      for (const configMap of configMaps.values()) {
        for (const [key, text] of Object.entries(configMap.data ?? {}))
          if (looksLikeConfig(key, text)) found.push(loadConfig(configMap, key));
      }
      for (const { configRef } of sidecars)
        if (configRef.configMap) found.push(loadConfig(configRef.configMap, configRef.key));
      return [...new Set(found)];
    },
    /** The bearer-sidecar containers whose --config names a config that loads, each with { text, raw, config }. */
    sidecarsWithConfig() {
      return sidecars.flatMap((sidecar) => {
        if (!sidecar.configRef.configMap) return [];
        const { text, config } = loadConfig(sidecar.configRef.configMap, sidecar.configRef.key);
        return config ? [{ ...sidecar, text, raw: parseYaml(text), config }] : [];
      });
    },
    /** How many configs loaded (for the summary line). */
    configsLoaded: () => [...loaded.values()].filter((result) => result.config).length,
  };
}
