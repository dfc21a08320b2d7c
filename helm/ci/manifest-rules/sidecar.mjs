// Rules on each bearer-sidecar container (by name or image), whatever chart or file it comes from.

/** Non-root, not uid 0, read-only root filesystem, no privilege escalation, not privileged, drops ALL, RuntimeDefault seccomp. */
export function sidecarSecurityContext({ sidecars }, report) {
  for (const { pod, container, where } of sidecars) {
    const podSecurity = pod.spec.securityContext ?? {};
    const security = container.securityContext ?? {};
    const effective = (key) => security[key] ?? podSecurity[key];
    if (effective('runAsNonRoot') !== true) report(where, 'runAsNonRoot must be true');
    if (effective('runAsUser') === 0) report(where, 'runAsUser must not be 0');
    if (security.readOnlyRootFilesystem !== true) report(where, 'readOnlyRootFilesystem must be true');
    if (security.allowPrivilegeEscalation !== false) report(where, 'allowPrivilegeEscalation must be false');
    if (security.privileged === true) report(where, 'must not be privileged');
    if (!(security.capabilities?.drop ?? []).includes('ALL')) report(where, 'capabilities.drop must include ALL');
    if (!['RuntimeDefault', 'Localhost'].includes(effective('seccompProfile')?.type))
      report(where, 'seccompProfile must be RuntimeDefault (container or pod)');
  }
}

/** CPU and memory requests and a memory limit. */
export function sidecarResources({ sidecars }, report) {
  for (const { container, where } of sidecars) {
    if (!container.resources?.requests?.memory || !container.resources?.requests?.cpu)
      report(where, 'resources.requests.cpu and .memory must be set');
    if (!container.resources?.limits?.memory) report(where, 'resources.limits.memory must be set');
  }
}

/** As an init container it is a native sidecar (restartPolicy: Always): it never exits, so it would block the pod. */
export function sidecarNativeInit({ sidecars }, report) {
  for (const { container, where, isInit } of sidecars) {
    if (isInit && container.restartPolicy !== 'Always') {
      report(where, 'an init container that never exits blocks the pod: a native sidecar needs restartPolicy: Always');
    }
  }
}

/** Liveness probes GET /healthz; readiness GET /readyz (or /healthz). */
export function sidecarProbePaths({ sidecars }, report) {
  for (const { container, where } of sidecars) {
    if (container.livenessProbe?.httpGet?.path !== '/healthz') report(where, 'livenessProbe must be GET /healthz');
    if (!['/readyz', '/healthz'].includes(container.readinessProbe?.httpGet?.path))
      report(where, 'readinessProbe must be GET /readyz (or /healthz)');
  }
}

/** No Secret volume mounted with subPath (a rotated Secret would never reach the file). */
export function sidecarSecretNoSubPath({ sidecars }, report) {
  for (const { container, volumes, where } of sidecars) {
    for (const mount of container.volumeMounts ?? []) {
      if (volumes.get(mount.name)?.secret && mount.subPath)
        report(
          where,
          `secret volume ${mount.name} is mounted with subPath: a rotated Secret would never reach the file`,
        );
    }
  }
}

/** --config names a key of a ConfigMap of these manifests that is mounted into the container. */
export function sidecarConfigMounted({ sidecars }, report) {
  for (const { configRef, where } of sidecars) if (configRef.error) report(where, configRef.error);
}
