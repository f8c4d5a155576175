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
Kubernetes volume name CNPG gives a tablespace volume ("tbs-" + the name with
"_" replaced by "-"; CloudNativePG >= 1.23).
*/}}
{{- define "cnpg-autoresize.tablespaceVolume" -}}
{{- printf "tbs-%s" (. | replace "_" "-" | lower) }}
{{- end }}

{{/*
The manager container for the instance pods of one cluster.
Call with (dict "root" $ "cluster" $cluster). Used by the Kyverno policy and
by NOTES.txt, so what is documented is what is injected.
*/}}
{{- define "cnpg-autoresize.container" -}}
{{- $root := .root }}
{{- $c := .cluster }}
{{- $s := $root.Values.sidecar }}
{{- $secret := default (printf "%s-autoresize" $c.name) (($c.pgPasswordSecret | default dict).name) }}
{{- $secretKey := default $s.postgres.passwordSecretKey (($c.pgPasswordSecret | default dict).key) }}
name: {{ $s.containerName }}
image: {{ include "cnpg-autoresize.image" $root }}
imagePullPolicy: {{ $root.Values.image.pullPolicy }}
args:
  - run
  - --data-path={{ $s.dataPath }}
  {{- if $c.walStorage }}
  - --wal-path={{ $s.walPath }}
  {{- end }}
  {{- range $c.tablespaces }}
  - --tablespace={{ . }}={{ $s.tablespacesPath }}/{{ . }}
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
  - name: PGHOST
    value: {{ $s.postgres.host | quote }}
  - name: PGPORT
    value: {{ $s.postgres.port | quote }}
  - name: PGDATABASE
    value: {{ $s.postgres.database | quote }}
  - name: PGUSER
    value: {{ $s.postgres.user | quote }}
  - name: PGPASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ $secret }}
        key: {{ $secretKey }}
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
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: autoresize
  periodSeconds: 5
resources:
  {{- toYaml $s.resources | nindent 2 }}
securityContext:
  {{- toYaml $s.securityContext | nindent 2 }}
volumeMounts:
  # Read-only: the manager only measures (statvfs) and reads
  # pg_wal/archive_status; PostgreSQL keeps the read-write mounts.
  - name: pgdata
    mountPath: {{ $s.dataPath }}
    readOnly: true
  {{- if $c.walStorage }}
  - name: pg-wal
    mountPath: {{ $s.walPath }}
    readOnly: true
  {{- end }}
  {{- range $c.tablespaces }}
  - name: {{ include "cnpg-autoresize.tablespaceVolume" . }}
    mountPath: {{ $s.tablespacesPath }}/{{ . }}
    readOnly: true
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
