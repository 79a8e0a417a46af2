"""Pre-flight checks: fail in seconds, before anything is deployed or
submitted, naming the service and the variable to fix."""

from __future__ import annotations

import base64
import os
import re

import httpx

from dataset import s3_client
from errors import P3Error
from settings import P3Settings


def preflight(s: P3Settings) -> None:
    """The Prefect API answers, and S3 has the Metaflow store's bucket."""
    from botocore.exceptions import BotoCoreError, ClientError

    headers = prefect_headers(s)
    try:
        response = httpx.get(f"{s.prefect_api_url}/health", headers=headers, timeout=s.connect_timeout)
        if s.prefect_api_url.startswith(PREFECT_CLOUD) and response.status_code in (401, 403):
            raise P3Error(
                f"Prefect Cloud refused PREFECT_API_KEY ({response.status_code})",
                "set PREFECT_API_KEY to a key of that workspace (Prefect Cloud: API keys, or the service account's)",
            )
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise P3Error(
            f"the Prefect API at {s.prefect_api_url} is unreachable ({type(exc).__name__})",
            "start the local stack with `make up`, or set P3_PREFECT_API_URL / PREFECT_API_URL",
        ) from None
    if not s.prefect_api_url.startswith(PREFECT_CLOUD):
        check_login(s, headers)
    client = s3_client(s)
    try:
        client.head_bucket(Bucket=s.metaflow_bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise P3Error(
                f"S3 at {s.s3_endpoint_url} rejected the key {s.s3_access_key_id!r}",
                "set P3_S3_ACCESS_KEY_ID / P3_S3_SECRET_ACCESS_KEY (or S3_*) to the stack's keys",
            ) from None
        raise P3Error(
            f"the Metaflow bucket {s.metaflow_bucket!r} does not exist on {s.s3_endpoint_url}",
            "create it (`make up` creates `metaflow`), or point P3_METAFLOW_S3_ROOT at a bucket that exists",
        ) from None
    except BotoCoreError as exc:
        raise P3Error(
            f"S3 at {s.s3_endpoint_url} is unreachable ({type(exc).__name__})",
            "start the local stack with `make up`, or set P3_S3_ENDPOINT_URL / S3_ENDPOINT_URL",
        ) from None


# Prefect Cloud instead of a server of your own: the workspace's API URL and an API key.
PREFECT_CLOUD = "https://api.prefect.cloud/"
CLOUD_WORKSPACE_URL = re.compile(r"https://api\.prefect\.cloud/api/accounts/[0-9a-f-]{36}/workspaces/[0-9a-f-]{36}")


def prefect_headers(s: P3Settings) -> dict[str, str]:
    """How the Prefect API at PREFECT_API_URL wants to be asked: Prefect Cloud with
    PREFECT_API_KEY (Bearer), a self-hosted server with its auth string (Basic) or nothing."""
    url, auth = s.prefect_api_url.rstrip("/"), s.prefect_api_auth_string
    if not url.startswith(PREFECT_CLOUD):
        return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    if not CLOUD_WORKSPACE_URL.fullmatch(url):
        raise P3Error(
            f"PREFECT_API_URL={url} is not a Prefect Cloud workspace's API URL",
            "use https://api.prefect.cloud/api/accounts/<account id>/workspaces/<workspace id> "
            "(`prefect cloud workspace ls` lists them)",
        )
    if auth:
        raise P3Error(
            "PREFECT_API_AUTH_STRING is set, and Prefect Cloud takes an API key", "unset it; set PREFECT_API_KEY"
        )
    key = os.environ.get("PREFECT_API_KEY")
    if not key:
        raise P3Error(
            f"PREFECT_API_URL is a Prefect Cloud workspace ({url}) and PREFECT_API_KEY is not set",
            "create an API key in the workspace (a service account's for unattended runs) and set PREFECT_API_KEY",
        )
    return {"Authorization": f"Bearer {key}"}


def check_login(s: P3Settings, headers: dict[str, str]) -> None:
    """The server takes Prefect's auth string (PREFECT_API_AUTH_STRING, sent as
    `prefect_headers` builds it), if it wants one."""
    auth = s.prefect_api_auth_string
    response = httpx.get(f"{s.prefect_api_url}/admin/version", headers=headers, timeout=s.connect_timeout)
    if response.status_code in (401, 403):
        raise P3Error(
            f"the Prefect API at {s.prefect_api_url} refused the request ({response.status_code}, "
            f"{'wrong' if auth else 'no'} auth string)",
            "set PREFECT_API_AUTH_STRING to the server's (make exports the local stack's; `make -s env` prints it)",
        )


def require_workers(s: P3Settings) -> list[str]:
    """The names of the workers polling the pool; an error when none does."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        workers = client.read_workers_for_work_pool(s.work_pool, limit=200, offset=0)
    online = sorted(w.name for w in workers if str(getattr(w.status, "value", w.status)).upper() == "ONLINE")
    if not online:
        raise P3Error(
            f"no worker is polling the work pool {s.work_pool!r}",
            "start some: `make pattern-3` starts two, or run `python worker.py p3-worker-1` in another terminal",
        )
    return online
