{{/*
Chart name, truncated to the 63 characters a DNS label allows.
*/}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name prefix of every resource: the release name (or fullnameOverride).
Resources are <release>-scheduler, <release>-executor, <release>-submitter,
<release>-pipelines: the names `sluice submit/scale/status --release <release>`
and the Airflow DAGs (SLUICE_RELEASE) derive, whatever the release is called.
*/}}
{{- define "sluice.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/*
The scheduler URL pipeline drivers use (SLUICE_SCHEDULER in their pods).
*/}}
{{- define "sluice.schedulerUrl" -}}
{{- printf "df://%s-scheduler:%d" (include "sluice.fullname" .) (int .Values.scheduler.port) -}}
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
{{- $tag := required "image.tag is required (or image.digest): the version pushed to your registry, e.g. --set image.tag=0.1.0" .Values.image.tag -}}
{{- printf "%s:%s" .Values.image.repository ($tag | toString) -}}
{{- end -}}
{{- end -}}

{{/*
Environment of every Sluice container, as a list (rendered with toYaml or
toJson). `sluice submit` builds the same list (engine/src/k8s/template.rs).
*/}}
{{- define "sluice.envList" -}}
{{- include "sluice.checkLake" . -}}
{{- $env := list (dict "name" "RUST_LOG" "value" (.Values.logLevel | toString)) -}}
{{- if .Values.azure.storageAccountName -}}
{{- $env = append $env (dict "name" "AZURE_STORAGE_ACCOUNT_NAME" "value" .Values.azure.storageAccountName) -}}
{{- end -}}
{{- if .Values.azure.existingSecret -}}
{{- $ref := dict "name" .Values.azure.existingSecret "key" .Values.azure.existingSecretKey -}}
{{- $env = append $env (dict "name" "AZURE_STORAGE_ACCOUNT_KEY" "valueFrom" (dict "secretKeyRef" $ref)) -}}
{{- end -}}
{{- if .Values.lake.url -}}
{{- $env = append $env (dict "name" "SLUICE_LAKE" "value" .Values.lake.url) -}}
{{- end -}}
{{- range .Values.extraEnv -}}
{{- $env = append $env . -}}
{{- end -}}
{{- toJson $env -}}
{{- end -}}

{{/*
A cloud lake URL needs credentials: workload identity, a storage key Secret,
or (tests only) the Azurite emulator through extraEnv. Fails naming the keys.
*/}}
{{- define "sluice.checkLake" -}}
{{- $url := .Values.lake.url | toString -}}
{{- if or (hasPrefix "abfss://" $url) (hasPrefix "az://" $url) (hasPrefix "azure://" $url) (hasPrefix "abfs://" $url) -}}
{{- $emulator := false -}}
{{- range .Values.extraEnv -}}
{{- if eq .name "AZURE_STORAGE_USE_EMULATOR" -}}{{- $emulator = true -}}{{- end -}}
{{- end -}}
{{- if not (or .Values.azure.workloadIdentity.enabled .Values.azure.existingSecret $emulator) -}}
{{- fail (printf "lake.url %s has no credentials configured: set azure.workloadIdentity.enabled=true (with azure.workloadIdentity.clientId) or azure.existingSecret" $url) -}}
{{- end -}}
{{- if and (not .Values.azure.storageAccountName) (not $emulator) -}}
{{- fail (printf "lake.url %s needs azure.storageAccountName (the account in the URL's host)" $url) -}}
{{- end -}}
{{- end -}}
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
