#!/usr/bin/env bash
# The kind tier: a local Kubernetes cluster with Kubeflow Pipelines standalone.
# It runs in GitHub Actions (.github/workflows/e2e-kind.yml); on a machine with
# Docker it runs the same way. Everything is pinned and checked against its
# upstream source (the table in infra/kind/README.md): kind and kubectl are
# installed into .tools/bin at these versions whatever PATH holds (GitHub's
# runners ship their own), each binary checked against the SHA-256 recorded
# here; the node image is named by digest.
#
#   kind.sh up             create the cluster, install KFP, wait until it is ready
#   kind.sh down           delete the cluster
#   kind.sh port-forward   KFP API -> 127.0.0.1:$KFP_PORT, S3 (SeaweedFS) -> 127.0.0.1:$S3_PORT (background)
#   kind.sh load IMAGE     load a locally built image into the cluster's node
#   kind.sh s3 BUCKET      pattern 2's S3 in the cluster (KFP's SeaweedFS): create BUCKET, create the
#                          secret p2-s3-credentials for pods, write $STATE/s3.env for the host side
#   kind.sh logs           nodes, KFP pods and the last pipeline pods' logs (for CI failures)
#   kind.sh status         nodes and KFP pods
#   kind.sh versions       the pinned versions, one NAME=value per line (tests/test_kind.py reads them)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER="${KIND_CLUSTER:-patterns}"
# ---- pins (evidence: infra/kind/README.md, "Verified against") ----------------
KIND_VERSION="${KIND_VERSION:-v0.32.0}"
KIND_SHA256="${KIND_SHA256:-50030de23cf40a18505f20426f6a8506bedf13c6e509244bd1fa9463721b0f54}"
KUBECTL_VERSION="${KUBECTL_VERSION:-v1.36.1}"
KUBECTL_SHA256="${KUBECTL_SHA256:-629d3f410e09bf49b64ae7079f7f0bda1191efed311f7d37fdbab0ad5b0ec2b7}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5}"
# The KFP backend at the SDK's minor version (pattern 2's pipeline/uv.lock locks
# kfp 2.17): an older API server refuses IR fields the newer SDK writes.
KFP_VERSION="${KFP_VERSION:-2.17.0}"
# ------------------------------------------------------------------------------
KFP_PORT="${KFP_PORT:-8888}"
S3_PORT="${S3_PORT:-9000}"
READY_TIMEOUT="${KFP_READY_TIMEOUT:-900s}"
STATE="${STACK_STATE_DIR:-$ROOT/.state/local}/../kind"
TOOLS="$ROOT/.tools/bin"
KIND="$TOOLS/kind"
KUBECTL="$TOOLS/kubectl"

log() { printf '[kind] %s\n' "$*"; }
die() { printf '[kind] error: %s\n' "$*" >&2; exit 1; }

retry() { # retry TIMES PAUSE COMMAND...: KFP's own CI retries cluster creation and deployment
  local times="$1" pause="$2" n=1
  shift 2
  until "$@"; do
    [ "$n" -ge "$times" ] && return 1
    log "attempt $n of $times failed: $*; again in ${pause}s"
    n=$((n + 1))
    sleep "$pause"
  done
}

install() { # install URL SHA256 DEST: download once, check the recorded SHA-256
  local url="$1" sum="$2" dest="$3"
  mkdir -p "$(dirname "$dest")"
  retry 3 5 curl -fsSL "$url" -o "$dest.tmp"
  echo "$sum  $dest.tmp" | sha256sum -c --quiet - ||
    { rm -f "$dest.tmp"; die "checksum mismatch for $url (expected $sum, recorded in kind.sh)"; }
  chmod +x "$dest.tmp" && mv "$dest.tmp" "$dest"
}

need_tools() {
  command -v docker >/dev/null || die "kind needs Docker (docker info must answer)"
  # The output is read whole first: `tool | grep -q` can fail under pipefail when
  # grep stops reading early (SIGPIPE), which would download again each time.
  local out
  out="$("$KIND" version 2>/dev/null || true)"
  [[ "$out" == "kind $KIND_VERSION "* ]] ||
    install "https://kind.sigs.k8s.io/dl/$KIND_VERSION/kind-linux-amd64" "$KIND_SHA256" "$KIND"
  out="$("$KUBECTL" version --client 2>/dev/null || true)"
  printf '%s\n' "$out" | grep -qx "Client Version: $KUBECTL_VERSION" ||
    install "https://dl.k8s.io/release/$KUBECTL_VERSION/bin/linux/amd64/kubectl" "$KUBECTL_SHA256" "$KUBECTL"
}

create_cluster() { # one attempt; a half-created cluster is deleted so the next attempt starts clean
  "$KIND" create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" \
    --config "$ROOT/infra/kind/kind-config.yaml" --wait 180s && return 0
  "$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  return 1
}

