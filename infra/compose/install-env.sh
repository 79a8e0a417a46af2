#!/bin/sh
# install-env.sh PROJECT VENV: the locked environment of PROJECT (a folder of
# the repository with pyproject.toml and uv.lock, copied to /src) into VENV.
# Runs inside python.Dockerfile; WHEELHOUSE_URL and UV_VERSION come from its
# build arguments.
set -eu
project=$1
venv=$2

if ! command -v python3 >/dev/null 2>&1; then
    # The air-gapped base (debootstrap minbase) has no Python: Debian's.
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-venv ca-certificates
    rm -rf /var/lib/apt/lists/*
fi
# A plain venv, with pip: kfp.local components call `python -m pip`.
# Both installs below compile every module (--compile-bytecode): the image sets
# PYTHONDONTWRITEBYTECODE and its containers may run as a user who cannot write
# to the venv, so without it every process in a container (each server, worker,
# Airflow task and Metaflow step) would compile its imports again, seconds of
# CPU per process (Airflow's import: 3.5 s without, 1.8 s with).
python3 -m venv "$venv"

if [ -n "${WHEELHOUSE_URL:-}" ]; then
    # Air-gapped: uv from the wheelhouse, then the project's flat requirements
    # (exported from its uv.lock for Debian's Python, every version pinned and
    # hashed). Only what the host hashed is installed: the manifest must have the
    # sha256 the build was given, each requirements file the sha256 in the manifest,
    # each wheel the sha256 in its requirements file.
    name=$(echo "$project" | tr '/' '_')
    mkdir /tmp/wh
    for file in manifest.sha256 uv.txt "$name.txt"; do
        python3 -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" \
            "$WHEELHOUSE_URL/$file" "/tmp/wh/$file"
    done
    echo "${WHEELHOUSE_MANIFEST_SHA256:?the build needs WHEELHOUSE_MANIFEST_SHA256 (compose.sh sets it)}  /tmp/wh/manifest.sha256" \
        | sha256sum -c --quiet - || { echo "error: $WHEELHOUSE_URL serves another wheelhouse than the one hashed" >&2; exit 1; }
    (cd /tmp/wh && grep -E "  (uv|$name)\.txt\$" manifest.sha256 | sha256sum -c --quiet -)
    python3 -m venv /tmp/uv-tool
    /tmp/uv-tool/bin/pip install -q --no-index --find-links "$WHEELHOUSE_URL/" --require-hashes --no-deps \
        --requirement /tmp/wh/uv.txt
    /tmp/uv-tool/bin/uv pip install --python "$venv/bin/python" --no-index --find-links "$WHEELHOUSE_URL/" \
        --no-deps --require-hashes --compile-bytecode --requirement "/tmp/wh/$name.txt"
    rm -rf /tmp/uv-tool /tmp/wh
else
    python3 -m pip install -q --no-cache-dir "uv==${UV_VERSION}"
    # --inexact keeps the venv's pip; the lock decides every other package.
    UV_PROJECT_ENVIRONMENT="$venv" uv sync --locked --no-dev --no-install-project --inexact \
        --compile-bytecode --project "/src/$project"
    python3 -m pip uninstall -q -y uv
fi
"$venv/bin/python" -c "import sys; print(f'{sys.argv[1]}: Python {sys.version.split()[0]} in {sys.prefix}')" "$project"
