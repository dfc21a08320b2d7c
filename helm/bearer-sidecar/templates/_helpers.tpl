{{/*
Named templates. The ones a parent chart may include for sidecar mode are
`bearer-sidecar.container`, `bearer-sidecar.volumes` and `bearer-sidecar.podAnnotations`; they
read only `.Values` and `.Release`, so a parent passes
  (dict "Values" (index .Values "bearer-sidecar") "Release" .Release)
*/}}

{{/* The chart name (a constant, so it is the same when a parent chart includes the templates). */}}
{{- define "bearer-sidecar.name" -}}
{{- default "bearer-sidecar" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* RELEASE-bearer-sidecar, or the release name alone when it already contains the chart name. */}}
{{- define "bearer-sidecar.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "bearer-sidecar.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "bearer-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bearer-sidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "bearer-sidecar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "bearer-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "bearer-sidecar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "bearer-sidecar.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "bearer-sidecar.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (toString .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Where the chart puts things inside the container. */}}
{{- define "bearer-sidecar.configDir" -}}/etc/bearer-sidecar/config{{- end -}}
{{- define "bearer-sidecar.stateDir" -}}/var/lib/bearer-sidecar{{- end -}}
{{- define "bearer-sidecar.storeKeyDir" -}}/etc/bearer-sidecar/store-key{{- end -}}

{{- define "bearer-sidecar.secretName" -}}
{{- default (include "bearer-sidecar.fullname" .) .Values.secret.existingSecret -}}
{{- end -}}

{{- define "bearer-sidecar.hasSecret" -}}
{{- if or .Values.secret.existingSecret .Values.secret.data -}}true{{- end -}}
{{- end -}}

{{/* A duration of the product (`500ms`, `10s`, `5m`, `1h` or a number of seconds) in seconds. */}}
{{- define "bearer-sidecar.durationSeconds" -}}
{{- $text := toString . | trim -}}
{{- $pattern := "^([0-9]+(\\.[0-9]+)?)\\s*(ms|s|m|h)?$" -}}
{{- if not (regexMatch $pattern $text) -}}
{{- fail (printf "config.shutdownTimeout: not a duration: %q (use 500ms, 10s, 5m, 1h or a number of seconds)" $text) -}}
{{- end -}}
{{- $number := regexReplaceAll $pattern $text "${1}" | float64 -}}
{{- $unit := regexReplaceAll $pattern $text "${3}" | default "s" -}}
{{- $scale := get (dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0) $unit -}}
{{- mulf $number $scale -}}
{{- end -}}

{{/*
Checks that span values; every message names the value to change.
*/}}
{{- define "bearer-sidecar.validate" -}}
{{- $v := .Values -}}
{{- $config := $v.config | default dict -}}
{{- range $key := list "listen" "admin" "store" -}}
{{- if hasKey $config $key -}}
{{- fail (printf "config.%s is set by the chart: use the chart values %s.* instead" $key $key) -}}
{{- end -}}
{{- end -}}
{{- if not $config.accounts -}}
{{- fail "config.accounts: at least one account is required (see docs/kubernetes.md for examples)" -}}
{{- end -}}
{{- $replicas := int $v.replicaCount -}}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.maxReplicas) $replicas) -}}
{{- $replicas = int $v.autoscaling.maxReplicas -}}
{{- end -}}
{{- if and (eq $v.mode "standalone") (gt $replicas 1) (ne $v.store.type "redis") -}}
{{- fail (printf "%d replicas need store.type=redis (it is %q): replicas without a shared store each log in and keep their own token chain, and single-use refresh tokens or login-revokes-older-sessions APIs make them knock each other out. Set store.type=redis and store.redis.url, or replicaCount=1 with autoscaling.enabled=false" $replicas $v.store.type) -}}
{{- end -}}
{{- if eq $v.store.type "redis" -}}
{{- $shapes := 0 -}}
{{- range $shape := list $v.store.redis.url $v.store.redis.sentinels $v.store.redis.cluster -}}{{- if $shape -}}{{- $shapes = add1 $shapes -}}{{- end -}}{{- end -}}
{{- if ne $shapes 1 -}}
{{- fail "store.type=redis needs exactly one of store.redis.url (one server, e.g. redis://redis-master:6379/0), store.redis.sentinels (with store.redis.sentinelMaster) or store.redis.cluster; put the password in store.redis.existingSecret" -}}
{{- end -}}
{{- if and $v.store.redis.sentinels (not $v.store.redis.sentinelMaster) -}}
{{- fail "store.redis.sentinels needs store.redis.sentinelMaster: the name of the master the sentinels monitor (e.g. mymaster)" -}}
{{- end -}}
{{- end -}}
{{- if and (eq $v.store.type "redis") (regexMatch "^rediss?://[^/]*@" $v.store.redis.url) -}}
{{- fail "store.redis.url must not contain credentials: put the password in the Secret named by store.redis.existingSecret" -}}
{{- end -}}
{{- if and $v.pdb.enabled (not (kindIs "invalid" $v.pdb.minAvailable)) (ne (toString $v.pdb.minAvailable) "") (not (kindIs "invalid" $v.pdb.maxUnavailable)) (ne (toString $v.pdb.maxUnavailable) "") -}}
{{- fail "pdb: set either pdb.minAvailable or pdb.maxUnavailable, not both (set the other to \"\")" -}}
{{- end -}}
{{- if eq $v.mode "standalone" -}}
{{- $shutdown := include "bearer-sidecar.durationSeconds" (default "20s" $config.shutdownTimeout) | float64 -}}
{{- $needed := addf $shutdown (float64 $v.preStopSleepSeconds) -}}
{{- if le (float64 $v.terminationGracePeriodSeconds) $needed -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds + config.shutdownTimeout (%v s), or Kubernetes kills the pod before in-flight requests finish" $v.terminationGracePeriodSeconds $needed) -}}
{{- end -}}
{{- if has $v.listen.host (list "127.0.0.1" "localhost" "::1") -}}
{{- fail (printf "listen.host %s: in standalone mode the Service reaches the pod on its own address; leave listen.host empty (0.0.0.0)" $v.listen.host) -}}
{{- end -}}
{{- $inbound := $config.inbound | default dict -}}
{{- if and (not (hasKey $inbound "allow")) (not $v.networkPolicy.enabled) (not $v.apiKey.existingSecret) (not $inbound.apiKeys) -}}
{{- fail "standalone mode admits clients from any address by default, so it needs a guard: keep networkPolicy.enabled=true, set apiKey.existingSecret, or set config.inbound.allow to the client addresses explicitly" -}}
{{- end -}}
{{- end -}}
{{- if and (eq $v.mode "sidecar") $v.networkPolicy.sidecar.enabled (not $v.networkPolicy.sidecar.podSelector) -}}
{{- fail "networkPolicy.sidecar.podSelector is required: the labels of the app pods that carry the sidecar (e.g. matchLabels: {app: legacy-app})" -}}
{{- end -}}
{{- if and (eq $v.mode "sidecar") $v.metrics.podMonitor.enabled (not $v.metrics.podMonitor.selector) -}}
{{- fail "metrics.podMonitor.selector is required: the labels of the app pods that carry the sidecar (e.g. matchLabels: {app: legacy-app})" -}}
{{- end -}}
{{- end -}}

{{/* The store section of the product's config (docs/contract.md §3). */}}
{{- define "bearer-sidecar.storeConfig" -}}
{{- $store := .Values.store -}}
{{- if eq $store.type "memory" -}}
type: memory
{{- else if eq $store.type "file" -}}
type: file
path: {{ $store.file.path | quote }}
{{- else if eq $store.type "redis" -}}
type: redis
{{- if $store.redis.sentinels }}
sentinels: {{ toJson $store.redis.sentinels }}
name: {{ $store.redis.sentinelMaster | quote }}
{{- else if $store.redis.cluster }}
cluster: {{ toJson $store.redis.cluster }}
{{- else if and $store.redis.existingSecret (not (include "bearer-sidecar.redisPasswordFile" .)) }}
url: {{ regexReplaceAll "^(rediss?://)" $store.redis.url "${1}:${BEARER_SIDECAR_REDIS_PASSWORD}@" | quote }}
{{- else }}
url: {{ $store.redis.url | quote }}
{{- end }}
{{- with $store.redis.username }}
username: {{ . | quote }}
{{- end }}
{{- if include "bearer-sidecar.redisPasswordFile" . }}
passwordFile: {{ printf "%s/%s" (include "bearer-sidecar.redisPasswordDir" .) $store.redis.passwordKey | quote }}
{{- end }}
{{- if include "bearer-sidecar.redisTls" . }}
{{- $dir := include "bearer-sidecar.redisTlsDir" . }}
tls:
  caFile: {{ printf "%s/ca.crt" $dir | quote }}
  {{- if $store.redis.tls.clientCertificate }}
  certFile: {{ printf "%s/tls.crt" $dir | quote }}
  keyFile: {{ printf "%s/tls.key" $dir | quote }}
  {{- end }}
{{- end }}
keyPrefix: {{ $store.redis.keyPrefix | quote }}
{{- end }}
{{- if include "bearer-sidecar.storeEncrypted" . }}
encryptionKeyFile: {{ printf "%s/%s" (include "bearer-sidecar.storeKeyDir" .) $store.encryptionKey.key | quote }}
{{- end }}
{{- end -}}

{{/* With Sentinel or Cluster the Redis password is a mounted file (passwordFile); a URL carries it from an env var. */}}
{{- define "bearer-sidecar.redisPasswordFile" -}}
{{- $r := .Values.store.redis -}}
{{- if and (eq .Values.store.type "redis") $r.existingSecret (or $r.sentinels $r.cluster) -}}true{{- end -}}
{{- end -}}
{{- define "bearer-sidecar.redisPasswordDir" -}}/etc/bearer-sidecar/redis-password{{- end -}}

{{/* Redis over TLS: a Secret with ca.crt (and tls.crt, tls.key for a client certificate), mounted as files. */}}
{{- define "bearer-sidecar.redisTls" -}}
{{- if and (eq .Values.store.type "redis") .Values.store.redis.tls.existingSecret -}}true{{- end -}}
{{- end -}}
{{- define "bearer-sidecar.redisTlsDir" -}}/etc/bearer-sidecar/redis-tls{{- end -}}

{{- define "bearer-sidecar.storeEncrypted" -}}
{{- if and (ne .Values.store.type "memory") .Values.store.encryptionKey.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* The product's configuration file: values.config plus what the chart owns (listen, admin, store, inbound). */}}
{{- define "bearer-sidecar.configYaml" -}}
{{- include "bearer-sidecar.validate" . -}}
{{- $v := .Values -}}
{{- $config := deepCopy ($v.config | default dict) -}}
{{- $host := $v.listen.host | default (ternary "127.0.0.1" "0.0.0.0" (eq $v.mode "sidecar")) -}}
{{- $_ := set $config "listen" (dict "host" $host "port" (int $v.listen.port)) -}}
{{- $admin := dict "host" $v.admin.host "port" (int $v.admin.port) -}}
{{- with $v.admin.allow -}}{{- $_ := set $admin "allow" . -}}{{- end -}}
{{- if $v.admin.apiKey.existingSecret -}}
{{- $_ := set $admin "apiKeys" (list "${BEARER_SIDECAR_ADMIN_API_KEY}") -}}
{{- end -}}
{{- $_ := set $config "admin" $admin -}}
{{- $_ := set $config "store" (include "bearer-sidecar.storeConfig" . | fromYaml) -}}
{{- $inbound := deepCopy ($config.inbound | default dict) -}}
{{- if and (eq $v.mode "standalone") (not (hasKey $inbound "allow")) -}}
{{- $_ := set $inbound "allow" (list "0.0.0.0/0" "::/0") -}}
{{- end -}}
{{- if $v.apiKey.existingSecret -}}
{{- $_ := set $inbound "apiKeys" (append ($inbound.apiKeys | default list) "${BEARER_SIDECAR_API_KEY}") -}}
{{- end -}}
{{- if eq $v.mode "standalone" -}}
{{- /* Clients reach the sidecar by its Service's names: the Host rule accepts them. */ -}}
{{- $name := include "bearer-sidecar.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $name (printf "%s.%s" $name $ns) (printf "%s.%s.svc" $name $ns) (printf "%s.%s.svc.%s" $name $ns $v.clusterDomain) -}}
{{- $_ := set $inbound "hosts" (concat ($inbound.hosts | default list) $names | uniq) -}}
{{- end -}}
{{- if $inbound -}}
{{- $_ := set $config "inbound" $inbound -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
Pod annotations that roll the pods when the configuration (or a chart-made Secret) changes. With
watchConfig the sidecar applies a changed ConfigMap in place, so only a change of the store (which
a running sidecar refuses: it needs a restart) or of config.tracing (the same) rolls them.
*/}}
{{- define "bearer-sidecar.podAnnotations" -}}
{{- if .Values.watchConfig }}
checksum/bearer-sidecar-store: {{ toJson .Values.store | sha256sum }}
{{- with (.Values.config | default dict).tracing }}
checksum/bearer-sidecar-tracing: {{ toJson . | sha256sum }}
{{- end }}
{{- else }}
checksum/bearer-sidecar-config: {{ include "bearer-sidecar.configYaml" . | sha256sum }}
{{- end }}
{{- if and .Values.secret.data (not .Values.secret.existingSecret) }}
checksum/bearer-sidecar-secret: {{ toJson .Values.secret.data | sha256sum }}
{{- end }}
{{- end -}}

{{/* The bearer-sidecar container: standalone pods use it, sidecar users include it in their own pod. */}}
{{- define "bearer-sidecar.container" -}}
{{- $v := .Values -}}
{{- $native := and (eq $v.mode "sidecar") $v.sidecar.native -}}
name: {{ $v.sidecar.containerName }}
image: {{ include "bearer-sidecar.image" . | quote }}
imagePullPolicy: {{ $v.image.pullPolicy }}
{{- if $native }}
# A native sidecar (an init container that keeps running): starts before the app, stops after it.
restartPolicy: Always
{{- end }}
args:
  - --config
  - {{ printf "%s/config.yaml" (include "bearer-sidecar.configDir" .) }}
  {{- if $v.watchConfig }}
  - --watch-config
  {{- end }}
{{- if or $v.apiKey.existingSecret $v.admin.apiKey.existingSecret $v.store.redis.existingSecret $v.extraEnv }}
env:
  {{- if $v.admin.apiKey.existingSecret }}
  - name: BEARER_SIDECAR_ADMIN_API_KEY
    valueFrom:
      secretKeyRef:
        name: {{ $v.admin.apiKey.existingSecret }}
        key: {{ $v.admin.apiKey.key }}
  {{- end }}
  {{- if $v.apiKey.existingSecret }}
  - name: BEARER_SIDECAR_API_KEY
    valueFrom:
      secretKeyRef:
        name: {{ $v.apiKey.existingSecret }}
        key: {{ $v.apiKey.key }}
  {{- end }}
  {{- if and (eq $v.store.type "redis") $v.store.redis.existingSecret (not (include "bearer-sidecar.redisPasswordFile" .)) }}
  - name: BEARER_SIDECAR_REDIS_PASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ $v.store.redis.existingSecret }}
        key: {{ $v.store.redis.passwordKey }}
  {{- end }}
  {{- with $v.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
ports:
  - name: bs-data
    containerPort: {{ int $v.listen.port }}
    protocol: TCP
  - name: bs-admin
    containerPort: {{ int $v.admin.port }}
    protocol: TCP
{{- if $v.startupProbe.enabled }}
startupProbe:
  httpGet:
    path: /healthz
    port: bs-admin
  periodSeconds: {{ $v.startupProbe.periodSeconds }}
  failureThreshold: {{ $v.startupProbe.failureThreshold }}
{{- end }}
{{- if $v.livenessProbe.enabled }}
livenessProbe:
  httpGet:
    path: /healthz
    port: bs-admin
  initialDelaySeconds: {{ $v.livenessProbe.initialDelaySeconds }}
  periodSeconds: {{ $v.livenessProbe.periodSeconds }}
  timeoutSeconds: {{ $v.livenessProbe.timeoutSeconds }}
  failureThreshold: {{ $v.livenessProbe.failureThreshold }}
{{- end }}
{{- if $v.readinessProbe.enabled }}
readinessProbe:
  httpGet:
    path: {{ $v.readinessProbe.path }}
    port: bs-admin
  initialDelaySeconds: {{ $v.readinessProbe.initialDelaySeconds }}
  periodSeconds: {{ $v.readinessProbe.periodSeconds }}
  timeoutSeconds: {{ $v.readinessProbe.timeoutSeconds }}
  failureThreshold: {{ $v.readinessProbe.failureThreshold }}
{{- end }}
{{- if and (gt (int $v.preStopSleepSeconds) 0) (not $native) }}
lifecycle:
  preStop:
    # Endpoints and kube-proxy learn of the termination asynchronously: keep serving meanwhile.
    exec:
      command: ["sleep", "{{ int $v.preStopSleepSeconds }}"]
{{- end }}
{{- with $v.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.containerSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumeMounts:
  - name: bearer-sidecar-config
    mountPath: {{ include "bearer-sidecar.configDir" . }}
    readOnly: true
  {{- if include "bearer-sidecar.hasSecret" . }}
  # Mounted as a directory (never subPath) so a rotated Secret reaches the files; they are re-read at every login.
  - name: bearer-sidecar-secrets
    mountPath: {{ $v.secret.mountPath }}
    readOnly: true
  {{- end }}
  {{- if include "bearer-sidecar.storeEncrypted" . }}
  - name: bearer-sidecar-store-key
    mountPath: {{ include "bearer-sidecar.storeKeyDir" . }}
    readOnly: true
  {{- end }}
  {{- if include "bearer-sidecar.redisPasswordFile" . }}
  - name: bearer-sidecar-redis-password
    mountPath: {{ include "bearer-sidecar.redisPasswordDir" . }}
    readOnly: true
  {{- end }}
  {{- if include "bearer-sidecar.redisTls" . }}
  - name: bearer-sidecar-redis-tls
    mountPath: {{ include "bearer-sidecar.redisTlsDir" . }}
    readOnly: true
  {{- end }}
  - name: bearer-sidecar-state
    mountPath: {{ include "bearer-sidecar.stateDir" . }}
  - name: bearer-sidecar-tmp
    mountPath: /tmp
  {{- with $v.extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* The volumes the container mounts (a sidecar user adds these to the pod's volumes). */}}
{{- define "bearer-sidecar.volumes" -}}
{{- $v := .Values -}}
- name: bearer-sidecar-config
  configMap:
    name: {{ include "bearer-sidecar.fullname" . }}
{{- if include "bearer-sidecar.hasSecret" . }}
- name: bearer-sidecar-secrets
  secret:
    secretName: {{ include "bearer-sidecar.secretName" . }}
    defaultMode: {{ int $v.secret.defaultMode }}
{{- end }}
{{- if include "bearer-sidecar.storeEncrypted" . }}
- name: bearer-sidecar-store-key
  secret:
    secretName: {{ $v.store.encryptionKey.existingSecret }}
    defaultMode: {{ int $v.secret.defaultMode }}
    items:
      - key: {{ $v.store.encryptionKey.key }}
        path: {{ $v.store.encryptionKey.key }}
{{- end }}
{{- if include "bearer-sidecar.redisPasswordFile" . }}
- name: bearer-sidecar-redis-password
  secret:
    secretName: {{ $v.store.redis.existingSecret }}
    defaultMode: {{ int $v.secret.defaultMode }}
    items:
      - key: {{ $v.store.redis.passwordKey }}
        path: {{ $v.store.redis.passwordKey }}
{{- end }}
{{- if include "bearer-sidecar.redisTls" . }}
- name: bearer-sidecar-redis-tls
  secret:
    secretName: {{ $v.store.redis.tls.existingSecret }}
    defaultMode: {{ int $v.secret.defaultMode }}
{{- end }}
{{- if and (eq $v.mode "standalone") $v.store.file.existingClaim }}
- name: bearer-sidecar-state
  persistentVolumeClaim:
    claimName: {{ $v.store.file.existingClaim }}
{{- else }}
# Survives container restarts (a restarted sidecar with store.type=file does not log in again).
- name: bearer-sidecar-state
  emptyDir:
    sizeLimit: 16Mi
{{- end }}
- name: bearer-sidecar-tmp
  emptyDir:
    sizeLimit: 16Mi
{{- end -}}