up() {
  need_tools
  if "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    log "cluster $CLUSTER exists"
  else
    retry 3 20 create_cluster || die "kind could not create cluster $CLUSTER (3 attempts)"
  fi
  "$KUBECTL" config use-context "kind-$CLUSTER" >/dev/null
  log "installing Kubeflow Pipelines $KFP_VERSION (platform-agnostic manifests)"
  local manifests="github.com/kubeflow/pipelines/manifests/kustomize"
  retry 3 15 "$KUBECTL" apply -k "$manifests/cluster-scoped-resources?ref=$KFP_VERSION" ||
    die "could not apply KFP's cluster-scoped resources"
  "$KUBECTL" wait --for condition=established --timeout=120s crd/applications.app.k8s.io
  retry 3 15 "$KUBECTL" apply -k "$manifests/env/platform-agnostic?ref=$KFP_VERSION" ||
    die "could not apply KFP's platform-agnostic manifests"
  log "waiting for KFP to be ready (up to $READY_TIMEOUT)"
  "$KUBECTL" -n kubeflow wait --for=condition=Available --timeout="$READY_TIMEOUT" deployment --all ||
    { "$KUBECTL" -n kubeflow get pods -o wide; die "KFP did not become ready"; }
  log "KFP is ready; \`kind.sh port-forward\` exposes it on 127.0.0.1:$KFP_PORT"
}

port_forward() {
  mkdir -p "$STATE"
  local svc port target
  # KFP 2.17's object store is SeaweedFS: service seaweedfs, S3 on 8333 and on 9000.
  for svc in ml-pipeline:"$KFP_PORT":8888 seaweedfs:"$S3_PORT":9000; do
    IFS=: read -r name port target <<<"$svc"
    if [ -f "$STATE/pf-$name.pid" ] && kill -0 "$(cat "$STATE/pf-$name.pid")" 2>/dev/null; then
      continue
    fi
    "$KUBECTL" -n kubeflow port-forward --address 127.0.0.1 "svc/$name" "$port:$target" \
      >"$STATE/pf-$name.log" 2>&1 &
    echo $! >"$STATE/pf-$name.pid"
  done
  for _ in $(seq 60); do
    curl -fsS "http://127.0.0.1:$KFP_PORT/apis/v2beta1/healthz" >/dev/null 2>&1 && break
    sleep 1
  done
  curl -fsS "http://127.0.0.1:$KFP_PORT/apis/v2beta1/healthz" >/dev/null ||
    die "KFP API did not answer on 127.0.0.1:$KFP_PORT (see $STATE/pf-ml-pipeline.log)"
  log "KFP API http://127.0.0.1:$KFP_PORT, S3 http://127.0.0.1:$S3_PORT"
}

s3() { # s3 BUCKET: KFP standalone ships SeaweedFS; pattern 2 uses it as its S3 in cluster mode
  local bucket="$1" key secret
  key="$("$KUBECTL" -n kubeflow get secret mlpipeline-minio-artifact -o jsonpath='{.data.accesskey}' | base64 -d)"
  secret="$("$KUBECTL" -n kubeflow get secret mlpipeline-minio-artifact -o jsonpath='{.data.secretkey}' | base64 -d)"
  "$KUBECTL" -n kubeflow create secret generic p2-s3-credentials \
    --from-literal=AWS_ACCESS_KEY_ID="$key" --from-literal=AWS_SECRET_ACCESS_KEY="$secret" \
    --dry-run=client -o yaml | "$KUBECTL" apply -f -
  mkdir -p "$STATE"
  umask 077
  cat >"$STATE/s3.env" <<ENV
P2_S3_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
P2_S3_ACCESS_KEY_ID=$key
P2_S3_SECRET_ACCESS_KEY=$secret
ENV
  AWS_ACCESS_KEY_ID="$key" AWS_SECRET_ACCESS_KEY="$secret" "${UV:-uv}" run --project "$ROOT" python - "$bucket" \
    "http://127.0.0.1:$S3_PORT" <<'PY'
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
  "$KUBECTL" get nodes -o wide || true
  "$KUBECTL" -n kubeflow get pods -o wide || true
  local pod
  for pod in $("$KUBECTL" -n kubeflow get pods -o name | grep -E 'p2|wine|system-container' | tail -n 8); do
    echo "==> $pod <=="
    "$KUBECTL" -n kubeflow logs "$pod" --all-containers --tail=80 || true
  done
}

down() {
  local pid
  for pid in "$STATE"/pf-*.pid; do
    [ -f "$pid" ] && { kill "$(cat "$pid")" 2>/dev/null || true; rm -f "$pid"; }
  done
  if [ -x "$KIND" ] && "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    "$KIND" delete cluster --name "$CLUSTER"
  else
    log "no cluster $CLUSTER"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  port-forward) port_forward ;;
  load) [ -n "${2:-}" ] || die "usage: kind.sh load IMAGE"; need_tools; "$KIND" load docker-image "$2" --name "$CLUSTER" ;;
  s3) [ -n "${2:-}" ] || die "usage: kind.sh s3 BUCKET"; need_tools; s3 "$2" ;;
  logs) logs ;;
  status) need_tools; "$KUBECTL" get nodes; "$KUBECTL" -n kubeflow get pods ;;
  versions)
    printf '%s\n' "KIND_VERSION=$KIND_VERSION" "KIND_SHA256=$KIND_SHA256" "KUBECTL_VERSION=$KUBECTL_VERSION" \
      "KUBECTL_SHA256=$KUBECTL_SHA256" "KIND_NODE_IMAGE=$KIND_NODE_IMAGE" "KFP_VERSION=$KFP_VERSION" ;;
  *) die "usage: kind.sh up|down|port-forward|load IMAGE|s3 BUCKET|logs|status|versions" ;;
esac
