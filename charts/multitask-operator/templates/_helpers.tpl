{{/* Names and labels shared by every template of the chart. */}}

{{- define "mto.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* release-chart, or the release name alone when it already contains the chart name. */}}
{{- define "mto.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mto.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mto.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mto.labels" -}}
{{ include "mto.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "mto.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mto.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Leader election is on with more than one replica. */}}
{{- define "mto.peering" -}}
{{- if gt (int .Values.replicaCount) 1 -}}true{{- end -}}
{{- end -}}

{{- define "mto.peeringName" -}}
{{- default (include "mto.fullname" .) .Values.peeringName -}}
{{- end -}}

{{/*
The namespaces the operator handles, as a JSON list: watchNamespaces when set; else, unless
clusterWide is true, the release's own namespace (least privilege by default); [] means every
namespace (clusterWide: true, an explicit choice).
*/}}
{{- define "mto.namespaces" -}}
{{- if and .Values.clusterWide .Values.watchNamespaces -}}
{{- fail "set clusterWide: true (every namespace) or watchNamespaces (those only), not both" -}}
{{- end -}}
{{- if .Values.watchNamespaces -}}
{{- toJson .Values.watchNamespaces -}}
{{- else if .Values.clusterWide -}}
[]
{{- else -}}
{{- toJson (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}
