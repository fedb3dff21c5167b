{{- define "l7mp-ingress.name" -}}
{{ .Release.Name }}-l7mp-ingress
{{- end }}

{{- define "l7mp-ingress.labels" -}}
app.kubernetes.io/name: l7mp-ingress
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: l7mp
{{- end }}

{{- define "l7mp-ingress.selectorLabels" -}}
app.kubernetes.io/name: l7mp-ingress
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
