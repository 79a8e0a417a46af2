"""This repository's harness (not the pattern): the outcome of an ETL run and
the training run its asset event started, read from their task states and
`return_value` XComs, as a summary for a person and one stable `Result:` line
for scripts and tests. Both harness modes (in_process.py, rest.py) hand over
the same dict: {"etl": run, "train": run or None, "asset_event": event or None},
a run being {"run_id", "run_type", "state", "tasks": {task: state}, "xcom": {task: value}}.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from settings import P2Settings

# The DAGs' ids and file, spelled out: importing the DAG file imports airflow.
ETL_DAG_ID, TRAIN_DAG_ID, DAG_FILE = "p2_etl", "p2_train", "p2_airflow_kfp.py"
TASKS = ["extract", "transform", "load", "plan", "submit_pipeline", "collect_metrics", "check_threshold"]
NO_RUN = {"run_id": "", "run_type": None, "state": "none", "tasks": {}, "xcom": {}}


def outcome_of(answer: dict, logical_date: datetime, settings: P2Settings) -> dict:
    """`answer`: {"etl": run, "train": run or None, "asset_event": ...}, a run being
    {"run_id", "run_type", "state", "tasks", "xcom"}."""
    etl, train = answer["etl"], answer.get("train") or NO_RUN
    x, tasks = etl["xcom"] | train["xcom"], etl["tasks"] | train["tasks"]
    submitted, metrics, plan = x.get("submit_pipeline") or {}, x.get("collect_metrics") or {}, x.get("plan") or {}
    if tasks.get("publish_model") == "success":
        decision = "published"
    elif tasks.get("reject_model") == "failed":
        decision = "rejected"
    else:
        decision = "none"
    failed = [t for t in [*TASKS, "publish_model", "reject_model"] if tasks.get(t) in ("failed", "upstream_failed")]
    return {
        "status": "ok" if etl["state"] == "success" and train["state"] == "success" else "failed",
        "decision": decision,
        "failed_task": failed[0]
        if failed
        else ("" if train["run_id"] or etl["state"] != "success" else "no-training-run"),
        # What the submit task ran (a remote Airflow has its own settings); ours otherwise.
        "mode": submitted.get("mode") or settings.mode,
        "logical_date": logical_date.date().isoformat(),
        "etl_run": etl["run_id"],
        "train_run": train["run_id"],
        "train_run_type": train.get("run_type") or "",
        "asset_event": answer.get("asset_event") or {},
        "kfp_run_name": submitted.get("run_name") or plan.get("run_name", ""),
        "kfp_run_id": submitted.get("run_id", ""),
        "reused": submitted.get("reused", ""),
        "accuracy": metrics.get("accuracy"),
        "f1_macro": metrics.get("f1_macro"),
        # The dataset the training run trained on; the one the ETL run loaded if none did.
        "dataset": plan.get("dataset_uri") or (x.get("load") or {}).get("dataset_uri", ""),
        "loaded": (x.get("load") or {}).get("dataset_uri", ""),
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
        "etl_run": o["etl_run"] or "none",
        "train_run": o["train_run"] or "none",
    }
    return "Result: " + " ".join(f"{k}={v}" for k, v in fields.items())


def summary(o: dict, seconds: float, settings: P2Settings, api_url: str = "") -> str:
    runs = [(ETL_DAG_ID, o["etl_run"]), (TRAIN_DAG_ID, o["train_run"])]
    # In-process runs keep their own database (a scheduler must never see them).
    db = settings.dag_test_home / "airflow.db"
    inspect = [
        f"sqlite3 {db} \"select task_id, state from task_instance where run_id = '{run}'\"" for _, run in runs if run
    ]
    ui = "none in-process: `make pattern-2` starts Airflow's services, with their UI"
    if api_url:  # a running Airflow: its REST API and its UI
        inspect = [
            f"{api_url}/api/v2/dags/{dag}/dagRuns/{quote(run, safe='')}/taskInstances" for dag, run in runs if run
        ]
        ui = f"{api_url}/dags/{TRAIN_DAG_ID}" + (f"/runs/{quote(o['train_run'], safe='')}" if o["train_run"] else "")
    states = ", ".join(f"{t}={s}" for t, s in sorted(o["tasks"].items()))
    metrics = "none" if o["accuracy"] is None else f"accuracy {o['accuracy']:.4f}, f1_macro {o['f1_macro']:.4f}"
    event = o["asset_event"]
    handoff = (
        f"event {event.get('id', '')} of {event.get('uri', '')} at {event.get('timestamp', '')}"
        if event
        else "no asset event: nothing trained"
        if not o["train_run"]
        else "(in-process: the newest event of the asset)"
    )
    other = o["loaded"] and o["dataset"] and o["loaded"] != o["dataset"]
    return (
        f"\nPattern 2 {'finished' if o['status'] == 'ok' else 'FAILED'} in {seconds:.1f} s.\n"
        f"  ETL run       {ETL_DAG_ID} {o['etl_run'] or 'none'}\n"
        f"  asset         {handoff}\n"
        f"  training run  {TRAIN_DAG_ID} {o['train_run'] or 'none'} ({o['train_run_type'] or 'not started'})\n"
        f"  decision      {o['decision']} (threshold: accuracy >= param min_accuracy)\n"
        f"  dataset       {o['dataset'] or 'not loaded'}"
        + (f" (newer than this ETL run's {o['loaded']}: events that queue up train on the newest)" if other else "")
        + "\n"
        f"  KFP run       {o['kfp_run_name'] or 'none'} ({o['kfp_run_id'] or 'not run'}, {o['mode']} mode, "
        f"reused={o['reused']})\n"
        f"  metrics       {metrics} (XCom of collect_metrics)\n"
        f"  published     {o['published'] or 'nothing'}\n"
        f"  tasks         {states}\n"
        + "".join(f"  inspect       {line}\n" for line in inspect)
        + f"  Airflow UI    {ui}\n"
    )
