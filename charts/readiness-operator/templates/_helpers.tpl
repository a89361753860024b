{{/* The release's full name, cut to the 63 characters a label value allows. */}}
{{- define "readiness-operator.fullname" -}}
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

{{- define "readiness-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* What selects this release's pods; never changes across upgrades. */}}
{{- define "readiness-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "readiness-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "readiness-operator.labels" -}}
{{ include "readiness-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "readiness-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "readiness-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "readiness-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The kopf peering name: settings.peering, else the full name when replicas > 1, else none. */}}
{{- define "readiness-operator.peering" -}}
{{- if .Values.settings.peering -}}
{{- .Values.settings.peering -}}
{{- else if gt (int .Values.replicas) 1 -}}
{{- include "readiness-operator.fullname" . -}}
{{- end -}}
{{- end -}}

{{/*
READINESS_NAMESPACES for watchNamespaces: the operator reads the list the same way ("any of
these, less the '!' ones").
*/}}
{{- define "readiness-operator.namespaces" -}}
{{- join "," .Values.watchNamespaces -}}
{{- end -}}

{{/* "true" when every watched namespace is an exact name, so namespaced Roles can grant the rights. */}}
{{- define "readiness-operator.namespacedRbac" -}}
{{- if .Values.watchNamespaces -}}
{{- $exact := true -}}
{{- range .Values.watchNamespaces -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" .) -}}
{{- $exact = false -}}
{{- end -}}
{{- end -}}
{{- if $exact -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The rules of deploy/rbac.yaml, split by scope. "namespaced": what the operator does in the
namespaces it serves. "peering": kopf's peering objects, cluster-wide or in each namespace.
"cluster": CRD reads (kopf's discovery, /readyz) and namespace listing (kopf lists namespaces
when READINESS_NAMESPACES holds globs or several names).
*/}}
{{- define "readiness-operator.rules.namespaced" -}}
# The Deployments it watches and server-side applies to (never creates or deletes).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, patch]
# Read only: a failed rollout is put back to its previous ReplicaSet's pod template.
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [get, list]
# List only, by the Deployment's labels, while a rollout it started is under way: a new pod
# that cannot start (CreateContainerConfigError, ...) fails the rollout at once.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [readiness.dev]
  resources: [serviceprofiles]
  verbs: [get, list, watch]
- apiGroups: [readiness.dev]
  resources: [serviceprofiles/status]
  verbs: [get, patch]
# Its own Events and kopf's warnings.
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{- define "readiness-operator.rules.peering" -}}
# kopf peering (HA): the operator creates its peering object when it is missing and kopf keeps it.
- apiGroups: [kopf.dev]
  resources: [{{ . }}]
  verbs: [get, list, watch, create, patch]
{{- end -}}

{{- define "readiness-operator.rules.cluster" -}}
# kopf's discovery of resources; /readyz reads the CRD.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
# kopf lists namespaces when READINESS_NAMESPACES holds globs or several names.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end -}}

{{/*
The mutating admission webhook (settings.webhook "cluster"; deploy/webhook/ for kustomize): the
Service the apiserver calls, the TLS Secret the pods mount, and cert-manager's Certificate.
*/}}
{{- define "readiness-operator.webhookOn" -}}
{{- if eq (toString .Values.settings.webhook) "cluster" -}}true{{- end -}}
{{- end -}}

{{- define "readiness-operator.webhookService" -}}
{{- printf "%s-webhook" (include "readiness-operator.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{- define "readiness-operator.webhookCertificate" -}}
{{- include "readiness-operator.webhookService" . -}}
{{- end -}}

{{- define "readiness-operator.webhookSecret" -}}
{{- default (printf "%s-tls" (include "readiness-operator.webhookService" .)) .Values.webhook.secretName -}}
{{- end -}}
