{{/* Names, labels and the checks every template shares. */}}

{{- define "remote-executor.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "remote-executor.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "remote-executor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "remote-executor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "remote-executor.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "remote-executor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
datahub.io/executor-pool: {{ .Values.datahub.poolId | quote }}
{{- end -}}

{{- define "remote-executor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "remote-executor.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the GMS token: the user's, or the one this chart makes from .token. */}}
{{- define "remote-executor.tokenSecretName" -}}
{{- if .Values.datahub.tokenSecret.name -}}
{{- .Values.datahub.tokenSecret.name -}}
{{- else -}}
{{- printf "%s-token" (include "remote-executor.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Refuse values that would deploy a broken executor, with a message saying what to set. */}}
{{- define "remote-executor.validate" -}}
{{- if not .Values.datahub.gmsUrl -}}
{{- fail "datahub.gmsUrl is required (e.g. https://your-company.acryl.io/gms)" -}}
{{- end -}}
{{- if and (not .Values.datahub.tokenSecret.name) (not .Values.datahub.token) -}}
{{- fail "datahub.tokenSecret.name (an existing Secret) or datahub.token is required" -}}
{{- end -}}
{{- if and .Values.datahub.tokenSecret.name .Values.datahub.token -}}
{{- fail "set datahub.tokenSecret.name or datahub.token, not both" -}}
{{- end -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.drainSeconds) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed drainSeconds (%v), or the kubelet kills running tasks before they are released" .Values.terminationGracePeriodSeconds .Values.drainSeconds) -}}
{{- end -}}
{{- if and .Values.autoscaling.keda.enabled .Values.autoscaling.hpa.enabled -}}
{{- fail "enable autoscaling.keda or autoscaling.hpa, not both (KEDA makes its own HPA)" -}}
{{- end -}}
{{- if and .Values.secretsMount.enabled (not (or .Values.secretsMount.secretName .Values.secretsMount.csi)) -}}
{{- fail "secretsMount.enabled needs secretsMount.secretName or secretsMount.csi" -}}
{{- end -}}
{{- end -}}
