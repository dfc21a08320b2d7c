// Rules on how the objects refer to each other: selectors, ports, scale targets, volumes.
import { podContainers, podPortNames, selects } from './context.mjs';

/** A Service selects a pod of these manifests, and its targetPorts are ports of those pods. */
export function serviceSelectsPods({ byKind, pods, podsSelectedBy }, report) {
  for (const service of byKind('Service')) {
    const where = `Service/${service.metadata.name}`;
    const selected = podsSelectedBy(service.spec?.selector);
    if (selected.length === 0) {
      if (pods.length > 0) report(where, 'selects no pod in these manifests');
      continue;
    }
    for (const port of service.spec?.ports ?? []) {
      const target = port.targetPort ?? port.port;
      for (const pod of selected)
        if (!podPortNames(pod).has(target)) report(where, `targetPort ${target} is not a port of ${pod.where}`);
    }
  }
}

/** NetworkPolicies with the pods they select (a policy that selects none is reported by networkPolicySelectsPods). */
const policiesWithPods = ({ byKind, podsSelectedBy }) =>
  byKind('NetworkPolicy')
    .map((policy) => ({
      policy,
      where: `NetworkPolicy/${policy.metadata.name}`,
      selected: podsSelectedBy(policy.spec?.podSelector),
    }))
    .filter(({ selected }) => selected.length > 0);

/** A NetworkPolicy selects a pod of these manifests, and its ingress ports are ports of those pods. */
export function networkPolicySelectsPods(context, report) {
  const { byKind, pods, podsSelectedBy } = context;
  for (const policy of byKind('NetworkPolicy')) {
    if (pods.length > 0 && podsSelectedBy(policy.spec?.podSelector).length === 0)
      report(`NetworkPolicy/${policy.metadata.name}`, 'selects no pod in these manifests');
  }
  for (const { policy, where, selected } of policiesWithPods(context)) {
    for (const rule of policy.spec?.ingress ?? []) {
      for (const port of rule.ports ?? []) {
        for (const pod of selected)
          if (!podPortNames(pod).has(port.port)) report(where, `port ${port.port} is not a port of ${pod.where}`);
      }
    }
  }
}

/** No NetworkPolicy ingress rule has `from: []`, which admits every source. */
export function networkPolicyNoOpenFrom(context, report) {
  for (const { policy, where } of policiesWithPods(context)) {
    for (const rule of policy.spec?.ingress ?? []) {
      if (rule.from !== undefined && rule.from.length === 0)
        report(where, 'an ingress rule with `from: []` admits every source');
    }
  }
}

/** A PodDisruptionBudget selects a pod of these manifests. */
export function pdbSelectsPods({ byKind, pods, podsSelectedBy }, report) {
  for (const pdb of byKind('PodDisruptionBudget')) {
    if (pods.length > 0 && podsSelectedBy(pdb.spec?.selector).length === 0)
      report(`PodDisruptionBudget/${pdb.metadata.name}`, 'selects no pod');
  }
}

/** A HorizontalPodAutoscaler's scaleTargetRef is an object of these manifests. */
export function hpaTargetExists({ byKind, objects }, report) {
  for (const hpa of byKind('HorizontalPodAutoscaler')) {
    const target = hpa.spec?.scaleTargetRef ?? {};
    if (!objects.some((object) => object.kind === target.kind && object.metadata?.name === target.name)) {
      report(
        `HorizontalPodAutoscaler/${hpa.metadata.name}`,
        `scaleTargetRef ${target.kind}/${target.name} is not in these manifests`,
      );
    }
  }
}

/** A ServiceMonitor selects a Service of these manifests, and its endpoint ports are ports of that Service. */
export function serviceMonitorSelectsService({ byKind }, report) {
  for (const monitor of byKind('ServiceMonitor')) {
    const where = `ServiceMonitor/${monitor.metadata.name}`;
    const services = byKind('Service').filter((service) => selects(monitor.spec?.selector, service.metadata.labels));
    if (services.length === 0) report(where, 'selects no Service in these manifests');
    for (const endpoint of monitor.spec?.endpoints ?? []) {
      for (const service of services) {
        if (!(service.spec?.ports ?? []).some((port) => port.name === endpoint.port))
          report(where, `port ${endpoint.port} is not a port of Service/${service.metadata.name}`);
      }
    }
  }
}

/** A PodMonitor's endpoint ports are ports of the pods it selects. */
export function podMonitorPorts({ byKind, podsSelectedBy }, report) {
  for (const monitor of byKind('PodMonitor')) {
    for (const pod of podsSelectedBy(monitor.spec?.selector)) {
      for (const endpoint of monitor.spec?.podMetricsEndpoints ?? []) {
        if (!podPortNames(pod).has(endpoint.port))
          report(`PodMonitor/${monitor.metadata.name}`, `port ${endpoint.port} is not a port of ${pod.where}`);
      }
    }
  }
}

/** Every volumeMount of every container names a volume of its pod. */
export function volumeMountsDefined({ pods }, report) {
  for (const pod of pods) {
    const volumes = new Set((pod.spec.volumes ?? []).map((volume) => volume.name));
    for (const container of podContainers(pod)) {
      for (const mount of container.volumeMounts ?? []) {
        if (!volumes.has(mount.name))
          report(pod.where, `container ${container.name} mounts volume ${mount.name}, which the pod does not define`);
      }
    }
  }
}
