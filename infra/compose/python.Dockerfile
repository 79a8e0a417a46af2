# One image per Python environment of the compose tier, built from a lock file
# in this repository: the server image (infra/compose/server), Airflow
# (patterns/p2_airflow_kfp + its pipeline environment), pattern 3's and
# pattern 4's workers. The build context is the repository root; its
# .dockerignore lets in only infra/compose and the pyproject/uv.lock files.
#
#   BASE_IMAGE      a Debian bookworm image; python3 is installed from Debian
#                   if the image has none (the air-gapped base, see README)
#   PROJECT         the project folder whose uv.lock becomes /opt/venv
#   EXTRA_PROJECT   optional second environment, /opt/extra-venv (Airflow's
#                   image carries pattern 2's KFP pipeline environment there)
#   WHEELHOUSE_URL  empty: uv installs from PyPI (`uv sync --locked`). Set: an
#                   http URL serving wheels and one flat requirements file per
#                   project (`infra/compose/compose.sh wheelhouse`); nothing
#                   else is contacted. WHEELHOUSE_MANIFEST_SHA256: the sha256 of
#                   its manifest; every file and wheel is checked against it.
# The default is docker-compose.yml's x-base-image (tag and index digest; evidence there).
ARG BASE_IMAGE=python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3
FROM ${BASE_IMAGE}

ARG PROJECT
ARG EXTRA_PROJECT=
ARG WHEELHOUSE_URL=
ARG WHEELHOUSE_MANIFEST_SHA256=
ARG UV_VERSION=0.13.9

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DO_NOT_TRACK=true \
    MLFLOW_DISABLE_TELEMETRY=true \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

COPY . /src/
RUN sh /src/infra/compose/install-env.sh "${PROJECT}" /opt/venv \
    && if [ -n "${EXTRA_PROJECT}" ]; then sh /src/infra/compose/install-env.sh "${EXTRA_PROJECT}" /opt/extra-venv; fi \
    && rm -rf /src /root/.cache

# Pattern code is not baked in: the compose file mounts the checkout read-only
# (see docker-compose.yml, PATTERNS_ROOT). Containers that run it run as your
# uid (PATTERNS_UID, 10001 for root), so HOME must be writable by anyone.
# State that services keep in named volumes (Airflow's home, pattern 2's kfp.local
# root, MLflow's users) lives under /var/lib/patterns, writable by that user too
# (a new volume copies the mode).
# The user `patterns` (10001) has a name: Airflow and getpass want one. Another uid
# gets its name from USER/LOGNAME, which getpass reads first.
RUN mkdir -p /var/lib/patterns/airflow /var/lib/patterns/p2 /var/lib/patterns/mlflow-auth \
    && chmod -R 1777 /var/lib/patterns \
    && groupadd --gid 10001 patterns && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp patterns
ENV HOME=/tmp USER=patterns LOGNAME=patterns
WORKDIR /tmp
# Not root: the servers (Prefect, MLflow) and the one-shot jobs run as this uid;
# containers that run pattern code set their own (your uid; this one for root).
USER 10001:10001
