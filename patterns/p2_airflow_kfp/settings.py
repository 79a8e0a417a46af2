"""Pattern 2's one settings object. Environment variables win; defaults point at
the local stack (`make up`), so `make pattern-2` works with no set-up.

Each field reads `P2_<NAME>` first, then the shared name the tools themselves
use (S3_ENDPOINT_URL, KFP_HOST, ...), so one `.env` can serve every pattern
and a pattern can still be pointed elsewhere on its own. `.env.example`
documents every variable.

The submit mode follows from one variable: with no KFP host the pipeline runs
locally (kfp.local), with `P2_KFP_HOST` (or `KFP_HOST`) set the DAG submits it
to that KFP API server from a KubernetesPodOperator pod.

The training parameters and the publish gate are not settings: they are the
DAG's params, declared once in dags/p2_airflow_kfp.py.

This module is imported by the DAG file at parse time: it imports nothing
heavier than pydantic, and has no side effect.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PATTERN_DIR = Path(__file__).resolve().parent
PIPELINE_DIR = PATTERN_DIR / "pipeline"


def _env(name: str, *fallbacks: str) -> AliasChoices:
    return AliasChoices(f"P2_{name}", *fallbacks)


class P2Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=PATTERN_DIR / ".env", env_file_encoding="utf-8", extra="ignore")

    # S3: where Airflow loads the dataset and KFP writes its run record --------
    s3_endpoint_url: str = Field("http://127.0.0.1:8333", validation_alias=_env("S3_ENDPOINT_URL", "S3_ENDPOINT_URL"))
    s3_access_key_id: str = Field("patterns-local", validation_alias=_env("S3_ACCESS_KEY_ID", "S3_ACCESS_KEY_ID"))
    s3_secret_access_key: str = Field(
        "patterns-local-secret",
        validation_alias=_env("S3_SECRET_ACCESS_KEY", "S3_SECRET_ACCESS_KEY"),
    )
    bucket: str = Field("p2-data", validation_alias=_env("BUCKET"))
    # The extract source: a CSV in the repository (nothing is downloaded).
    source_file: Path = Field(PATTERN_DIR / "data" / "wine.csv", validation_alias=_env("SOURCE_FILE"))
    # Airflow ------------------------------------------------------------------
    # AIRFLOW_HOME (SQLite database, logs) and kfp.local's outputs live here.
    state_dir: Path = Field(PATTERN_DIR / ".state", validation_alias=_env("STATE_DIR"))
    # The ETL DAG's clock (cron). Empty: no clock, only triggers (the tests' choice:
    # unpausing a daily DAG makes the scheduler start the latest interval's run too).
    schedule: str = Field("0 4 * * *", validation_alias=_env("SCHEDULE"))
    # A running Airflow (`make pattern-2` sets it on both tiers): the harness
    # (`python -m harness`) triggers the DAGs through this api-server's REST API;
    # `python -m harness services` starts the local tier's Airflow on its port.
    # Empty: the DAGs run in the harness's process (`DAG.test()`, a debugging aid).
    airflow_api_url: str = Field("", validation_alias=_env("AIRFLOW_API_URL"))
    # A user of Airflow's simple auth manager (AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS)
    # and its password (the passwords file): development credentials, like the S3 keys.
    airflow_username: str = Field("admin", validation_alias=_env("AIRFLOW_USERNAME"))
    airflow_password: str = Field("admin", validation_alias=_env("AIRFLOW_PASSWORD"))
    # Seconds the harness waits for the dag-processor to have parsed the DAG.
    dag_parse_timeout: float = Field(120.0, gt=0, validation_alias=_env("DAG_PARSE_TIMEOUT"))
    # Seconds the harness waits for the triggered DAG run to end (queued behind another
    # run included). Default: P2_PIPELINE_TIMEOUT + 300 (the ETL tasks and a queue).
    dag_run_timeout: float | None = Field(None, gt=0, validation_alias=_env("DAG_RUN_TIMEOUT"))
    # KFP ----------------------------------------------------------------------
    # Empty: local mode (kfp.local). Set: cluster mode against this KFP API.
    kfp_host: str = Field("", validation_alias=_env("KFP_HOST", "KFP_HOST"))
    # The mode, when not the one P2_KFP_HOST implies: `vertex` submits the same
    # compiled pipeline to Vertex AI Pipelines (google-cloud-aiplatform, from the
    # KFP environment), with the four P2_VERTEX_* below.
    kfp_mode: Literal["", "local", "cluster", "vertex"] = Field("", validation_alias=_env("KFP_MODE"))
    vertex_project: str = Field("", validation_alias=_env("VERTEX_PROJECT"))
    vertex_region: str = Field("", validation_alias=_env("VERTEX_REGION"))
    # gs://bucket/prefix: Vertex's pipeline root (its artifacts and logs).
    vertex_pipeline_root: str = Field("", validation_alias=_env("VERTEX_PIPELINE_ROOT"))
    # The service account the pipeline's jobs run as (empty: Vertex's default).
    vertex_service_account: str = Field("", validation_alias=_env("VERTEX_SERVICE_ACCOUNT"))
    kfp_experiment: str = Field("p2-airflow-kfp", validation_alias=_env("KFP_EXPERIMENT"))
    # Local mode: the KFP environment's interpreter (pipeline/.venv).
    kfp_python: Path = Field(PIPELINE_DIR / ".venv" / "bin" / "python", validation_alias=_env("KFP_PYTHON"))
    # Seconds the submit step waits for the pipeline run before failing.
    pipeline_timeout: float = Field(600.0, gt=0, validation_alias=_env("PIPELINE_TIMEOUT"))
    # Cluster mode: the submit pod ---------------------------------------------
    kfp_image: str = Field("p2-kfp-python:0.1.0", validation_alias=_env("KFP_IMAGE"))
    k8s_namespace: str = Field("kubeflow", validation_alias=_env("K8S_NAMESPACE"))
    # The Kubernetes secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for the
    # submit pod and the pipeline's component pods (`make pattern-2-cluster` creates it).
    k8s_s3_secret: str = Field("p2-s3-credentials", validation_alias=_env("K8S_S3_SECRET"))
    # S3 as pods see it: the same buckets as P2_S3_ENDPOINT_URL, reached from inside
    # the cluster (KFP standalone's SeaweedFS service, S3 on 9000, by default).
    k8s_s3_endpoint_url: str = Field("http://seaweedfs.kubeflow:9000", validation_alias=_env("K8S_S3_ENDPOINT_URL"))
    # How long a service may take to answer (S3 connect timeout).
    connect_timeout: float = Field(5.0, gt=0, validation_alias=_env("CONNECT_TIMEOUT"))

    @property
    def mode(self) -> str:
        return self.kfp_mode or ("cluster" if self.kfp_host else "local")

    @model_validator(mode="after")
    def _vertex_complete(self) -> P2Settings:
        if self.mode == "vertex":
            missing = [
                f"P2_{name.upper()}"
                for name in ("vertex_project", "vertex_region", "vertex_pipeline_root")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(f"P2_KFP_MODE=vertex needs {', '.join(missing)}")
            if not self.vertex_pipeline_root.startswith("gs://"):
                raise ValueError(f"P2_VERTEX_PIPELINE_ROOT={self.vertex_pipeline_root!r} must be a gs:// URI")
        return self

    @property
    def dag_run_wait(self) -> float:
        return self.dag_run_timeout if self.dag_run_timeout is not None else self.pipeline_timeout + 300

    @property
    def airflow_home(self) -> Path:
        """The Airflow services' home: metadata database (SQLite), logs, passwords."""
        return self.state_dir.resolve() / "airflow"

    @property
    def dag_test_home(self) -> Path:
        """The in-process runs' own home: a scheduler must never see a `DAG.test()` run."""
        return self.state_dir.resolve() / "airflow-dag-test"

    @property
    def kfp_local_root(self) -> Path:
        return self.state_dir.resolve() / "kfp-local"

    def s3_env(self) -> dict[str, str]:
        """What boto3 reads, in this process and in the KFP subprocess."""
        return {
            "AWS_ACCESS_KEY_ID": self.s3_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_access_key,
            "AWS_ENDPOINT_URL_S3": self.s3_endpoint_url,
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        }

    def airflow_env(self, home: Path | None = None) -> dict[str, str]:
        """Airflow's own configuration for the local tier: its home in the state
        folder, SQLite, no examples, this pattern's DAGs folder, loopback only."""
        home = home or self.airflow_home
        return {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PATTERN_DIR / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            # `airflow api-server` (the UI), if you start one, binds to loopback only.
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": "http://127.0.0.1:8080",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        }
