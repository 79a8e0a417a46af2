"""Pattern 3's one settings object. Environment variables win; defaults point at
the local stack (`make up`), so a bare `python flow.py` works with no set-up.

Each field reads `P3_<NAME>` first, then the shared name the tools themselves
use (PREFECT_API_URL, S3_ENDPOINT_URL, ...). `.env.example` documents every
variable.

Three kinds of process must agree on one Metaflow store: the fan-out flow
(it reads results with the Metaflow Client), each worker's flow runs (they
start Metaflow runs) and Metaflow's own step processes. `metaflow_env()` is
the single place that turns these settings into Metaflow's and boto3's
variables, and every one of those processes calls it (through `configure()`,
which each entry point calls before it imports Prefect or Metaflow).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PATTERN_DIR = Path(__file__).resolve().parent


def _env(name: str, *fallbacks: str) -> AliasChoices:
    return AliasChoices(f"P3_{name}", *fallbacks)


def _metaflow_user() -> str:
    for name in ("METAFLOW_USER", "USERNAME", "USER"):
        if os.environ.get(name, "root") != "root":
            return os.environ[name]
    return "p3"


class P3Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=PATTERN_DIR / ".env", env_file_encoding="utf-8", extra="ignore")

    # Endpoints and credentials -------------------------------------------------
    prefect_api_url: str = Field(
        "http://127.0.0.1:4200/api", validation_alias=_env("PREFECT_API_URL", "PREFECT_API_URL")
    )
    # The server's auth string (None: it wants none). The local stack generates it.
    prefect_api_auth_string: str | None = Field(
        None, validation_alias=_env("PREFECT_API_AUTH_STRING", "PREFECT_API_AUTH_STRING")
    )
    s3_endpoint_url: str = Field("http://127.0.0.1:8333", validation_alias=_env("S3_ENDPOINT_URL", "S3_ENDPOINT_URL"))
    s3_access_key_id: str = Field("patterns-local", validation_alias=_env("S3_ACCESS_KEY_ID", "S3_ACCESS_KEY_ID"))
    s3_secret_access_key: str = Field(
        "patterns-local-secret",
        validation_alias=_env("S3_SECRET_ACCESS_KEY", "S3_SECRET_ACCESS_KEY"),
    )
    # Metaflow's store ------------------------------------------------------------
    # Artifacts, datasets and code live under this S3 prefix (the bucket must exist).
    metaflow_s3_root: str = Field("s3://metaflow/p3", validation_alias=_env("METAFLOW_S3_ROOT"))
    # Metaflow's run metadata ("local" provider): a folder every process on this
    # machine shares. On several machines use Metaflow's metadata service (docs/operations.md, Scale out).
    metaflow_metadata_dir: Path = Field(PATTERN_DIR / ".state", validation_alias=_env("METAFLOW_METADATA_DIR"))
    # The dataset the fan-out publishes (CSV, numeric, with a `target` column).
    data_file: Path = Field(PATTERN_DIR / "data" / "digits.csv", validation_alias=_env("DATA_FILE"))
    # Prefect objects ---------------------------------------------------------------
    work_pool: str = Field("p3-metaflow", validation_alias=_env("WORK_POOL"))
    deployment: str = Field("p3-train", validation_alias=_env("DEPLOYMENT"))
    # Crash detection: flow runs send a heartbeat this often (Prefect's minimum
    # is 30 s); an automation marks a run CRASHED when none arrives for this long.
    heartbeat_seconds: int = Field(30, ge=30, validation_alias=_env("HEARTBEAT_SECONDS"))
    crash_after_seconds: int = Field(75, ge=31, validation_alias=_env("CRASH_AFTER_SECONDS"))
    # The fan-out resubmits a CRASHED run this many times before giving up.
    crash_resubmits: int = Field(1, ge=0, le=5, validation_alias=_env("CRASH_RESUBMITS"))
    # How long the fan-out waits for all its runs.
    fan_out_timeout: float = Field(900.0, gt=0, validation_alias=_env("FAN_OUT_TIMEOUT"))
    # Workers ---------------------------------------------------------------------
    # Each worker runs one flow run at a time, so N workers run N at once.
    worker_limit: int = Field(1, ge=1, validation_alias=_env("WORKER_LIMIT"))
    # How often an idle worker asks the pool for work (Prefect's default is 10 s).
    worker_poll_seconds: float = Field(1.0, gt=0, validation_alias=_env("WORKER_POLL_SECONDS"))
    # How long a service may take to answer the pre-flight checks.
    connect_timeout: float = Field(5.0, gt=0, validation_alias=_env("CONNECT_TIMEOUT"))

    @field_validator("metaflow_s3_root")
    @classmethod
    def _s3_url(cls, value: str) -> str:
        if not value.startswith("s3://") or not value.removeprefix("s3://").split("/")[0]:
            raise ValueError(f"P3_METAFLOW_S3_ROOT={value!r} must be an s3://bucket/prefix URL")
        return value.rstrip("/")

    @property
    def metaflow_bucket(self) -> str:
        return self.metaflow_s3_root.removeprefix("s3://").split("/", 1)[0]

    def metaflow_env(self) -> dict[str, str]:
        """Metaflow's and boto3's variables for this store. Metaflow reads
        them when it is imported, so set them before `import metaflow`."""
        return {
            "METAFLOW_DEFAULT_DATASTORE": "s3",
            "METAFLOW_DATASTORE_SYSROOT_S3": f"{self.metaflow_s3_root.rstrip('/')}/metaflow",
            "METAFLOW_DATATOOLS_S3ROOT": f"{self.metaflow_s3_root.rstrip('/')}/data",
            "METAFLOW_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "METAFLOW_DEFAULT_METADATA": "local",
            "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(self.metaflow_metadata_dir),
            # Fail in seconds, not tens of minutes, when S3 is unreachable:
            # Metaflow's defaults retry 7 x 20 times with backoff, each over a
            # boto3 client that retries 10 times itself.
            "METAFLOW_S3_RETRY_COUNT": os.environ.get("METAFLOW_S3_RETRY_COUNT", "1"),
            "METAFLOW_S3_TRANSIENT_RETRY_COUNT": os.environ.get("METAFLOW_S3_TRANSIENT_RETRY_COUNT", "1"),
            "METAFLOW_S3_CLIENT_RETRY_CONFIG": os.environ.get(
                "METAFLOW_S3_CLIENT_RETRY_CONFIG", '{"max_attempts": 3, "mode": "standard"}'
            ),
            "AWS_ACCESS_KEY_ID": self.s3_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_access_key,
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            # Metaflow's S3 client stages files in metaflow.s3.* folders (mode 0700) under
            # ARTIFACT_LOCALROOT (the datastore) and TEMPDIR, both by default the working
            # folder, this checkout: the system's temp folder instead.
            "METAFLOW_ARTIFACT_LOCALROOT": os.environ.get("METAFLOW_ARTIFACT_LOCALROOT", tempfile.gettempdir()),
            "METAFLOW_TEMPDIR": os.environ.get("METAFLOW_TEMPDIR", tempfile.gettempdir()),
            # Metaflow records who ran each run and refuses to run as "root"
            # or with no user at all (as under a process manager).
            "METAFLOW_USER": _metaflow_user(),
        }

    def export_to_environ(self) -> None:
        """Hand the endpoints to the libraries that read the environment
        (Prefect and Metaflow both read it at import) and turn phoning home off."""
        self.metaflow_metadata_dir.mkdir(parents=True, exist_ok=True)
        os.environ.update(
            self.metaflow_env()
            | {
                "PREFECT_API_URL": self.prefect_api_url,
                "DO_NOT_TRACK": "true",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            }
        )
        if self.prefect_api_auth_string:
            os.environ["PREFECT_API_AUTH_STRING"] = self.prefect_api_auth_string


def load_settings() -> P3Settings:
    """The settings, or exit 1 with the variable that is wrong (no traceback)."""
    try:
        return P3Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        )
        raise SystemExit(f"error: invalid setting {problems}\n  fix: correct it in the environment or .env") from None


def configure() -> P3Settings:
    """The settings, exported to the environment: what every entry point of
    this pattern does first (the command line, each flow, a worker). Prefect
    and Metaflow read their configuration once, when imported, so an entry
    point calls this before it imports either."""
    settings = load_settings()
    settings.export_to_environ()
    return settings
