{{/*
Chart name, truncated to 63 characters (DNS label).
*/}}
{{- define "cnpg-autoresize.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name used as the prefix of every object.
*/}}
{{- define "cnpg-autoresize.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cnpg-autoresize.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "cnpg-autoresize.labels" -}}
helm.sh/chart: {{ include "cnpg-autoresize.chart" . }}
{{ include "cnpg-autoresize.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cnpg-autoresize
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "cnpg-autoresize.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cnpg-autoresize.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the chart's own ServiceAccount.
*/}}
{{- define "cnpg-autoresize.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cnpg-autoresize.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
RBAC subjects: the ServiceAccount of every listed cluster (CNPG runs instance
pods as the ServiceAccount named after the cluster) plus the chart's own
ServiceAccount when it creates one. Duplicates are removed.
*/}}
{{- define "cnpg-autoresize.subjects" -}}
{{- $names := list }}
{{- range .Values.clusters }}
{{- $names = append $names (default .name .serviceAccountName) }}
{{- end }}
{{- if .Values.serviceAccount.create }}
{{- $names = append $names (include "cnpg-autoresize.serviceAccountName" .) }}
{{- end }}
{{- range ($names | uniq) }}
- kind: ServiceAccount
  name: {{ . }}
  namespace: {{ $.Release.Namespace }}
{{- end }}
{{- end }}

{{/*
Container image reference (digest wins over tag).
*/}}
{{- define "cnpg-autoresize.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
PromQL label matcher that scopes every alert to the release namespace.
*/}}
{{- define "cnpg-autoresize.promSelector" -}}
namespace="{{ .Release.Namespace }}"
{{- end }}

{{/*
The ServiceAccount token's mount path (the kubelet's projected volume).
*/}}
{{- define "cnpg-autoresize.serviceAccountTokenPath" -}}
/var/run/secrets/kubernetes.io/serviceaccount
{{- end }}

{{/*
THE manager container, rendered once for every way it reaches a pod: the
MutatingAdmissionPolicy, the Kyverno policy, the CNPG-I plugin's template and
the snippet in NOTES.txt, so they cannot drift apart (hack/check-injection.py
runs all three injections on the same pods and compares the containers).

Call with (dict "root" $ "mounts" M "volumeArgs" A "cluster" C) where
  mounts      the volumeMounts value: a list, or a string the caller's
              mechanism evaluates (a "__CEL_SPLICE__:" CEL list expression for
              the MutatingAdmissionPolicy, a Kyverno "{{ ... }}" variable);
  volumeArgs  the arguments naming the pod's volumes (--wal-path,
              --tablespace=...): a list of strings, or a one-element list
              with a "__CEL_SPLICE__:" CEL list expression;
  cluster     the cluster's entry in values, for the password Secret (optional;
              "cel" true instead reads it from CEL variables pgSecretName /
              pgSecretKey).
Every volume is mounted where CloudNativePG mounts it in the postgres
container, found there by mount path (hack/check-injection.py and the plugin
follow the same rule): data, WAL, each tablespace, /controller (peer
authentication's socket directory) and the ServiceAccount token.

It is a native sidecar (an init container with restartPolicy Always,
Kubernetes >= 1.29): it starts before PostgreSQL and stops after it.

Probes: a liveness probe on /healthz only. There is deliberately NO
readinessProbe: every container's readiness gates the pod's readiness, so a
failing readiness probe of this sidecar would take PostgreSQL out of its
Services (cnpg's -rw/-ro/-r endpoints). /readyz only means "the first disk
probe is done"; API server reachability is the metric cnpg_autoresize_api_up.
And NO startupProbe: a native sidecar's startup probe gates the start of the
next init container and of PostgreSQL itself.
*/}}
{{- define "cnpg-autoresize.container" -}}
{{- $root := .root }}
{{- $s := $root.Values.sidecar }}
{{- $pg := $s.postgres }}
{{- $c := .cluster | default dict }}
{{- $secretName := default (printf "%s-autoresize" (toString $c.name)) (($c.pgPasswordSecret | default dict).name) }}
{{- $secretKey := default $pg.passwordSecretKey (($c.pgPasswordSecret | default dict).key) }}
{{- if .cel }}
{{- $secretName = "__CEL__:variables.pgSecretName" }}
{{- $secretKey = "__CEL__:variables.pgSecretKey" }}
{{- end }}
{{- include "cnpg-autoresize.checkTiming" $root }}
{{- /* Quantities as strings, whatever YAML made of them, so that every
       variant carries the same value. */}}
{{- $resources := dict }}
{{- range $k, $v := $s.resources }}
{{- if kindIs "map" $v }}
{{- $q := dict }}
{{- range $rk, $rv := $v }}{{ $_ := set $q $rk (toString $rv) }}{{ end }}
{{- $_ := set $resources $k $q }}
{{- else }}
{{- $_ := set $resources $k $v }}
{{- end }}
{{- end }}
{{- $securityContext := merge (dict "runAsUser" (int $s.runAsUser) "runAsGroup" (int $s.runAsGroup)) (deepCopy $s.securityContext) }}
name: {{ $s.containerName }}
image: {{ include "cnpg-autoresize.image" $root }}
imagePullPolicy: {{ $root.Values.image.pullPolicy }}
restartPolicy: Always
args:
  - run
  - --data-path={{ $s.dataPath }}
  {{- range .volumeArgs }}
  - {{ . | quote }}
  {{- end }}
  - --http-addr=0.0.0.0:{{ $s.port }}
  - --probe-interval={{ $s.probeInterval }}
  - --wal-interval={{ $s.walInterval }}
  - --slot-query-timeout={{ $s.slotQueryTimeout }}
  - --lease-duration={{ $s.leaseDuration }}
  - --renew-interval={{ $s.renewInterval }}
  - --log-format={{ $s.logFormat }}
  {{- range $s.extraArgs }}
  - {{ . | quote }}
  {{- end }}
env:
  - name: POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  - name: POD_NAMESPACE
    valueFrom:
      fieldRef:
        fieldPath: metadata.namespace
  - name: CLUSTER_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.labels['cnpg.io/cluster']
  {{- if eq $pg.auth "peer" }}
  # Peer authentication over CNPG's socket: no password anywhere.
  - name: PGHOST
    value: {{ $pg.socketDir | quote }}
  - name: PGUSER
    value: {{ $pg.peerUser | quote }}
  - name: PGDATABASE
    value: {{ $pg.database | quote }}
  {{- else }}
  - name: PGHOST
    value: {{ $pg.host | quote }}
  - name: PGPORT
    value: {{ $pg.port | quote }}
  - name: PGDATABASE
    value: {{ $pg.database | quote }}
  - name: PGUSER
    value: {{ $pg.user | quote }}
  # optional: a missing Secret must not keep the pod (and PostgreSQL, which
  # starts after this native sidecar) from starting; without a password the
  # WAL health check fails and resizes fail open (wal_health_unavailable).
  - name: PGPASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ $secretName | quote }}
        key: {{ $secretKey | quote }}
        optional: true
  {{- end }}
  {{- with $s.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
ports:
  - name: autoresize
    containerPort: {{ $s.port }}
    protocol: TCP
livenessProbe:
  httpGet:
    path: /healthz
    port: autoresize
  periodSeconds: 10
  timeoutSeconds: 1
  failureThreshold: 3
resources:
  {{- toYaml $resources | nindent 2 }}
securityContext:
  {{- toYaml $securityContext | nindent 2 }}
{{- if kindIs "string" .mounts }}
volumeMounts: {{ .mounts | quote }}
{{- else }}
volumeMounts:
  {{- toYaml .mounts | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Where CloudNativePG mounts its scratch volume (socket directory run/ inside),
and the ServiceAccount token's path; the injection copies both mounts from
the postgres container.
*/}}
{{- define "cnpg-autoresize.controllerDir" -}}
/controller
{{- end }}

{{/*
Fails the render on manager timings that cannot work together, so they never
reach a pod (the manager would stay up but inert): a lease under 3s, a renew
interval above a third of the lease. Go durations are summed from their parts.
*/}}
{{- define "cnpg-autoresize.durationMillis" -}}
{{- $total := 0.0 }}
{{- range (regexFindAll "[0-9]+(\\.[0-9]+)?(ms|s|m|h)" . -1) }}
{{- $unit := regexFind "(ms|s|m|h)$" . }}
{{- $n := float64 (trimSuffix $unit .) }}
{{- $factor := dict "ms" 1.0 "s" 1000.0 "m" 60000.0 "h" 3600000.0 }}
{{- $total = addf $total (mulf $n (get $factor $unit)) }}
{{- end }}
{{- $total }}
{{- end }}
{{- define "cnpg-autoresize.checkTiming" -}}
{{- $s := .Values.sidecar }}
{{- $lease := float64 (include "cnpg-autoresize.durationMillis" $s.leaseDuration) }}
{{- $renew := float64 (include "cnpg-autoresize.durationMillis" $s.renewInterval) }}
{{- if lt $lease 3000.0 }}
{{- fail (printf "sidecar.leaseDuration=%s: must be at least 3s (the manager would refuse it and stay inert)" $s.leaseDuration) }}
{{- end }}
{{- if gt (mulf $renew 3.0) $lease }}
{{- fail (printf "sidecar.renewInterval=%s with sidecar.leaseDuration=%s: the renew interval must be at most a third of the lease (the manager would refuse it and stay inert)" $s.renewInterval $s.leaseDuration) }}
{{- end }}
{{- end }}

{{/*
A value as a CEL expression for a MutatingAdmissionPolicy's JSONPatch, built
with Kubernetes' typed object construction (Object.spec.initContainers{...},
Object.spec.initContainers.env{...}, ...): the API server's CEL environment
rejects mixed-type map and list literals, so a container cannot be written as
a plain map. Call with (dict "v" VALUE "t" "Object.spec.initContainers").
Maps are typed objects named after their field path, except resource
quantity maps (resources.limits / requests), which are plain string maps.
Strings "__CEL__:EXPR" are written as EXPR; a list element
"__CEL_SPLICE__:EXPR" (EXPR a list) is spliced in with "+".
*/}}
{{- define "cnpg-autoresize.toCel" -}}
{{- $v := .v }}
{{- $t := .t }}
{{- $in := repeat (int (default 0 .depth)) "  " }}
{{- $in2 := printf "%s  " $in }}
{{- $depth := add1 (int (default 0 .depth)) }}
{{- if kindIs "map" $v }}
{{- $parts := list }}
{{- range $k, $x := $v }}
{{- if not (kindIs "invalid" $x) }}
{{- $childT := printf "%s.%s" $t $k }}
{{- $plain := regexMatch "\\.resources\\.(limits|requests)$" $childT }}
{{- $sub := include "cnpg-autoresize.toCel" (dict "v" $x "t" $childT "plain" $plain "depth" $depth) }}
{{- if $.plain }}
{{- $parts = append $parts (printf "%s: %s" (toJson $k) $sub) }}
{{- else }}
{{- if not (regexMatch "^[a-zA-Z_][a-zA-Z0-9_]*$" $k) }}{{ fail (printf "toCel: %q is not a CEL field name" $k) }}{{ end }}
{{- $parts = append $parts (printf "%s: %s" $k $sub) }}
{{- end }}
{{- end }}
{{- end }}
{{- if .plain }}
{{- printf "{%s}" (join ", " $parts) }}
{{- else if not $parts }}
{{- printf "%s{}" $t }}
{{- else }}
{{- printf "%s{\n%s%s\n%s}" $t $in2 (join (printf ",\n%s" $in2) $parts) $in }}
{{- end }}
{{- else if kindIs "slice" $v }}
{{- $segments := list }}
{{- $run := list }}
{{- $scalars := true }}
{{- range $v }}{{ if kindIs "map" . }}{{ $scalars = false }}{{ end }}{{ end }}
{{- range $v }}
{{- if and (kindIs "string" .) (hasPrefix "__CEL_SPLICE__:" .) }}
{{- if $run }}{{ $segments = append $segments $run }}{{ $run = list }}{{ end }}
{{- $segments = append $segments (printf "(%s)" (trimPrefix "__CEL_SPLICE__:" .)) }}
{{- else }}
{{- $run = append $run (include "cnpg-autoresize.toCel" (dict "v" . "t" $t "plain" false "depth" $depth)) }}
{{- end }}
{{- end }}
{{- if or $run (not $segments) }}{{ $segments = append $segments $run }}{{ end }}
{{- $out := list }}
{{- range $segments }}
{{- if kindIs "string" . }}
{{- $out = append $out . }}
{{- else if or $scalars (not .) }}
{{- $out = append $out (printf "[%s]" (join ", " .)) }}
{{- else }}
{{- $out = append $out (printf "[\n%s%s\n%s]" $in2 (join (printf ",\n%s" $in2) .) $in) }}
{{- end }}
{{- end }}
{{- join " + " $out }}
{{- else if kindIs "string" $v }}
{{- if hasPrefix "__CEL__:" $v }}{{ trimPrefix "__CEL__:" $v }}{{ else }}{{ toJson $v }}{{ end }}
{{- else if kindIs "bool" $v }}
{{- ternary "true" "false" $v }}
{{- else if or (kindIs "float64" $v) (kindIs "int" $v) (kindIs "int64" $v) }}
{{- if ne (float64 (int64 $v)) (float64 $v) }}{{ fail (printf "toCel: %v at %s is not an integer" $v $t) }}{{ end }}
{{- int64 $v }}
{{- else }}
{{- fail (printf "toCel: cannot convert %v (%s) at %s" $v (kindOf $v) $t) }}
{{- end }}
{{- end }}

{{/*
Standard alert annotations/labels tail. Call with (dict "root" $ "alert" "Name" "cfg" $cfg).
*/}}
{{- define "cnpg-autoresize.alertLabels" -}}
severity: {{ .cfg.severity }}
{{- with .root.Values.prometheusRule.additionalAlertLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "cnpg-autoresize.runbook" -}}
{{- with .root.Values.prometheusRule.runbookBaseURL }}
runbook_url: {{ printf "%s#%s" . ($.alert | lower) | quote }}
{{- end }}
{{- end }}
