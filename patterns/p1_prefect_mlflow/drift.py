"""Pattern 1's drift check: does a scored batch still look like the data the
champion was trained on?

Evidently owns the statistics (its DataDriftPreset: a test per feature, K-S for
numbers, and the share of features that drifted). MLflow keeps what a person
reads: every training run logs its training features (`drift/reference.csv`),
and every scoring gets an MLflow run of its own with the drift share and
Evidently's HTML report (`drift/report.html`). At a share of P1_DRIFT_SHARE or
more, the scoring flow emits `p1.drift.detected` (events.py) and the
`p1-retrain` deployment trains on the drifted batch's data version.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from prefect import task

from errors import P1Error
from settings import P1Settings

REFERENCE = "drift/reference.csv"  # in each training run: the features it was trained on
REPORT = "drift/report.html"  # in each scoring run: Evidently's report


@dataclass
class Drift:
    share: float  # of the features whose distribution moved
    threshold: float  # P1_DRIFT_SHARE
    drifted: list[str] = field(default_factory=list)
    mlflow_run_id: str = ""
    report_url: str = ""

    @property
    def detected(self) -> bool:
        return self.share >= self.threshold


def log_reference(x_train: pd.DataFrame) -> None:
    """Inside the training run: what a later scoring compares its batch with."""
    mlflow.log_text(x_train.to_csv(index=False, float_format="%.6g"), REFERENCE)


def reference_of(settings: P1Settings, champion_version: str) -> pd.DataFrame:
    run_id = MlflowClient().get_model_version(settings.model_name, champion_version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=REFERENCE, dst_path=tmp)
        except (MlflowException, OSError) as exc:
            raise P1Error(
                f"the champion {settings.model_name} v{champion_version} (run {run_id}) has no {REFERENCE} "
                "to compare a batch with: it was trained before drift checks",
                'train one that logs it (every training run does now), e.g. `make pattern-1 ARGS="--random-state 1"`, '
                "and make it champion (the gate promotes only a better model; the MLflow UI moves the alias)",
            ) from exc
        return pd.read_csv(path)


def measure(reference: pd.DataFrame, batch: pd.DataFrame, threshold: float):
    """Evidently's data drift preset over the batch's features: the drift, and Evidently's
    snapshot (`.get_html_str(as_iframe=False)`: the report a person reads)."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    snapshot = Report([DataDriftPreset(drift_share=threshold)]).run(
        current_data=batch[list(reference.columns)], reference_data=reference
    )
    metrics = snapshot.dict()["metrics"]
    share = next(m["value"]["share"] for m in metrics if m["config"]["type"].endswith(":DriftedColumnsCount"))
    drifted = [
        m["config"]["column"]
        for m in metrics
        if m["config"]["type"].endswith(":ValueDrift")
        # a p-value drifts below its threshold, a distance above it
        and (m["value"] < m["config"]["threshold"]) == ("p_value" in m["config"]["method"])
    ]
    return Drift(share=float(share), threshold=threshold, drifted=drifted), snapshot


@task
def check_drift(settings: P1Settings, champion_version: str, batch: pd.DataFrame, lineage: dict[str, str]) -> Drift:
    """Measure, and keep the report in an MLflow run of its own (experiment P1_EXPERIMENT_NAME)."""
    drift, snapshot = measure(reference_of(settings, champion_version), batch, settings.drift_share)
    tags = {**lineage, "p1.kind": "drift", "p1.champion_version": champion_version}
    with mlflow.start_run(run_name=f"drift-{lineage['dvc_data_md5'][:8]}", tags=tags) as run:
        mlflow.log_metrics({"drift_share": drift.share, "drifted_columns": len(drift.drifted)})
        mlflow.set_tags({"p1.drift_detected": str(drift.detected).lower(), "p1.drift_threshold": str(drift.threshold)})
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / Path(REPORT).name
            report.write_text(snapshot.get_html_str(as_iframe=False), encoding="utf-8")
            mlflow.log_artifact(str(report), Path(REPORT).parent.as_posix())
        drift.mlflow_run_id = run.info.run_id
        base = settings.mlflow_tracking_uri.rstrip("/")
        drift.report_url = f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/artifacts"
    return drift
