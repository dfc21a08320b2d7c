{{/*
The alert rules (Prometheus rule groups). The PrometheusRule uses them; dashboards/prometheus-rules.yaml
is the same groups rendered with the default values (for a Prometheus without the Operator), and
dashboards/prometheus-rules.test.yaml is their `promtool test rules` suite. Runbooks: docs/kubernetes.md.
*/}}
{{- define "bearer-sidecar.alertGroups" -}}
{{- $rules := .Values.metrics.prometheusRule -}}
{{- $loop := $rules.refreshLoop -}}
{{- $runbook := $rules.runbookBaseUrl -}}
- name: bearer-sidecar
  rules:
    # A healthy account obtains one token per refresh.at x lifetime. A loop obtains them much more
    # often: tokens far shorter than useful, or every token rejected upstream right away (401 ->
    # refresh -> 401; such refreshes back off from minInterval up to 5 minutes and the account
    # turns degraded, see BearerSidecarAccountDegraded). Two windows: 5m sees fast loops quickly; 30m sees the slow, guarded loops of long
    # lifetimes. A floor of one expected token per window keeps a single refresh from firing it.
    # Only successful token requests count: retries and rejected logins back off by design and have
    # their own alerts.
    - alert: BearerSidecarRefreshLoop
      expr: |
        (
          sum without (kind, outcome, trigger) (increase(bearer_sidecar_token_requests_total{outcome="success"}[5m]))
            > {{ $loop.factor }} * clamp_min(300 / ({{ $loop.refreshAt }} * bearer_sidecar_token_lifetime_seconds), 1)
        )
        or
        (
          sum without (kind, outcome, trigger) (increase(bearer_sidecar_token_requests_total{outcome="success"}[30m]))
            > {{ $loop.factor }} * clamp_min(1800 / ({{ $loop.refreshAt }} * bearer_sidecar_token_lifetime_seconds), 1)
        )
      for: {{ $loop.for }}
      labels:
        severity: {{ $loop.severity }}
      annotations:
        summary: {{ `bearer-sidecar account {{ $labels.account }} is in a token refresh loop` | quote }}
        description: {{ printf "Account {{ $labels.account }} on {{ $labels.instance }} obtains tokens more than %v times as often as its token lifetime (bearer_sidecar_token_lifetime_seconds) warrants. Tokens are probably rejected right after they are issued: check bearer_sidecar_upstream_rejections_total and the token lifetime the server announces." (toString $loop.factor) | quote }}
        {{- if $runbook }}
        runbook_url: {{ printf "%s#bearersidecarrefreshloop" $runbook | quote }}
        {{- end }}
    # Also covers an account that never got a token (the gauge is 0 from the start).
    - alert: BearerSidecarTokenInvalid
      expr: bearer_sidecar_token_valid == 0
      for: {{ $rules.tokenInvalid.for }}
      labels:
        severity: {{ $rules.tokenInvalid.severity }}
      annotations:
        summary: {{ `bearer-sidecar account {{ $labels.account }} holds no valid token` | quote }}
        description: {{ `Account {{ $labels.account }} on {{ $labels.instance }} has had no valid token for a while: requests get 503 token_unavailable. GET /readyz and /status on the admin port say why.` | quote }}
        {{- if $runbook }}
        runbook_url: {{ printf "%s#bearersidecartokeninvalid" $runbook | quote }}
        {{- end }}
    # A valid token, but something is wrong: the upstream rejects fresh tokens too (rejection
    # refreshes back off), renewals keep failing, or the shared store is unreachable. Clients are
    # still served; left alone, the token runs out (renewals) or the cause stays (rejections).
    - alert: BearerSidecarAccountDegraded
      expr: bearer_sidecar_account_state{state="degraded"} == 1
      for: {{ $rules.accountDegraded.for }}
      labels:
        severity: {{ $rules.accountDegraded.severity }}
      annotations:
        summary: {{ `bearer-sidecar account {{ $labels.account }} is degraded` | quote }}
        description: {{ `Account {{ $labels.account }} on {{ $labels.instance }} holds a valid token, but the upstream rejects fresh tokens, token renewals keep failing, or the token store is unreachable. GET /readyz lists the reasons under warnings; /status shows them per account.` | quote }}
        {{- if $runbook }}
        runbook_url: {{ printf "%s#bearersidecaraccountdegraded" $runbook | quote }}
        {{- end }}
    # A rejected login keeps serving the current token until it expires (token_valid may still be
    # 1). The second clause catches a process's first rejection: a counter series that did not
    # exist a window ago has no increase() yet.
    - alert: BearerSidecarLoginRejected
      expr: |
        sum without (trigger) (increase(bearer_sidecar_token_requests_total{kind="login",outcome="rejected"}[{{ $rules.loginRejected.window }}])) > 0
        or
        sum without (trigger) (
          bearer_sidecar_token_requests_total{kind="login",outcome="rejected"}
            unless bearer_sidecar_token_requests_total{kind="login",outcome="rejected"} offset {{ $rules.loginRejected.window }}
        )
      labels:
        severity: {{ $rules.loginRejected.severity }}
      annotations:
        summary: {{ `bearer-sidecar account {{ $labels.account }}: login rejected` | quote }}
        description: {{ `The token server rejected a login of account {{ $labels.account }} on {{ $labels.instance }} (bad credentials, invalid_client, locked account). The account is unready; it retries no more than once a minute and keeps serving its current token until it expires.` | quote }}
        {{- if $runbook }}
        runbook_url: {{ printf "%s#bearersidecarloginrejected" $runbook | quote }}
        {{- end }}
{{- end -}}
