{{/*
The CNPG-I plugin (cnpgi.enabled; docs/deploy-cnpg-i.md): names shared by
its objects. The Service's name is the TLS server name CloudNativePG checks,
so the server certificate names it.
*/}}
{{- define "cnpg-autoresize.cnpgi.name" -}}
{{- printf "%s-cnpgi" (include "cnpg-autoresize.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cnpg-autoresize.cnpgi.serverSecret" -}}
{{- default (printf "%s-server-tls" (include "cnpg-autoresize.cnpgi.name" .)) .Values.cnpgi.certificates.serverSecret }}
{{- end }}

{{- define "cnpg-autoresize.cnpgi.clientSecret" -}}
{{- default (printf "%s-client-tls" (include "cnpg-autoresize.cnpgi.name" .)) .Values.cnpgi.certificates.clientSecret }}
{{- end }}

{{- define "cnpg-autoresize.cnpgi.selectorLabels" -}}
{{ include "cnpg-autoresize.selectorLabels" . }}
app.kubernetes.io/component: cnpgi-plugin
{{- end }}

{{/*
The sidecar template the plugin reads (--sidecar-template): THE manager
container of the "cnpg-autoresize.container" helper, with the parts that
depend on the pod left empty (mounts, --wal-path / --tablespace); the plugin
fills them in from each pod exactly as the MutatingAdmissionPolicy's CEL
does, and the password Secret's name (<cluster>-autoresize, or the
postgresSecret parameter). Rendered twice, a YAML document each: with sidecar.postgres.auth as
configured (the default), then with the other auth mode, so that a
Cluster's postgresAuth parameter picks either without a second definition.
*/}}
{{- define "cnpg-autoresize.cnpgi.sidecarTemplate" -}}
{{- $other := ternary "password" "peer" (eq .Values.sidecar.postgres.auth "peer") }}
{{- $values := deepCopy .Values }}
{{- $_ := set $values.sidecar.postgres "auth" $other }}
{{- /* The password Secret's name is per cluster: the plugin sets it. */}}
{{- $placeholder := dict "name" "<cluster>" }}
{{- $otherRoot := dict "Values" $values "Chart" .Chart "Release" .Release "Capabilities" .Capabilities "Template" .Template }}
# sidecar.postgres.auth={{ .Values.sidecar.postgres.auth }} (the default)
{{ include "cnpg-autoresize.container" (dict "root" . "mounts" (list) "volumeArgs" (list) "cluster" $placeholder) }}
---
# sidecar.postgres.auth={{ $other }} (a Cluster's postgresAuth parameter)
{{ include "cnpg-autoresize.container" (dict "root" $otherRoot "mounts" (list) "volumeArgs" (list) "cluster" $placeholder) }}
{{- end }}
