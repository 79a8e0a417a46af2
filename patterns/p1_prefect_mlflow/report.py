"""What a run of pattern 1 reports: the `Outcome` the flow returns, the
Prefect summary artifact it publishes, and what the command line prints (a
summary for people, one stable `Result:` line for scripts and tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from settings import P1Settings


@dataclass
class Outcome:
    """What the run produced: returned by the flow, printed, and published."""

    status: str = "ok"
    decision: str = ""
    reason: str = ""
    mlflow_run_id: str = ""
    model_version: str = ""
    champion_version: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    data_md5: str = ""
    git_commit: str = ""
    prefect_flow_run_id: str = ""
    predictions: int = 0
    prediction_counts: dict[str, int] = field(default_factory=dict)
    mlflow_run_url: str = ""
    model_url: str = ""
    prefect_flow_run_url: str = ""


def add_links(outcome: Outcome, settings: P1Settings, experiment_id: str) -> None:
    """Where to look: the MLflow run, the champion's version and the Prefect flow run in their UIs."""
    base = settings.mlflow_tracking_uri.rstrip("/")
    outcome.mlflow_run_url = f"{base}/#/experiments/{experiment_id}/runs/{outcome.mlflow_run_id}"
    outcome.model_url = f"{base}/#/models/{settings.model_name}/versions/{outcome.champion_version}"
    prefect_ui = settings.prefect_api_url.rstrip("/").removesuffix("/api")
    outcome.prefect_flow_run_url = f"{prefect_ui}/runs/flow-run/{outcome.prefect_flow_run_id}"


@task
def publish_summary(settings: P1Settings, outcome: Outcome) -> None:
    rows = "\n".join(
        f"| {k} | {v:.4f} | {outcome.champion_metrics.get(k, float('nan')):.4f} |"
        for k, v in sorted(outcome.metrics.items())
    )
    create_markdown_artifact(
        key="p1-training-summary",
        description="Pattern 1: metrics, decision, lineage",
        markdown=f"""# Pattern 1 training summary

**Decision:** {outcome.decision}: {outcome.reason}

| metric | candidate | champion before |
|---|---|---|
{rows}

| lineage | |
|---|---|
| MLflow run | [{outcome.mlflow_run_id}]({outcome.mlflow_run_url}) |
| model version registered by this run | {outcome.model_version or "none"} |
| champion now | [{settings.model_name} v{outcome.champion_version}]({outcome.model_url}) |
| data version (DVC md5) | {outcome.data_md5} |
| git commit | {outcome.git_commit} |
| served batch | {outcome.predictions} predictions over HTTP, classes {outcome.prediction_counts} |
""",
    )


def summary(settings: P1Settings, outcome: dict[str, Any]) -> str:
    return (
        "\nPattern 1 finished.\n"
        f"  decision      {outcome['decision']}: {outcome['reason']}\n"
        f"  champion      {settings.model_name} v{outcome['champion_version']}  {outcome['model_url']}\n"
        f"  MLflow run    {outcome['mlflow_run_url']}\n"
        f"  Prefect run   {outcome['prefect_flow_run_url']}\n"
        f"  data version  {outcome['data_md5']} (DVC md5 of {settings.data_file.name})\n"
        f"  served batch  {outcome['predictions']} predictions over HTTP, per class {outcome['prediction_counts']}\n"
    )


def result_line(settings: P1Settings, outcome: dict[str, Any]) -> str:
    fields = {
        "pattern": "p1",
        "status": outcome["status"],
        "decision": outcome["decision"],
        "model": settings.model_name,
        "version": outcome["model_version"] or "none",
        "champion": outcome["champion_version"],
        "roc_auc": f"{outcome['metrics'].get('roc_auc', 0):.4f}",
        "mlflow_run": outcome["mlflow_run_id"],
        "prefect_flow_run": outcome["prefect_flow_run_id"],
        "data_md5": outcome["data_md5"],
        "predictions": outcome["predictions"],
    }
    return "Result: " + " ".join(f"{k}={v}" for k, v in fields.items())


FAILED = "Result: pattern=p1 status=failed"
