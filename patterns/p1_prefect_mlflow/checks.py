"""Pattern 1's checks: they fail a run early, with the fix, before anything is
written anywhere.

- Parameters: against the types and ranges declared on the flow's signature
  (the one place they are declared), before the run starts.
- Services: the Prefect API, the MLflow server, and the DVC remote's S3
  bucket with your keys, in seconds instead of halfway through a run.
- Data: the fetched table's schema and values (`validate`).
"""

from __future__ import annotations

import base64
import inspect
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from prefect import task
from pydantic import TypeAdapter, ValidationError

import data
from errors import P1Error
from settings import P1Settings


# ## Parameters
@dataclass(frozen=True)
class Parameter:
    """A flow parameter as the flow's signature declares it."""

    name: str
    annotation: Any  # Annotated[type, Field(...)]
    type: type  # int, float or str, for a command line
    default: Any
    rule: str  # the range in words, e.g. "between 0.05 and 0.5"; "" if none
    description: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


BOUNDS = ("ge", "gt", "le", "lt")  # pydantic's Field(ge=..., ...), as annotated_types metadata


def parameters_of(flow) -> list[Parameter]:
    hints = typing.get_type_hints(flow.fn, include_extras=True)
    found = []
    for name, declared in inspect.signature(flow.fn).parameters.items():
        base, *extras = typing.get_args(hints[name]) or (hints[name],)
        field = next((e for e in extras if hasattr(e, "metadata")), None)
        plain = next((t for t in typing.get_args(base) if t is not type(None)), base)  # str | None -> str
        bounds = {b: getattr(m, b) for m in (field.metadata if field else []) for b in BOUNDS if hasattr(m, b)}
        found.append(
            Parameter(name, hints[name], plain, declared.default, _rule(bounds), (field and field.description) or "")
        )
    return found


def _rule(bounds: dict[str, Any]) -> str:
    low = ("", "")
    if "ge" in bounds or "gt" in bounds:
        low = (">=", bounds["ge"]) if "ge" in bounds else (">", bounds["gt"])
    high = ("", "")
    if "le" in bounds or "lt" in bounds:
        high = ("<=", bounds["le"]) if "le" in bounds else ("<", bounds["lt"])
    if low[0] == ">=" and high[0] == "<=":
        return f"between {low[1]} and {high[1]}"
    return " and ".join(f"{op} {value}" for op, value in (low, high) if op)


def check_parameters(flow, given: dict[str, Any]) -> None:
    """Each given parameter against its declaration (the flow checks again
    when it starts; this names the command-line flag that fixes it)."""
    for parameter in parameters_of(flow):
        if parameter.name not in given:
            continue
        value = given[parameter.name]
        try:
            TypeAdapter(parameter.annotation).validate_python(value)
        except ValidationError as exc:
            rule = parameter.rule or f"a {parameter.type.__name__}"
            raise P1Error(
                f"{parameter.name}={value} must be {rule}",
                f"pass {parameter.flag} {rule} (default {parameter.default}: {parameter.description})",
            ) from exc


# ## Services
# Where a refused login is fixed: the stack generates its credentials per checkout.
CREDENTIALS_FIX = "(make exports the local stack's; `make -s env` prints them)"


# Prefect Cloud instead of a server of your own: the workspace's API URL and an API key.
PREFECT_CLOUD = "https://api.prefect.cloud/"
CLOUD_WORKSPACE_URL = re.compile(r"https://api\.prefect\.cloud/api/accounts/[0-9a-f-]{36}/workspaces/[0-9a-f-]{36}")


def prefect_headers(settings: P1Settings) -> dict[str, str]:
    """How the Prefect API at PREFECT_API_URL wants to be asked: Prefect Cloud with
    PREFECT_API_KEY (Bearer), a self-hosted server with its auth string (Basic) or nothing."""
    url, auth = settings.prefect_api_url.rstrip("/"), settings.prefect_api_auth_string
    if not url.startswith(PREFECT_CLOUD):
        return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    if not CLOUD_WORKSPACE_URL.fullmatch(url):
        raise P1Error(
            f"PREFECT_API_URL={url} is not a Prefect Cloud workspace's API URL",
            "use https://api.prefect.cloud/api/accounts/<account id>/workspaces/<workspace id> "
            "(`prefect cloud workspace ls` lists them)",
        )
    if auth:
        raise P1Error(
            "PREFECT_API_AUTH_STRING is set, and Prefect Cloud takes an API key", "unset it; set PREFECT_API_KEY"
        )
    key = os.environ.get("PREFECT_API_KEY")
    if not key:
        raise P1Error(
            f"PREFECT_API_URL is a Prefect Cloud workspace ({url}) and PREFECT_API_KEY is not set",
            "create an API key in the workspace (a service account's for unattended runs) and set PREFECT_API_KEY",
        )
    return {"Authorization": f"Bearer {key}"}


