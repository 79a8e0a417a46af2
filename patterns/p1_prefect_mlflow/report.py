"""What a run of pattern 1 reports: the `Outcome` the flow returns, the
Prefect summary artifact it publishes, and what the command line prints (a
summary for people, one stable `Result:` line for scripts and tests)."""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

import data
from drift import Drift
from settings import PATTERN_DIR, P1Settings


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
    trigger_event: str = ""  # "<event>:<id>" when an event's trigger started the run
    predictions: int = 0
    prediction_counts: dict[str, int] = field(default_factory=dict)
    mlflow_run_url: str = ""
    model_url: str = ""
    prefect_flow_run_url: str = ""


# ## Lineage: what every MLflow run and model version is tagged with
def lineage_tags(version: data.DataVersion, commit: str, flow_run: str, event: str | None = None) -> dict[str, str]:
    tags = {
        "git_commit": commit,
        "dvc_data_md5": version.md5,
        "dvc_data_path": data.relative_name(version.path),
        "prefect_flow_run_id": flow_run,
    }
    return {**tags, "p1.trigger_event": event} if event else tags


def git_commit() -> str:
    """The commit of the code that runs (`-dirty` when this folder has
    uncommitted changes; derived batches, data/batches, are data, not code),
    or 'none (not a git checkout)'."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PATTERN_DIR, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":(exclude)data/batches"],
            cwd=PATTERN_DIR,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "none (not a git checkout)"
    return f"{sha}-dirty" if dirty else sha


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
| started by | {outcome.trigger_event or "a person, the command line or the schedule"} |
| git commit | {outcome.git_commit} |
| served batch | {outcome.predictions} predictions over HTTP, classes {outcome.prediction_counts} |

```text
{result_line(settings, asdict(outcome))}
```
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


@dataclass
class Scoring:
    """What `python flow.py score` produced: the champion's answers and the drift."""

    status: str = "ok"
    data_file: str = ""
    data_md5: str = ""
    champion_version: str = ""
    predictions: int = 0
    drift: Drift | None = None
    event: str = ""  # "p1.drift.detected:<id>" when the drift started a retraining
    prefect_flow_run_id: str = ""


@task
def publish_scoring(settings: P1Settings, scoring: Scoring) -> None:
    drift = scoring.drift
    verdict = f"drifted: emitted {scoring.event}" if scoring.event else "no drift event (below the threshold)"
    create_markdown_artifact(
        key="p1-drift-report",
        description="Pattern 1: a scored batch against the champion's training data",
        markdown=f"""# Pattern 1 drift report

**{drift.share:.0%} of the features drifted** (threshold {drift.threshold:.0%}): {verdict}.

| | |
|---|---|
| batch | {scoring.data_file} (DVC md5 {scoring.data_md5}) |
| scored by | {settings.model_name} v{scoring.champion_version}: {scoring.predictions} predictions over HTTP |
| drifted features | {", ".join(drift.drifted) or "none"} |
| Evidently report (HTML) | [MLflow run {drift.mlflow_run_id}]({drift.report_url}) |

```text
{scoring_result_line(asdict(scoring))}
```
""",
    )


def scoring_summary(settings: P1Settings, scoring: dict[str, Any]) -> str:
    drift = scoring["drift"]
    then = f"emitted {scoring['event']}: p1-retrain trains on this batch" if scoring["event"] else "no event"
    return (
        "\nPattern 1 scored a batch.\n"
        f"  batch         {scoring['data_file']} (DVC md5 {scoring['data_md5']})\n"
        f"  champion      {settings.model_name} v{scoring['champion_version']}: {scoring['predictions']} predictions\n"
        f"  drift         {drift['share']:.0%} of the features (threshold {drift['threshold']:.0%}): {then}\n"
        f"  report        {drift['report_url']}\n"
    )


def scoring_result_line(scoring: dict[str, Any]) -> str:
    drift = scoring["drift"]
    fields = {
        "pattern": "p1",
        "step": "score",
        "status": scoring["status"],
        "champion": scoring["champion_version"],
        "drift_share": f"{drift['share']:.4f}",
        "drifted": "yes" if drift["share"] >= drift["threshold"] else "no",
        "event": scoring["event"] or "none",
        "mlflow_run": drift["mlflow_run_id"],
        "prefect_flow_run": scoring["prefect_flow_run_id"],
        "data_md5": scoring["data_md5"],
        "predictions": scoring["predictions"],
    }
    return "Result: " + " ".join(f"{k}={v}" for k, v in fields.items())


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
        "trigger": outcome.get("trigger_event") or "none",
    }
    return "Result: " + " ".join(f"{k}={v}" for k, v in fields.items())


FAILED = "Result: pattern=p1 status=failed"
