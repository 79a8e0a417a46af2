"""Pattern 1's one settings object. Environment variables win; defaults point at
the local stack (`make up`), so a bare `python flow.py` works with no set-up.

Each field reads `P1_<NAME>` first, then the shared name the tools themselves
use (PREFECT_API_URL, MLFLOW_TRACKING_URI, S3_ENDPOINT_URL, ...), so one
`.env` can serve every pattern and a pattern can still be pointed elsewhere
on its own. `.env.example` documents every variable.

Reading the settings has no side effect. `load_settings()`, called where a
run starts (the command line's `main()` and the flow itself, which a
deployment runs without `main()`), also exports the endpoints to the
environment for the libraries that read it there.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PATTERN_DIR = Path(__file__).resolve().parent


def _env(name: str, *fallbacks: str) -> AliasChoices:
    return AliasChoices(f"P1_{name}", *fallbacks)


class P1Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=PATTERN_DIR / ".env", env_file_encoding="utf-8", extra="ignore")

    # Endpoints and credentials -------------------------------------------------
    prefect_api_url: str = Field(
        "http://127.0.0.1:4200/api", validation_alias=_env("PREFECT_API_URL", "PREFECT_API_URL")
    )
    mlflow_tracking_uri: str = Field(
        "http://127.0.0.1:5000",
        validation_alias=_env("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
    )
    # The servers' logins (None: the server wants none). The local stack generates them.
    prefect_api_auth_string: str | None = Field(
        None, validation_alias=_env("PREFECT_API_AUTH_STRING", "PREFECT_API_AUTH_STRING")
    )
    mlflow_tracking_username: str | None = Field(
        None, validation_alias=_env("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_USERNAME")
    )
    mlflow_tracking_password: str | None = Field(
        None, validation_alias=_env("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_PASSWORD")
    )
    s3_endpoint_url: str = Field("http://127.0.0.1:8333", validation_alias=_env("S3_ENDPOINT_URL", "S3_ENDPOINT_URL"))
    s3_access_key_id: str = Field("patterns-local", validation_alias=_env("S3_ACCESS_KEY_ID", "S3_ACCESS_KEY_ID"))
    s3_secret_access_key: str = Field(
        "patterns-local-secret",
        validation_alias=_env("S3_SECRET_ACCESS_KEY", "S3_SECRET_ACCESS_KEY"),
    )
    # Names ---------------------------------------------------------------------
    experiment_name: str = Field("p1-prefect-mlflow", validation_alias=_env("EXPERIMENT_NAME"))
    model_name: str = Field("p1-breast-cancer", validation_alias=_env("MODEL_NAME"))
    # The DVC-tracked raw data (its `.dvc` pointer is committed beside it).
    data_file: Path = Field(PATTERN_DIR / "data" / "raw" / "breast_cancer.csv", validation_alias=_env("DATA_FILE"))
    # Quality gates -------------------------------------------------------------
    max_nan_fraction: float = Field(0.05, ge=0, le=1, validation_alias=_env("MAX_NAN_FRACTION"))
    # A candidate replaces the champion only if its ROC AUC is higher by more than this.
    min_improvement: float = Field(0.0, ge=0, validation_alias=_env("MIN_IMPROVEMENT"))
    # Serving (the deploy step) -------------------------------------------------
    serve_port: int = Field(0, ge=0, le=65535, validation_alias=_env("SERVE_PORT"))  # 0: a free port
    serve_timeout: float = Field(90.0, gt=0, validation_alias=_env("SERVE_TIMEOUT"))
    # The live endpoint (endpoint.py): its port on 127.0.0.1, and how often it reads @champion.
    endpoint_port: int = Field(5050, ge=1, le=65535, validation_alias=_env("ENDPOINT_PORT"))
    # The address it binds: loopback. Only a container whose port is published on the
    # host's 127.0.0.1 binds 0.0.0.0 inside it (docker-compose.yml, p1-endpoint).
    endpoint_host: str = Field("127.0.0.1", validation_alias=_env("ENDPOINT_HOST"))
    endpoint_poll_seconds: float = Field(5.0, gt=0, validation_alias=_env("ENDPOINT_POLL_SECONDS"))
    # Drift (python flow.py score): at this share of drifted features or more, the
    # scoring emits p1.drift.detected and p1-retrain trains on the batch. 0.5 is
    # Evidently's own rule for "the data set drifted".
    drift_share: float = Field(0.5, gt=0, le=1, validation_alias=_env("DRIFT_SHARE"))
    # Seconds a run waits for another run of the same training (same data and
    # parameters) to finish before giving up; then it reuses that run's model.
    slot_timeout: float = Field(900.0, gt=0, validation_alias=_env("SLOT_TIMEOUT"))
    # How long a service may take to answer the pre-flight checks.
    connect_timeout: float = Field(5.0, gt=0, validation_alias=_env("CONNECT_TIMEOUT"))

    def export_to_environ(self) -> None:
        """Hand the endpoints to the libraries that read the environment (Prefect
        reads it at import, MLflow and DVC's S3 client when they connect) and
        turn their phoning-home off: on a closed network it only waits."""
        logins = {
            "PREFECT_API_AUTH_STRING": self.prefect_api_auth_string,
            "MLFLOW_TRACKING_USERNAME": self.mlflow_tracking_username,
            "MLFLOW_TRACKING_PASSWORD": self.mlflow_tracking_password,
        }
        os.environ.update({name: value for name, value in logins.items() if value})
        os.environ.update(
            {
                "PREFECT_API_URL": self.prefect_api_url,
                "MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
                "AWS_ACCESS_KEY_ID": self.s3_access_key_id,
                "AWS_SECRET_ACCESS_KEY": self.s3_secret_access_key,
                "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "true",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "DVC_NO_ANALYTICS": "1",
                # The pre-flight check fails in seconds when the tracking server is
                # down at the start; mid-run, 6 retries (backoff 4, 8, ... 64 s) ride
                # out a server restart (about 20-60 s on two cores).
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES": os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "6"),
                # Prefect's client retries a lost connection with backoff 2, 4, 8 ... s:
                # 7 tries ride out a Prefect server restart.
                "PREFECT_CLIENT_MAX_RETRIES": os.environ.get("PREFECT_CLIENT_MAX_RETRIES", "7"),
                "MLFLOW_HTTP_REQUEST_TIMEOUT": os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "30"),
                # `python flow.py serve` asks for runs to start (a trigger's, a schedule's)
                # every 2 s instead of Prefect's default 10 s.
                "PREFECT_RUNNER_POLL_FREQUENCY": os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY", "2"),
            }
        )


def load_settings() -> P1Settings:
    """The settings, exported to the environment (see `export_to_environ`)."""
    settings = P1Settings()
    settings.export_to_environ()
    return settings