def check_prefect(settings: P1Settings) -> None:
    headers = prefect_headers(settings)
    if settings.prefect_api_url.startswith(PREFECT_CLOUD):
        # Prefect Cloud: its health check with the key (what Prefect's own client asks first)
        response = httpx.get(f"{settings.prefect_api_url}/health", headers=headers, timeout=settings.connect_timeout)
        if response.status_code in (401, 403):
            raise P1Error(
                f"Prefect Cloud refused PREFECT_API_KEY ({response.status_code})",
                "set PREFECT_API_KEY to a key of that workspace (Prefect Cloud: API keys, or the service account's)",
            )
        response.raise_for_status()
        return
    _check_http(f"{settings.prefect_api_url}/health", "Prefect API", "PREFECT_API_URL", settings)
    _check_login(
        f"{settings.prefect_api_url}/admin/version", "Prefect API", "PREFECT_API_AUTH_STRING", settings, headers
    )


def _check_http(url: str, what: str, variable: str, settings: P1Settings) -> None:
    try:
        response = httpx.get(url, timeout=settings.connect_timeout)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise P1Error(
            f"{what} at {url} is unreachable ({type(exc).__name__}: {exc})",
            f"start the local stack with `make up`, or set {variable} (or P1_{variable}) to a running server",
        ) from exc


def _check_login(url: str, what: str, variables: str, settings: P1Settings, headers: dict | None = None, auth=None):
    """A refused login fails here, named, not as a 401 halfway through the run."""
    response = httpx.get(url, headers=headers, auth=auth, timeout=settings.connect_timeout)
    if response.status_code in (401, 403):
        given = "wrong credentials" if headers or auth else "no credentials"
        raise P1Error(
            f"{what} at {url} refused the request ({response.status_code}, {given})",
            f"set {variables} to the server's {CREDENTIALS_FIX}",
        )


@task
def check_mlflow(settings: P1Settings) -> None:
    _check_http(f"{settings.mlflow_tracking_uri}/health", "MLflow tracking server", "MLFLOW_TRACKING_URI", settings)
    user, password = settings.mlflow_tracking_username, settings.mlflow_tracking_password
    _check_login(
        f"{settings.mlflow_tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1",
        "MLflow tracking server",
        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
        settings,
        auth=(user, password) if user and password else None,
    )


@task
def check_s3(settings: P1Settings, version: data.DataVersion) -> None:
    """The DVC remote's bucket answers to these keys (a wrong key fails here,
    not halfway through a pull)."""
    url = data.remote_url(version, settings)
    if not url.startswith("s3://"):
        return  # a local or non-S3 remote: DVC itself reports its errors
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = url.removeprefix("s3://").split("/", 1)[0]
    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        config=Config(connect_timeout=settings.connect_timeout, retries={"max_attempts": 1}),
    )
    try:
        client.list_objects_v2(Bucket=bucket, MaxKeys=1)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
            raise P1Error(
                f"the S3 server at {settings.s3_endpoint_url} rejected access key "
                f"{settings.s3_access_key_id!r} ({code})",
                "set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY (or P1_S3_...) to the keys the "
                "S3 server was started with; the local stack's are in .env.example",
            ) from exc
        raise P1Error(
            f"S3 at {settings.s3_endpoint_url}: bucket {bucket!r} of the DVC remote {url} is not usable ({code})",
            "create the bucket (`make up` creates the local stack's), or fix the remote with `dvc remote modify`",
        ) from exc
    except BotoCoreError as exc:
        raise P1Error(
            f"S3 server at {settings.s3_endpoint_url} is unreachable ({exc})",
            "start the local stack with `make up`, or set S3_ENDPOINT_URL",
        ) from exc


# ## Data
@task
def validate(path: Path, max_nan_fraction: float) -> pd.DataFrame:
    """Schema and values: every expected column, numeric, few NaNs, a 0/1 target."""
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise P1Error(
            f"{path} is not a readable CSV ({exc})", "re-export it, or restore it with `dvc checkout`"
        ) from exc
    expected = [*data.FEATURES, data.TARGET]
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise P1Error(
            f"{path.name} lacks column(s) {', '.join(missing)}",
            f"supply all {len(expected)} columns listed in data.py (FEATURES + {data.TARGET!r})",
        )
    if frame.empty:
        raise P1Error(f"{path.name} has no rows", "supply a data file with rows")
    for column in expected:
        coerced = pd.to_numeric(frame[column], errors="coerce")
        bad = frame[column][coerced.isna() & frame[column].notna()]
        if len(bad):
            raise P1Error(
                f"column {column!r} has non-numeric values, e.g. {bad.iloc[0]!r} at row {bad.index[0] + 2}",
                "clean the source so every feature is a number (empty cells count as missing)",
            )
        frame[column] = coerced
        nan_fraction = frame[column].isna().mean()
        if nan_fraction > max_nan_fraction:
            raise P1Error(
                f"column {column!r} is {nan_fraction:.1%} missing, above the limit of {max_nan_fraction:.1%}",
                "fill or drop the missing values at the source, or raise P1_MAX_NAN_FRACTION "
                "if that much missing data is acceptable",
            )
    labels = set(frame[data.TARGET].dropna().unique())
    if not labels <= {0, 1} or len(labels) < 2:
        raise P1Error(
            f"column {data.TARGET!r} must hold both classes 0 and 1, found {[v.item() for v in sorted(labels)]}",
            "supply a binary target (0 = malignant, 1 = benign)",
        )
    if frame[data.TARGET].isna().any():
        raise P1Error(f"column {data.TARGET!r} has missing labels", "drop rows without a label at the source")
    return frame
