"""Healthchecks of the compose tier's Python containers (mounted read-only at
/opt/compose/healthcheck.py). Standard library only, so a check costs an
interpreter start, not an import of Prefect, MLflow or Airflow.

    python healthcheck.py http URL             healthy if URL answers 2xx
    python healthcheck.py airflow COMPONENT URL
        healthy if Airflow's /api/v2/monitor/health at URL reports COMPONENT
        (scheduler, dag_processor, triggerer) healthy: its heartbeat is recent
    python healthcheck.py prefect-worker API_URL POOL NAME
        healthy if a worker of POOL whose name starts with NAME polled the
        Prefect server within 30 s
    python healthcheck.py prefect-deployment API_URL FLOW/DEPLOYMENT
        healthy if the deployment is READY: the process serving it (`flow.serve`)
        polled the Prefect server within the last minute
"""

import base64
import json
import os
import sys
import urllib.request
from datetime import UTC, datetime, timedelta


def _get(url: str, body: dict | None = None, headers: dict | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response) if response.headers.get_content_type() == "application/json" else None


def _prefect_auth() -> dict:
    """The container's auth string (PREFECT_API_AUTH_STRING)."""
    auth = base64.b64encode(os.environ.get("PREFECT_API_AUTH_STRING", "").encode()).decode()
    return {"Authorization": f"Basic {auth}"}


def _prefect_headers(api: str, client: str) -> dict:
    """The auth string, and the CSRF token a write needs."""
    headers = _prefect_auth()
    token = _get(f"{api}/csrf-token?client={client}", headers=headers)["token"]
    return headers | {"Prefect-Csrf-Token": token, "Prefect-Csrf-Client": client}


def main(argv: list[str]) -> int:
    kind, *args = argv
    if kind == "http":
        _get(args[0])
        return 0
    if kind == "airflow":
        component, url = args
        status = (_get(url).get(component) or {}).get("status")
        print(f"{component}: {status}")
        return 0 if status == "healthy" else 1
    if kind == "prefect-worker":
        api, pool, name = args
        api = api.rstrip("/")
        headers = _prefect_headers(api, f"healthcheck-{name}")
        workers = _get(f"{api}/work_pools/{pool}/workers/filter", {"limit": 50}, headers)
        recent = datetime.now(UTC) - timedelta(seconds=30)
        alive = [
            w["name"]
            for w in workers
            if w["name"].startswith(name) and datetime.fromisoformat(w["last_heartbeat_time"]) > recent
        ]
        print(f"{name}* polling {pool}: {alive}")
        return 0 if alive else 1
    if kind == "prefect-deployment":
        api, name = args
        deployment = _get(f"{api.rstrip('/')}/deployments/name/{name}", headers=_prefect_auth())
        print(f"{name}: {deployment['status']}")
        return 0 if deployment["status"] == "READY" else 1
    print(f"unknown check {kind!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as exc:  # a healthcheck reports, it does not crash
        print(f"unhealthy: {exc}", file=sys.stderr)
        sys.exit(1)
