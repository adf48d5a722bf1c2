#!/usr/bin/env bash
# Submit jobs/fsdp_ray to the RayCluster on EKS through a port-forwarded dashboard.
#
# Usage: jobs/submit.sh [--outputs-file cdk-outputs.json] [--cluster NAME] [--service SVC] [--namespace NS]
#                       [--region REGION] [--local-port 8265] [--dry-run] [--] [train.py args...]
# Values not given as flags come from the outputs file written by `cdk deploy --outputs-file`
# (keys RayHeadService, RayNamespace, ClusterName in the stack whose name ends with "-ray").
# If the cluster uses Ray token auth, export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN first.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
outputs_file="${repo_root}/cdk-outputs.json"
cluster="" service="" namespace="" region="" local_port=8265 dry_run=0

die() { echo "submit.sh: $*" >&2; exit 2; }

# Prints the value of KEY (or KEY plus CDK's 8-hex-digit hash suffix) from the "*-ray" stack of FILE.
# Splits the JSON into tokens at braces and commas, so pretty-printed and minified files both work;
# the values here (names) contain none of those characters.
stack_output() {
  local file="$1" key="$2"
  tr -d '\n\r' <"$file" | sed 's/[{},]/\n&\n/g' | awk -v key="$key" '
    /^[[:space:]]*$/ { next }
    /^\{$/ { depth++; if (depth == 2) in_ray = (pending ~ /-ray$/); pending = ""; next }
    /^\}$/ { depth--; if (depth < 2) in_ray = 0; next }
    /^,$/ { next }
    {
      line = $0
      if (!match(line, /^[[:space:]]*"[^"]*"[[:space:]]*:/)) next
      name = substr(line, RSTART, RLENGTH); sub(/^[[:space:]]*"/, "", name); sub(/"[[:space:]]*:$/, "", name)
      rest = substr(line, RSTART + RLENGTH); sub(/^[[:space:]]*/, "", rest)
      if (depth == 1 && rest == "") { pending = name; next }
      suffix = substr(name, length(key) + 1)
      hashed = index(name, key) == 1 && length(suffix) == 8 && suffix ~ /^[0-9A-F]+$/
      if (depth == 2 && in_ray && (name == key || hashed)) {
        sub(/^"/, "", rest); sub(/"[[:space:]]*$/, "", rest); print rest; exit
      }
    }'
}

while (($#)); do
  case "$1" in
    --outputs-file) outputs_file="${2:?}"; shift 2 ;;
    --cluster) cluster="${2:?}"; shift 2 ;;
    --service) service="${2:?}"; shift 2 ;;
    --namespace) namespace="${2:?}"; shift 2 ;;
    --region) region="${2:?}"; shift 2 ;;
    --local-port) local_port="${2:?}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --) shift; break ;;
    *) break ;;
  esac
done

if [[ -z "$cluster" || -z "$service" || -z "$namespace" ]]; then
  [[ -f "$outputs_file" ]] || die "no --cluster/--service/--namespace and no outputs file at $outputs_file"
  [[ -n "$cluster" ]] || cluster="$(stack_output "$outputs_file" ClusterName)"
  [[ -n "$service" ]] || service="$(stack_output "$outputs_file" RayHeadService)"
  [[ -n "$namespace" ]] || namespace="$(stack_output "$outputs_file" RayNamespace)"
fi
[[ -n "$cluster" && -n "$service" && -n "$namespace" ]] ||
  die "missing ClusterName/RayHeadService/RayNamespace (got '$cluster' '$service' '$namespace')"

region_args=()
[[ -n "$region" ]] && region_args=(--region "$region")
submit=(ray job submit --address "http://127.0.0.1:${local_port}" --working-dir "${repo_root}/jobs/fsdp_ray"
  -- python3 train.py --storage-path /fsx/ray_results "$@")

if ((dry_run)); then
  echo "cluster=${cluster} service=${service} namespace=${namespace}"
  echo "aws eks update-kubeconfig --name ${cluster} ${region_args[*]}"
  echo "kubectl -n ${namespace} port-forward svc/${service} ${local_port}:8265"
  echo "${submit[*]}"
  exit 0
fi

aws eks update-kubeconfig --name "$cluster" "${region_args[@]}"
kubectl -n "$namespace" port-forward "svc/${service}" "${local_port}:8265" >/dev/null &
forward_pid=$!
trap 'kill "$forward_pid" 2>/dev/null || true' EXIT

for _ in $(seq 60); do
  kill -0 "$forward_pid" 2>/dev/null || die "kubectl port-forward exited; is svc/${service} in ${namespace}?"
  if (exec 3<>"/dev/tcp/127.0.0.1/${local_port}") 2>/dev/null; then break; fi
  sleep 1
done
(exec 3<>"/dev/tcp/127.0.0.1/${local_port}") 2>/dev/null || die "dashboard not reachable on port ${local_port}"

"${submit[@]}"
