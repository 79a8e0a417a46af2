#!/usr/bin/env bash
# The kind tier: a local Kubernetes cluster with Kubeflow Pipelines standalone.
# It runs in GitHub Actions (.github/workflows/e2e-kind.yml); on a machine with
# Docker it runs the same way. Everything is pinned; tools missing from PATH
# are downloaded into .tools/bin with their published SHA-256 checked.
#
#   kind.sh up             create the cluster, install KFP, wait until it is ready
#   kind.sh down           delete the cluster
#   kind.sh port-forward   KFP API -> 127.0.0.1:$KFP_PORT, MinIO -> 127.0.0.1:$MINIO_PORT (background)
#   kind.sh load IMAGE     load a locally built image into the cluster's node
#   kind.sh s3 BUCKET      pattern 2's S3 in the cluster (KFP's MinIO): create BUCKET, create the
#                          secret p2-s3-credentials for pods, write $STATE/s3.env for the host side
#   kind.sh logs           nodes, KFP pods and the last pipeline pods' logs (for CI failures)
#   kind.sh status         nodes and KFP pods
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER="${KIND_CLUSTER:-patterns}"
KIND_VERSION="${KIND_VERSION:-v0.27.0}"
KUBECTL_VERSION="${KUBECTL_VERSION:-v1.32.3}"
KFP_VERSION="${KFP_VERSION:-2.14.3}"
KFP_PORT="${KFP_PORT:-8888}"
MINIO_PORT="${MINIO_PORT:-9000}"
READY_TIMEOUT="${KFP_READY_TIMEOUT:-900s}"
STATE="${STACK_STATE_DIR:-$ROOT/.state/local}/../kind"
TOOLS="$ROOT/.tools/bin"
export PATH="$TOOLS:$PATH"

log() { printf '[kind] %s\n' "$*"; }
die() { printf '[kind] error: %s\n' "$*" >&2; exit 1; }

fetch() { # fetch URL DEST: download and check against the published .sha256
  local url="$1" dest="$2" sum
  mkdir -p "$(dirname "$dest")"
  curl -fsSL "$url" -o "$dest.tmp"
  sum="$(curl -fsSL "$url.sha256sum" 2>/dev/null || curl -fsSL "$url.sha256")"
  echo "${sum%% *}  $dest.tmp" | sha256sum -c - >/dev/null || die "checksum mismatch for $url"
  chmod +x "$dest.tmp" && mv "$dest.tmp" "$dest"
}

need_tools() {
  command -v docker >/dev/null || die "kind needs Docker (docker info must answer)"
  command -v kind >/dev/null ||
    fetch "https://kind.sigs.k8s.io/dl/$KIND_VERSION/kind-linux-amd64" "$TOOLS/kind"
  command -v kubectl >/dev/null ||
    fetch "https://dl.k8s.io/release/$KUBECTL_VERSION/bin/linux/amd64/kubectl" "$TOOLS/kubectl"
}

up() {
  need_tools
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    log "cluster $CLUSTER exists"
  else
    kind create cluster --name "$CLUSTER" --config "$ROOT/infra/kind/kind-config.yaml" --wait 120s
  fi
  kubectl config use-context "kind-$CLUSTER" >/dev/null
  log "installing Kubeflow Pipelines $KFP_VERSION (platform-agnostic manifests)"
  kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=$KFP_VERSION"
  kubectl wait --for condition=established --timeout=120s crd/applications.app.k8s.io
  kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=$KFP_VERSION"
  log "waiting for KFP to be ready (up to $READY_TIMEOUT)"
  kubectl -n kubeflow wait --for=condition=Available --timeout="$READY_TIMEOUT" deployment --all ||
    { kubectl -n kubeflow get pods -o wide; die "KFP did not become ready"; }
  log "KFP is ready; \`kind.sh port-forward\` exposes it on 127.0.0.1:$KFP_PORT"
}

