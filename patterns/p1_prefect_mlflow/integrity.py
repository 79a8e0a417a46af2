"""Models are loaded only as trained: the training run records a sha256 of the
logged model's files (run tag `p1.model_sha256`, in MLflow's database), and the
champion is loaded from a local copy whose files hash to that record. A model
changed in the artifact store (S3) afterwards is refused before any of it is read.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from errors import P1Error

DIGEST_TAG = "p1.model_sha256"
# Added by MLflow to a copy downloaded through the registry: not the model's own.
NOT_THE_MODEL = {"registered_model_meta"}


def artifacts_digest(path: Path) -> str:
    """One sha256 over every file under `path`: its relative name and its bytes."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name not in NOT_THE_MODEL):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def record(model_uri: str) -> str:
    """Tag the active run with the digest of the model it just logged."""
    with tempfile.TemporaryDirectory() as tmp:
        digest = artifacts_digest(Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp)))
    mlflow.set_tag(DIGEST_TAG, digest)
    return digest


def verified_copy(model_name: str, alias: str, dst: Path, version: str | None = None) -> tuple[str, Path]:
    """(version, local folder) of `models:/NAME@ALIAS` (or of that `version`, named
    by the alias), if its files are the ones its training run recorded; load the
    model from that folder, not from the store."""
    client = MlflowClient()
    if version is None:
        found = client.get_model_version_by_alias(model_name, alias)
    else:
        found = client.get_model_version(model_name, version)
    recorded = client.get_run(found.run_id).data.tags.get(DIGEST_TAG) if found.run_id else None
    uri = f"models:/{model_name}/{found.version}"
    if not recorded:
        raise P1Error(
            f"{uri} (@{alias}) has no recorded digest ({DIGEST_TAG}): its files cannot be checked",
            f"move the alias to a version this pattern trained (or delete @{alias} in the MLflow UI: "
            "the next run promotes its model)",
        )
    local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(dst)))
    actual = artifacts_digest(local)
    if actual != recorded:
        raise P1Error(
            f"the files of {uri} (@{alias}) are not the ones its training run recorded: "
            f"sha256 {actual[:16]}... != {recorded[:16]}... (changed in the artifact store)",
            f"nothing was loaded or served from it; restore them, or move @{alias} to another version",
        )
    return found.version, local
