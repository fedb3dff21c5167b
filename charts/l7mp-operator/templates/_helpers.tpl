{{- define "l7mp-operator.name" -}}
{{ .Release.Name }}-l7mp-operator
{{- end }}

{{- define "l7mp-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.name }}{{ .Values.serviceAccount.name }}{{ else }}{{ .Release.Name }}-l7mp-operator{{ end }}
{{- end }}

{{- define "l7mp-operator.labels" -}}
app.kubernetes.io/name: l7mp-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: l7mp
{{- end }}

{{- define "l7mp-operator.selectorLabels" -}}
app.kubernetes.io/name: l7mp-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