port_forward() {
  mkdir -p "$STATE"
  local svc port target
  for svc in ml-pipeline:"$KFP_PORT":8888 minio-service:"$MINIO_PORT":9000; do
    IFS=: read -r name port target <<<"$svc"
    if [ -f "$STATE/pf-$name.pid" ] && kill -0 "$(cat "$STATE/pf-$name.pid")" 2>/dev/null; then
      continue
    fi
    kubectl -n kubeflow port-forward --address 127.0.0.1 "svc/$name" "$port:$target" \
      >"$STATE/pf-$name.log" 2>&1 &
    echo $! >"$STATE/pf-$name.pid"
  done
  for _ in $(seq 60); do
    curl -fsS "http://127.0.0.1:$KFP_PORT/apis/v2beta1/healthz" >/dev/null 2>&1 && break
    sleep 1
  done
  curl -fsS "http://127.0.0.1:$KFP_PORT/apis/v2beta1/healthz" >/dev/null ||
    die "KFP API did not answer on 127.0.0.1:$KFP_PORT (see $STATE/pf-ml-pipeline.log)"
  log "KFP API http://127.0.0.1:$KFP_PORT, MinIO http://127.0.0.1:$MINIO_PORT"
}

s3() { # s3 BUCKET: KFP standalone ships MinIO; pattern 2 uses it as its S3 in cluster mode
  local bucket="$1" key secret
  key="$(kubectl -n kubeflow get secret mlpipeline-minio-artifact -o jsonpath='{.data.accesskey}' | base64 -d)"
  secret="$(kubectl -n kubeflow get secret mlpipeline-minio-artifact -o jsonpath='{.data.secretkey}' | base64 -d)"
  kubectl -n kubeflow create secret generic p2-s3-credentials \
    --from-literal=AWS_ACCESS_KEY_ID="$key" --from-literal=AWS_SECRET_ACCESS_KEY="$secret" \
    --dry-run=client -o yaml | kubectl apply -f -
  mkdir -p "$STATE"
  umask 077
  cat >"$STATE/s3.env" <<ENV
P2_S3_ENDPOINT_URL=http://127.0.0.1:$MINIO_PORT
P2_S3_ACCESS_KEY_ID=$key
P2_S3_SECRET_ACCESS_KEY=$secret
ENV
  AWS_ACCESS_KEY_ID="$key" AWS_SECRET_ACCESS_KEY="$secret" "${UV:-uv}" run --project "$ROOT" python - "$bucket" \
    "http://127.0.0.1:$MINIO_PORT" <<'PY'
import sys

import boto3

bucket, endpoint = sys.argv[1], sys.argv[2]
client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
    client.create_bucket(Bucket=bucket)
print(f"bucket {bucket} ready at {endpoint}")
PY
}

logs() {
  need_tools
  kubectl get nodes -o wide || true
  kubectl -n kubeflow get pods -o wide || true
  local pod
  for pod in $(kubectl -n kubeflow get pods -o name | grep -E 'p2|wine|system-container' | tail -n 8); do
    echo "==> $pod <=="
    kubectl -n kubeflow logs "$pod" --all-containers --tail=80 || true
  done
}

down() {
  local pid
  for pid in "$STATE"/pf-*.pid; do
    [ -f "$pid" ] && { kill "$(cat "$pid")" 2>/dev/null || true; rm -f "$pid"; }
  done
  if command -v kind >/dev/null && kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    kind delete cluster --name "$CLUSTER"
  else
    log "no cluster $CLUSTER"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  port-forward) port_forward ;;
  load) [ -n "${2:-}" ] || die "usage: kind.sh load IMAGE"; need_tools; kind load docker-image "$2" --name "$CLUSTER" ;;
  s3) [ -n "${2:-}" ] || die "usage: kind.sh s3 BUCKET"; need_tools; s3 "$2" ;;
  logs) logs ;;
  status) need_tools; kubectl get nodes; kubectl -n kubeflow get pods ;;
  *) die "usage: kind.sh up|down|port-forward|load IMAGE|s3 BUCKET|logs|status" ;;
esac
