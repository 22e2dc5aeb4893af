{{- define "modelplane.name" -}}modelplane{{- end -}}
{{- define "modelplane.fullname" -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}{{- end -}}
{{- define "modelplane.labels" -}}
app.kubernetes.io/name: modelplane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelplane
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "modelplane.selector" -}}
app.kubernetes.io/name: modelplane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}
{{- define "modelplane.webhookName" -}}{{ include "modelplane.fullname" . }}-webhook{{- end -}}
{{- define "modelplane.certSecret" -}}{{ include "modelplane.fullname" . }}-webhook-cert{{- end -}}
{{- define "modelplane.webhookConfiguration" -}}{{ include "modelplane.fullname" . }}.{{ .Release.Namespace }}.modelplane.dev{{- end -}}
