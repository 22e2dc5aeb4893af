{{- /*
Named templates shared by the chart's templates. Each one says what it renders and where it is used.
*/ -}}

{{- /*
The base name of every object of the release: the release name, cut to 40 characters so that the longest suffix
(-webhook-cert) and a Kubernetes name limit of 63 still fit.
*/ -}}
{{- define "modelplane.fullname" -}}
{{ .Release.Name | trunc 40 | trimSuffix "-" }}
{{- end -}}

{{- /*
The labels of every object the chart creates (the recommended app.kubernetes.io set and helm.sh/chart).
*/ -}}
{{- define "modelplane.labels" -}}
app.kubernetes.io/name: modelplane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelplane
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- /*
The labels of the operator pods, and the selector of the Deployment, the Services and the PodDisruptionBudget.
Selectors cannot change on upgrade: keep version-dependent labels out of it.
*/ -}}
{{- define "modelplane.selector" -}}
app.kubernetes.io/name: modelplane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- /*
The name of the webhook's Service; the operator's serving certificate is made out to <this>.<namespace>.svc.
*/ -}}
{{- define "modelplane.webhookName" -}}
{{ include "modelplane.fullname" . }}-webhook
{{- end -}}

{{- /*
The Secret that holds the webhook's serving certificate: kept by the operator (its Role may touch only this one), or
written by cert-manager's Certificate.
*/ -}}
{{- define "modelplane.certSecret" -}}
{{ include "modelplane.fullname" . }}-webhook-cert
{{- end -}}

{{- /*
The name of the MutatingWebhookConfiguration: cluster-scoped, so it carries the namespace too. The operator keeps
its caBundle current (its ClusterRole may patch only this one).
*/ -}}
{{- define "modelplane.webhookConfiguration" -}}
{{ include "modelplane.fullname" . }}.{{ .Release.Namespace }}.modelplane.dev
{{- end -}}

{{- /*
The clientConfig of both webhooks: the URL of webhook.url with /inject appended (an operator run outside the
cluster), or else the webhook Service. caBundle is left out: the operator or cert-manager fills it in.
*/ -}}
{{- define "modelplane.webhookClientConfig" -}}
{{- if .Values.webhook.url -}}
url: {{ printf "%s/inject" (trimSuffix "/" .Values.webhook.url) | quote }}
{{- else -}}
service:
  name: {{ include "modelplane.webhookName" . }}
  namespace: {{ .Release.Namespace }}
  path: /inject
  port: 443
{{- end -}}
{{- end -}}

{{- /*
The namespaceSelector expressions of both webhooks: never the release namespace or webhook.excludedNamespaces, and,
with watchNamespaces, only those (the operator has no view of the others). Lists are sorted and without repeats,
as inject.webhook_configuration() writes them.
*/ -}}
{{- define "modelplane.webhookNamespaces" -}}
- key: kubernetes.io/metadata.name
  operator: NotIn
  values: {{ concat (list .Release.Namespace) .Values.webhook.excludedNamespaces | uniq | sortAlpha | toJson }}
{{- with .Values.watchNamespaces }}
- key: kubernetes.io/metadata.name
  operator: In
  values: {{ . | uniq | sortAlpha | toJson }}
{{- end }}
{{- end -}}
