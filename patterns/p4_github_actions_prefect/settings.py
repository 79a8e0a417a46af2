"""Pattern 4's one settings object. Environment variables win; defaults point at
the local stack (`make up`), so `make pattern-4` needs no set-up.

Each field reads `P4_<NAME>` first, then the shared name the tools themselves
use (PREFECT_API_URL, S3_ENDPOINT_URL, ...). `.env.example` documents every
variable. In GitHub Actions the same fields come from the workflow's `env:`
and secrets (PREFECT_API_URL, PREFECT_API_KEY), nothing else changes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PATTERN_DIR = Path(__file__).resolve().parent


def _env(name: str, *fallbacks: str) -> AliasChoices:
    return AliasChoices(f"P4_{name}", *fallbacks)


def _default_image_repo() -> str:
    # In GitHub Actions: the repository's own GHCR namespace (GHCR wants lower case).
    repository = os.environ.get("GITHUB_REPOSITORY", "")
    return f"ghcr.io/{repository.lower()}/p4-flows" if repository else "p4-flows"


class P4Settings(BaseSettings):
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
        "patterns-local-secret", validation_alias=_env("S3_SECRET_ACCESS_KEY", "S3_SECRET_ACCESS_KEY")
    )
    # Where retraining writes models and batch scoring writes predictions (the
    # bucket must exist; `make up` creates it).
    model_bucket: str = Field("p4-models", min_length=3, validation_alias=_env("MODEL_BUCKET"))

    # Build and push ----------------------------------------------------------------
    # image: a container image (Docker and a base image must be at hand); source:
    # a snapshot of this folder per release that a process worker runs; auto:
    # image when that build can succeed here, else source (it says why).
    build: Literal["auto", "image", "source"] = Field("auto", validation_alias=_env("BUILD"))
    # Image name without tag; the tag is the release (git SHA). Default in GitHub
    # Actions: ghcr.io/<owner>/<repo>/p4-flows; elsewhere a local name.
    image_repo: str = Field(default_factory=_default_image_repo, validation_alias=_env("IMAGE_REPO"))
    # The image the flow image is built FROM (default: the Dockerfile's ARG
    # BASE_IMAGE). Where no registry answers: a local Debian bookworm image.
    base_image: str | None = Field(None, validation_alias=_env("BASE_IMAGE"))
    # A folder of wheels for the image's packages: the build installs uv.lock's
    # packages from it only, each checked against the lock's hashes, served on
    # 127.0.0.1:<wheelhouse_port> while it runs. Unset: from PyPI.
    wheelhouse: Path | None = Field(None, validation_alias=_env("WHEELHOUSE"))
    wheelhouse_port: int = Field(18381, ge=1024, le=65535, validation_alias=_env("WHEELHOUSE_PORT"))
    # Push the image: auto pushes when the image name has a registry host
    # (`ghcr.io/...`), false keeps it on this Docker engine (a PR's dry run).
    push: Literal["auto", "true", "false"] = Field("auto", validation_alias=_env("PUSH"))
    # Source builds: where release snapshots are published for workers to pull
    # (default: <P4_STATE_DIR>/releases). Several machines: a shared folder.
    release_dir: Path | None = Field(None, validation_alias=_env("RELEASE_DIR"))
    # This checkout's build records, snapshots and worker scratch folder.
    state_dir: Path = Field(PATTERN_DIR / ".state", validation_alias=_env("STATE_DIR"))
    # The folder a worker's flow runs start in (default: <P4_STATE_DIR>/worker); a
    # container with the checkout mounted read-only names one of its own.
    worker_dir: Path | None = Field(None, validation_alias=_env("WORKER_DIR"))
    # The git commit a release comes from. Default: GITHUB_SHA in Actions, else
    # `git rev-parse HEAD` of this folder's repository.
    git_sha: str | None = Field(None, validation_alias=_env("GIT_SHA", "GITHUB_SHA"))

    # Deploy ----------------------------------------------------------------------
    # The work pool every deployment in prefect.yaml targets. Default per build:
    # p4-process (source) or p4-docker (image).
    work_pool: str | None = Field(None, validation_alias=_env("WORK_POOL"))
    # Create the work pool when it is missing (false: it must exist, as with a
    # pool your platform team manages in Prefect Cloud).
    create_work_pool: bool = Field(True, validation_alias=_env("CREATE_WORK_POOL"))

    # Run and verify ----------------------------------------------------------------
    # The deployment `make p4-run` triggers after deploying (flow/deployment) ...
    run_deployment: str = Field("p4-retrain/p4-retrain", validation_alias=_env("RUN_DEPLOYMENT"))
    # ... and the batch scoring it runs next with the new model.
    score_deployment: str = Field("p4-batch-score/p4-batch-score", validation_alias=_env("SCORE_DEPLOYMENT"))
    # How long `make p4-run` waits for a worker to finish each run.
    run_timeout: float = Field(600.0, gt=0, validation_alias=_env("RUN_TIMEOUT"))
    # Workers -----------------------------------------------------------------------
    # How often an idle worker asks the pool for work (Prefect's default is 10 s).
    worker_poll_seconds: float = Field(1.0, gt=0, validation_alias=_env("WORKER_POLL_SECONDS"))
    # How long a service may take to answer the pre-flight checks.
    connect_timeout: float = Field(5.0, gt=0, validation_alias=_env("CONNECT_TIMEOUT"))

    @field_validator("prefect_api_url", "s3_endpoint_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL (in CI: is the repository secret or variable set?)")
        return value

    @field_validator("image_repo")
    @classmethod
    def _image_repo(cls, value: str) -> str:
        if not value or ":" in value.rsplit("/", 1)[-1] or value != value.lower():
            raise ValueError(
                f"P4_IMAGE_REPO={value!r} must be a lower-case image name without a tag "
                "(e.g. ghcr.io/acme/ml/p4-flows); the tag is always the release"
            )
        return value

    @property
    def push_image(self) -> bool:
        if self.push == "auto":
            first = self.image_repo.split("/", 1)[0]
            return "/" in self.image_repo and ("." in first or ":" in first or first == "localhost")
        return self.push == "true"

    @property
    def releases(self) -> Path:
        return (self.release_dir or self.state_dir / "releases").resolve()

    def pool_for(self, mode: str) -> str:
        return self.work_pool or ("p4-docker" if mode == "image" else "p4-process")

    def prefect_env(self) -> dict[str, str]:
        """Prefect's client variables: the API, and its auth string if the server wants one."""
        auth = {"PREFECT_API_AUTH_STRING": self.prefect_api_auth_string} if self.prefect_api_auth_string else {}
        return {"PREFECT_API_URL": self.prefect_api_url} | auth

    def s3_env(self) -> dict[str, str]:
        """boto3's variables for the model store (flows read them at import)."""
        return {
            "AWS_ACCESS_KEY_ID": self.s3_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_access_key,
            "AWS_ENDPOINT_URL_S3": self.s3_endpoint_url,
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        }

    def flow_run_env(self) -> dict[str, str]:
        """The settings a flow run reads, as P4_ variables. Flow runs execute in
        the release (snapshot or image), which carries no .env: the worker (or the
        Docker pool's template) hands them over, whichever way they were set here."""
        return {
            "P4_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "P4_S3_ACCESS_KEY_ID": self.s3_access_key_id,
            "P4_S3_SECRET_ACCESS_KEY": self.s3_secret_access_key,
            "P4_MODEL_BUCKET": self.model_bucket,
            "P4_CONNECT_TIMEOUT": str(self.connect_timeout),
        }


def load_settings() -> P4Settings:
    """The settings, or exit 1 with the variable that is wrong (no traceback)."""
    try:
        return P4Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        )
        raise SystemExit(f"error: invalid setting {problems}\n  fix: correct it in the environment or .env") from None
