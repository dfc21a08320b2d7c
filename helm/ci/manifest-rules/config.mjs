// Rules on the bearer-sidecar config: that it loads, and that it fits the container that runs it.
// The container rules look only at containers whose --config names a config that loads.
import { createHash } from 'node:crypto';
import { isBearerSidecar, podContainers } from './context.mjs';
import { envReferences, fileFields } from './product-config.mjs';

/** Every bearer-sidecar config loads with the product's loadConfig(), the store included. */
export function configLoads({ configs }, report) {
  for (const { where, problems } of configs()) {
    for (const problem of problems ?? []) report(where, `bearer-sidecar config: ${problem.path}: ${problem.message}`);
  }
}

/** Every `${VAR}` without a default in the config is an env var of the container (or it has envFrom). */
export function configEnvDefined({ sidecarsWithConfig }, report) {
  for (const { container, text, where } of sidecarsWithConfig()) {
    const defined = new Set((container.env ?? []).map((e) => e.name));
    for (const [, name, hasDefault] of envReferences(text)) {
      if (!hasDefault && !defined.has(name) && (container.envFrom ?? []).length === 0) {
        report(where, `\${${name}} is used in the config but the container sets no env var ${name}`);
      }
    }
  }
}

/** listen.port and admin.port are container ports, and every probe targets admin.port. */
export function configPorts({ sidecarsWithConfig }, report) {
  for (const { container, ports, config, where } of sidecarsWithConfig()) {
    const portNumbers = [...ports.values()];
    if ('port' in config.listen && !portNumbers.includes(config.listen.port))
      report(where, `listen.port ${config.listen.port} is not a container port`);
    if (!portNumbers.includes(config.admin.port))
      report(where, `admin.port ${config.admin.port} is not a container port`);
    const probePort = (probe) => {
      const port = probe?.httpGet?.port;
      return typeof port === 'string' ? ports.get(port) : port;
    };
    for (const probe of [container.livenessProbe, container.readinessProbe, container.startupProbe].filter(Boolean)) {
      if (probePort(probe) !== config.admin.port)
        report(where, `a probe targets port ${probe.httpGet?.port}, not admin.port ${config.admin.port}`);
    }
  }
}

/** admin.host is 0.0.0.0 or :: (the kubelet's probes come from outside the pod). */
export function configAdminReachable({ sidecarsWithConfig }, report) {
  for (const { config, where } of sidecarsWithConfig()) {
    if (config.admin.host !== '0.0.0.0' && config.admin.host !== '::')
      report(where, `admin.host ${config.admin.host}: the kubelet's probes come from outside the pod`);
  }
}

/** Beside an app in the same pod, the data plane listens on loopback only. */
export function configListenLoopbackBesideApp({ sidecarsWithConfig }, report) {
  for (const { pod, config, where } of sidecarsWithConfig()) {
    const hasApp = podContainers(pod).some((c) => !isBearerSidecar(c));
    if (hasApp && 'host' in config.listen && !['127.0.0.1', 'localhost', '::1'].includes(config.listen.host)) {
      report(where, `beside an app the data plane should listen on 127.0.0.1, not ${config.listen.host}`);
    }
  }
}

/** Every `...File` path is under a volume mounted into the container; a file store's path under a writable one. */
export function configFilesMounted({ sidecarsWithConfig }, report) {
  for (const { container, raw, where } of sidecarsWithConfig()) {
    const mounts = container.volumeMounts ?? [];
    const under = (file, writable) =>
      mounts.some((m) => file.startsWith(`${m.mountPath.replace(/\/$/, '')}/`) && (!writable || m.readOnly !== true));
    for (const { path: field, value } of fileFields(raw)) {
      if (!under(value, false)) report(where, `${field} ${value} is not under a volume mounted into the container`);
    }
    if (raw.store?.type === 'file' && !under(raw.store.path, true))
      report(where, `store.path ${raw.store.path} is not under a writable volume`);
  }
}

/** terminationGracePeriodSeconds exceeds the preStop sleep plus the config's shutdownTimeout. */
export function gracePeriod({ sidecarsWithConfig }, report) {
  for (const { pod, container, config, where } of sidecarsWithConfig()) {
    const shutdownSeconds = config.shutdownTimeoutMs / 1000;
    const preStop = Number(
      container.lifecycle?.preStop?.exec?.command?.[1] ?? container.lifecycle?.preStop?.sleep?.seconds ?? 0,
    );
    const grace = pod.spec.terminationGracePeriodSeconds ?? 30;
    if (grace <= shutdownSeconds + preStop) {
      report(
        where,
        `terminationGracePeriodSeconds ${grace} must exceed preStop ${preStop}s + shutdownTimeout ${shutdownSeconds}s`,
      );
    }
  }
}

/**
 * The pod's checksum/bearer-sidecar-config annotation matches the ConfigMap; a Helm-managed pod has
 * one unless its sidecar reloads the config by itself (--watch-config: a change applies in place).
 */
export function configChecksum({ sidecarsWithConfig }, report) {
  for (const { pod, container, text, where } of sidecarsWithConfig()) {
    const watching = (container.args ?? []).includes('--watch-config');
    const checksum = pod.meta.annotations?.['checksum/bearer-sidecar-config'];
    const helmManaged = pod.object.metadata?.labels?.['helm.sh/chart'];
    const expected = createHash('sha256').update(text.replace(/\n$/, '')).digest('hex');
    if (checksum !== undefined && checksum !== expected)
      report(where, 'checksum/bearer-sidecar-config does not match the ConfigMap');
    if (checksum === undefined && helmManaged && !watching)
      report(
        where,
        'no checksum/bearer-sidecar-config pod annotation and no --watch-config: a config change would not reach the pods',
      );
  }
}
