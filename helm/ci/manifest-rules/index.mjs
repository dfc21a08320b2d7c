// The rules validate-manifests.mjs checks rendered manifests against, in the order they run.
// Each is a function (context, report) that checks one thing; report(where, message) records a
// problem, printed as `[name] where: message`. The context (./context.mjs) is computed once.
// `node helm/ci/validate-manifests.mjs --rules` prints this list.
import {
  configAdminReachable,
  configChecksum,
  configEnvDefined,
  configFilesMounted,
  configListenLoopbackBesideApp,
  configLoads,
  configPorts,
  gracePeriod,
} from './config.mjs';
import { k8sNoUnknownFields, k8sSchema } from './kubernetes.mjs';
import {
  sidecarConfigMounted,
  sidecarNativeInit,
  sidecarProbePaths,
  sidecarResources,
  sidecarSecretNoSubPath,
  sidecarSecurityContext,
} from './sidecar.mjs';
import {
  hpaTargetExists,
  networkPolicyNoOpenFrom,
  networkPolicySelectsPods,
  pdbSelectsPods,
  podMonitorPorts,
  serviceMonitorSelectsService,
  serviceSelectsPods,
  volumeMountsDefined,
} from './wiring.mjs';

export const RULES = [
  // Each object, as Kubernetes sees it.
  {
    name: 'k8s-schema',
    check: k8sSchema,
    description: 'every object validates against its Kubernetes schema (kubernetes-models, prometheus-operator models)',
  },
  {
    name: 'k8s-no-unknown-fields',
    check: k8sNoUnknownFields,
    description:
      "no field the Kubernetes types do not define, no value of the wrong type (TypeScript's check against the models' types)",
  },
  // How the objects refer to each other.
  {
    name: 'service-selects-pods',
    check: serviceSelectsPods,
    description: 'a Service selects a pod of these manifests and its targetPorts are ports of those pods',
  },
  {
    name: 'network-policy-selects-pods',
    check: networkPolicySelectsPods,
    description: 'a NetworkPolicy selects a pod of these manifests and its ingress ports are ports of those pods',
  },
  {
    name: 'network-policy-no-open-from',
    check: networkPolicyNoOpenFrom,
    description: 'no NetworkPolicy ingress rule has `from: []` (it admits every source)',
  },
  {
    name: 'pdb-selects-pods',
    check: pdbSelectsPods,
    description: 'a PodDisruptionBudget selects a pod of these manifests',
  },
  {
    name: 'hpa-target-exists',
    check: hpaTargetExists,
    description: "a HorizontalPodAutoscaler's scaleTargetRef is an object of these manifests",
  },
  {
    name: 'service-monitor-selects-service',
    check: serviceMonitorSelectsService,
    description:
      'a ServiceMonitor selects a Service of these manifests and its endpoint ports are ports of that Service',
  },
  {
    name: 'pod-monitor-ports',
    check: podMonitorPorts,
    description: "a PodMonitor's endpoint ports are ports of the pods it selects",
  },
  {
    name: 'volume-mounts-defined',
    check: volumeMountsDefined,
    description: 'every volumeMount of every container names a volume of its pod',
  },
  // Each bearer-sidecar container.
  {
    name: 'sidecar-security-context',
    check: sidecarSecurityContext,
    description:
      'bearer-sidecar runs non-root, read-only root filesystem, no privilege escalation, drops ALL, RuntimeDefault seccomp',
  },
  {
    name: 'sidecar-resources',
    check: sidecarResources,
    description: 'bearer-sidecar has CPU and memory requests and a memory limit',
  },
  {
    name: 'sidecar-native-init',
    check: sidecarNativeInit,
    description:
      'bearer-sidecar as an init container is a native sidecar (restartPolicy: Always), else it blocks the pod',
  },
  {
    name: 'sidecar-probe-paths',
    check: sidecarProbePaths,
    description: 'bearer-sidecar liveness probes GET /healthz, readiness GET /readyz (or /healthz)',
  },
  {
    name: 'sidecar-secret-no-subpath',
    check: sidecarSecretNoSubPath,
    description: 'bearer-sidecar mounts no Secret volume with subPath (a rotated Secret would never reach the file)',
  },
  {
    name: 'sidecar-config-mounted',
    check: sidecarConfigMounted,
    description: "bearer-sidecar's --config is a key of a ConfigMap of these manifests mounted into the container",
  },
  // The bearer-sidecar config, and how it fits the container that runs it.
  {
    name: 'config-loads',
    check: configLoads,
    description: "every bearer-sidecar config loads with the product's loadConfig(), the store included",
  },
  {
    name: 'config-env-defined',
    check: configEnvDefined,
    description: 'every ${VAR} without a default in the config is an env var of the container',
  },
  {
    name: 'config-ports',
    check: configPorts,
    description: 'listen.port and admin.port are container ports, and every probe targets admin.port',
  },
  {
    name: 'config-admin-reachable',
    check: configAdminReachable,
    description: "admin.host is 0.0.0.0 or :: (the kubelet's probes come from outside the pod)",
  },
  {
    name: 'config-listen-loopback-beside-app',
    check: configListenLoopbackBesideApp,
    description: 'beside an app in the same pod, the data plane listens on loopback only',
  },
  {
    name: 'config-files-mounted',
    check: configFilesMounted,
    description:
      "every ...File path is under a volume mounted into the container, a file store's path under a writable one",
  },
  {
    name: 'grace-period',
    check: gracePeriod,
    description: 'terminationGracePeriodSeconds exceeds the preStop sleep plus the config shutdownTimeout',
  },
  {
    name: 'config-checksum',
    check: configChecksum,
    description:
      "the pod's checksum/bearer-sidecar-config annotation matches the ConfigMap (a Helm-managed pod has one, or runs --watch-config)",
  },
];
