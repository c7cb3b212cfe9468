{{/*
Names and labels shared by every template of the chart.
*/}}

{{/* The chart's name: "callfs" unless nameOverride. */}}
{{- define "callfs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, else the release name when it already holds the chart name
("callfs" for `helm install callfs`), else "<release>-<chart>". Cluster-scoped objects (ClusterRoles and their
bindings) carry it, so two releases never claim the same name.
*/}}
{{- define "callfs.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := include "callfs.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* helm.sh/chart: chart name and version. */}}
{{- define "callfs.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of one component: (dict "ctx" $ "component" "operator"). Selectors are immutable: never add
labels here.
*/}}
{{- define "callfs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "callfs.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every label of an object of one component: (dict "ctx" $ "component" "operator"). */}}
{{- define "callfs.labels" -}}
helm.sh/chart: {{ include "callfs.chart" .ctx }}
{{ include "callfs.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: callfs
{{- end }}

{{/*
The Secret every CSI call of the StorageClass is handed, as (dict "name" .. "namespace" ..): csi.secret when
named, else the root API key Secret the operator generates for csi.storageClass.cluster (<name>-api-key in the
cluster's namespace); empty name when there is neither.
*/}}
{{- define "callfs.csiSecret" -}}
{{- $secret := .Values.csi.secret }}
{{- $cluster := .Values.csi.storageClass.cluster }}
{{- if $secret.name }}
{{- dict "name" $secret.name "namespace" ($secret.namespace | default .Release.Namespace) | toJson }}
{{- else if $cluster }}
{{- $parts := splitList "/" $cluster }}
{{- dict "name" (printf "%s-api-key" (last $parts)) "namespace" (first $parts) | toJson }}
{{- else }}
{{- dict "name" "" "namespace" "" | toJson }}
{{- end }}
{{- end }}

{{/* Whether the chart creates the StorageClass: asked for, and told which CallFS cluster volumes live on. */}}
{{- define "callfs.storageClassEnabled" -}}
{{- $sc := .Values.csi.storageClass }}
{{- if and .Values.csi.enabled $sc.create (or $sc.cluster $sc.server) }}true{{ end }}
{{- end }}

{{/*
What the operator does to the objects of the namespaces it watches (each rule says which code path uses it).
With operator.allNamespaces these rules go into the ClusterRole; otherwise into a Role in each watched
namespace, so that the operator can read no Secret and delete no claim anywhere else.
*/}}
{{- define "callfs.operatorNamespacedRules" }}
  # kopf watches CallFSClusters and patches its annotations and the finalizer on them.
  - apiGroups: [callfs.io]
    resources: [callfsclusters]
    verbs: [get, list, watch, patch]
  # Status conditions (the current status is read from the CallFSCluster itself before it is written).
  - apiGroups: [callfs.io]
    resources: [callfsclusters/status]
    verbs: [patch]
  # Owner references with blockOwnerDeletion on the children.
  - apiGroups: [callfs.io]
    resources: [callfsclusters/finalizers]
    verbs: [update]
  # Children, applied server-side (create-or-patch), listed and deleted when the spec no longer wants them;
  # Secrets are read to keep generated values and to check the ones a spec references.
  - apiGroups: [""]
    resources: [secrets]
    verbs: [get, list, create, patch, delete]
  - apiGroups: [""]
    resources: [configmaps, services]
    verbs: [list, create, patch, delete]
  # StatefulSets are also watched: their status changes refresh the cluster's status at once.
  - apiGroups: [apps]
    resources: [statefulsets]
    verbs: [get, list, watch, create, patch, delete]
  - apiGroups: [policy]
    resources: [poddisruptionbudgets]
    verbs: [list, create, patch, delete]
  # Claims: listed for the status (Pending, capacity), patched to grow them; deletionPolicy Delete removes them.
  - apiGroups: [""]
    resources: [persistentvolumeclaims]
    verbs: [list, patch, delete]
  # Pods are read for the status: containers that crash or cannot pull their image, pods that cannot be scheduled.
  - apiGroups: [""]
    resources: [pods]
    verbs: [list]
  # Events on CallFSClusters (kopf posts them through the core API); the Events of claims and StatefulSets are
  # read to say why a claim is Pending or a pod cannot be created.
  - apiGroups: [""]
    resources: [events]
    verbs: [list, create]
{{- if .Values.operator.peering }}
  # kopf peering between operator replicas.
  - apiGroups: [kopf.dev]
    resources: [kopfpeerings]
    verbs: [get, list, watch, patch]
{{- end }}
{{- end }}
