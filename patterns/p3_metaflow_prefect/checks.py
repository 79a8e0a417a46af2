"""Pre-flight checks: fail in seconds, before anything is deployed or
submitted, naming the service and the variable to fix."""

from __future__ import annotations

import base64

import httpx

from dataset import s3_client
from errors import P3Error
from settings import P3Settings


def preflight(s: P3Settings) -> None:
    """The Prefect API answers, and S3 has the Metaflow store's bucket."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        httpx.get(f"{s.prefect_api_url}/health", timeout=s.connect_timeout).raise_for_status()
    except httpx.HTTPError as exc:
        raise P3Error(
            f"the Prefect API at {s.prefect_api_url} is unreachable ({type(exc).__name__})",
            "start the local stack with `make up`, or set P3_PREFECT_API_URL / PREFECT_API_URL",
        ) from None
    check_login(s)
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


def check_login(s: P3Settings) -> None:
    """The server takes Prefect's auth string (PREFECT_API_AUTH_STRING), if it wants one."""
    auth = s.prefect_api_auth_string
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
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
