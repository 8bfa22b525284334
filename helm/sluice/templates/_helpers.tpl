{{/*
Chart name, truncated to the 63 characters a DNS label allows.
*/}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name prefix of every resource. A release named "sluice" gives
sluice-scheduler / sluice-executor, the names `sluice submit/scale/status` and
the pipeline configs (df://sluice-scheduler:50050) expect by default.
*/}}
{{- define "sluice.fullname" -}}
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

{{/*
Labels that select the pods of one component (stable across upgrades).
Usage: include "sluice.selectorLabels" (dict "root" $ "component" "executor")
*/}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
All labels of a component's resources.
*/}}
{{- define "sluice.labels" -}}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: sluice
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
Pod labels: selector labels plus the workload identity opt-in.
*/}}
{{- define "sluice.podLabels" -}}
{{ include "sluice.labels" . }}
{{- if .root.Values.azure.workloadIdentity.enabled }}
azure.workload.identity/use: "true"
{{- end }}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Image reference: repository@digest when image.digest is set, else repository:tag.
*/}}
{{- define "sluice.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/*
Environment of every Sluice container, as a list (rendered with toYaml or
toJson). `sluice submit` builds the same list (engine/src/k8s/template.rs).
*/}}
{{- define "sluice.envList" -}}
{{- $env := list (dict "name" "RUST_LOG" "value" (.Values.logLevel | toString)) -}}
{{- if .Values.azure.storageAccountName -}}
{{- $env = append $env (dict "name" "AZURE_STORAGE_ACCOUNT_NAME" "value" .Values.azure.storageAccountName) -}}
{{- end -}}
{{- if .Values.azure.existingSecret -}}
{{- $ref := dict "name" .Values.azure.existingSecret "key" .Values.azure.existingSecretKey -}}
{{- $env = append $env (dict "name" "AZURE_STORAGE_ACCOUNT_KEY" "valueFrom" (dict "secretKeyRef" $ref)) -}}
{{- end -}}
{{- range .Values.extraEnv -}}
{{- $env = append $env . -}}
{{- end -}}
{{- toJson $env -}}
{{- end -}}

{{/*
Pod-level security context shared by every Sluice pod; uid/gid 10001 is the
image's `sluice` user (Dockerfile), as in files/pipeline-job.yaml.
*/}}
{{- define "sluice.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Container-level security context: non-root, read-only root fs, no escalation.
*/}}
{{- define "sluice.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/*
Render files/pipeline-job.yaml, the template shared with `sluice submit`.
Each placeholder ${SLUICE_<KEY>} becomes the JSON of .vars.<KEY>, with '$'
escaped as \u0024 so that no value can form a placeholder. Fails on leftovers.
Usage: include "sluice.sharedJob" (dict "root" $ "vars" $vars)
*/}}
{{- define "sluice.sharedJob" -}}
{{- $out := .root.Files.Get "files/pipeline-job.yaml" -}}
{{- if not $out -}}
{{- fail "files/pipeline-job.yaml is missing from the chart: it is the Job template shared with `sluice submit`" -}}
{{- end -}}
{{- range $key, $value := .vars -}}
{{- $json := toJson $value | replace "$" "\\u0024" -}}
{{- $out = replace (printf "${SLUICE_%s}" $key) $json $out -}}
{{- end -}}
{{- if contains "${SLUICE_" $out -}}
{{- fail (printf "files/pipeline-job.yaml has a placeholder the chart does not fill (vars given: %s)" (keys .vars | sortAlpha | join ", ")) -}}
{{- end -}}
{{- $out -}}
{{- end -}}
