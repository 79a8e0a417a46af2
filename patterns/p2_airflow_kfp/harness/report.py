"""This repository's harness (not the pattern): a DAG run's outcome, read from
its task states and `return_value` XComs, as a summary for a person and one
stable `Result:` line for scripts and tests. Both harness modes
(in_process.py, rest.py) hand over the same dict:
{"run_id", "state", "tasks": {task: state}, "xcom": {task: value}}.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from settings import PATTERN_DIR, P2Settings

DAG_ID = "p2_airflow_kfp"  # the DAG's id, spelled out: importing the DAG file imports airflow
TASKS = ["extract", "transform", "load", "submit_pipeline", "collect_metrics", "check_threshold"]


def outcome_of(run: dict, logical_date: datetime, settings: P2Settings) -> dict:
    x, tasks = run["xcom"], run["tasks"]
    submitted, metrics = x.get("submit_pipeline") or {}, x.get("collect_metrics") or {}
    if tasks.get("publish_model") == "success":
        decision = "published"
    elif tasks.get("reject_model") == "failed":
        decision = "rejected"
    else:
        decision = "none"
    failed = [t for t in [*TASKS, "publish_model", "reject_model"] if tasks.get(t) in ("failed", "upstream_failed")]
    return {
        "status": "ok" if run["state"] == "success" else "failed",
        "decision": decision,
        "failed_task": failed[0] if failed else "",
        # What the submit task ran (a remote Airflow has its own settings); ours otherwise.
        "mode": submitted.get("mode") or settings.mode,
        "logical_date": logical_date.date().isoformat(),
        "dag_run": run["run_id"],
        "kfp_run_name": submitted.get("run_name") or (x.get("load") or {}).get("run_name", ""),
        "kfp_run_id": submitted.get("run_id", ""),
        "reused": submitted.get("reused", ""),
        "accuracy": metrics.get("accuracy"),
        "f1_macro": metrics.get("f1_macro"),
        "dataset": (x.get("load") or {}).get("dataset_uri", ""),
        "published": (x.get("publish_model") or {}).get("published_uri", ""),
        "tasks": tasks,
    }


def result_line(o: dict) -> str:
    fields = {
        "pattern": "p2",
        "status": o["status"],
        "decision": o["decision"],
        "mode": o["mode"],
        "logical_date": o["logical_date"],
        "kfp_run": o["kfp_run_name"] or "none",
        "kfp_run_id": o["kfp_run_id"] or "none",
        "reused": str(o["reused"]).lower() if o["reused"] != "" else "none",
        "accuracy": f"{o['accuracy']:.4f}" if o["accuracy"] is not None else "none",
        "dataset": o["dataset"] or "none",
        "published": o["published"] or "none",
        "failed_task": o["failed_task"] or "none",
        "dag_run": o["dag_run"],
    }
    return "Result: " + " ".join(f"{k}={v}" for k, v in fields.items())


def summary(o: dict, seconds: float, api_url: str = "") -> str:
    env = f"cd {PATTERN_DIR} && uv run --locked python -m harness airflow"
    inspect = f"{env} tasks states-for-dag-run {DAG_ID} {o['dag_run']}"
    ui = f"{env} api-server --port 8080   then http://127.0.0.1:8080/dags/{DAG_ID}"
    if api_url:  # a running Airflow: its REST API and its UI
        run = f"{DAG_ID}/dagRuns/{quote(o['dag_run'], safe='')}"
        inspect = f"{api_url}/api/v2/dags/{run}/taskInstances"
        ui = f"{api_url}/dags/{DAG_ID}/runs/{quote(o['dag_run'], safe='')}"
    states = ", ".join(f"{t}={s}" for t, s in sorted(o["tasks"].items()))
    metrics = "none" if o["accuracy"] is None else f"accuracy {o['accuracy']:.4f}, f1_macro {o['f1_macro']:.4f}"
    return (
        f"\nPattern 2 {'finished' if o['status'] == 'ok' else 'FAILED'} in {seconds:.1f} s.\n"
        f"  decision      {o['decision']} (threshold: accuracy >= param min_accuracy)\n"
        f"  dataset       {o['dataset'] or 'not loaded'}\n"
        f"  KFP run       {o['kfp_run_name'] or 'none'} ({o['kfp_run_id'] or 'not run'}, {o['mode']} mode, "
        f"reused={o['reused']})\n"
        f"  metrics       {metrics} (XCom of collect_metrics)\n"
        f"  published     {o['published'] or 'nothing'}\n"
        f"  tasks         {states}\n"
        f"  inspect       {inspect}\n"
        f"  Airflow UI    {ui}\n"
    )
