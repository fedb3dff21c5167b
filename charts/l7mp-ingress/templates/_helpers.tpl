{{- /* Names: <release>-<chart name> (or the release name alone when it already contains the name), capped at 63 characters as Kubernetes names and label values are. */ -}}
{{- define "l7mp-ingress.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "l7mp-ingress.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "l7mp-ingress.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "l7mp-ingress.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "l7mp-ingress.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "l7mp-ingress.selectorLabels" -}}
app.kubernetes.io/name: {{ include "l7mp-ingress.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "l7mp-ingress.labels" -}}
helm.sh/chart: {{ include "l7mp-ingress.chart" . }}
{{ include "l7mp-ingress.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: gateway
app.kubernetes.io/part-of: l7mp
{{- end }}

{{- /* [registry/]repository:tag, or @digest when one is given; the tag defaults to the chart's appVersion (the image a release builds and pushes, never a local-only tag). The offload image takes image.registry unless it names its own. */ -}}
{{- define "l7mp-ingress.image" -}}
{{- if .Values.offload.enabled }}
{{- if (default .Values.image.registry .Values.offload.image.registry) }}{{ default .Values.image.registry .Values.offload.image.registry }}/{{ end }}{{ .Values.offload.image.repository }}{{ if .Values.offload.image.digest }}@{{ .Values.offload.image.digest }}{{ else }}:{{ default .Chart.AppVersion .Values.offload.image.tag }}{{ end }}
{{- else }}
{{- if .Values.image.registry }}{{ .Values.image.registry }}/{{ end }}{{ .Values.image.repository }}{{ if .Values.image.digest }}@{{ .Values.image.digest }}{{ else }}:{{ default .Chart.AppVersion .Values.image.tag }}{{ end }}
{{- end }}
{{- end }}
