"""Pattern 2: run the DAG once on the local tier, the way `airflow dags test` does.

    python run.py                        one DAG run for today's logical date (UTC)
    python run.py --date 2026-01-01      for another logical date
    python run.py --n-estimators 1 --max-depth 1      DAG params (--min-accuracy too)
    python run.py airflow ARGS...        any airflow command with this pattern's AIRFLOW_HOME,
                                         e.g. `airflow api-server` for the UI on http://127.0.0.1:8080
    P2_AIRFLOW_API_URL=http://127.0.0.1:8080 python run.py
                                         against a running Airflow (the compose tier): trigger
                                         the DAG over its REST API (airflow_rest.py) and follow it

Airflow keeps its state in P2_STATE_DIR/airflow (SQLite, no examples, the
DAGs folder `dags/`); the first run creates the database. The DAG run
executes in this process (`DAG.test()`, no scheduler, no server, nothing
listens on a port), then the run's XComs are read back for a summary and one
stable line for scripts and tests:
    Result: pattern=p2 status=ok decision=published ...

With P2_AIRFLOW_API_URL set, Airflow's own services run the DAG and this
process never imports airflow: it triggers one run per logical date over the
REST API, waits for it and reads the same task states and XComs back
(airflow_rest.py), then prints the same summary and Result line.
"""

# ## Settings first
# Airflow reads its configuration from the environment when it is imported,
# so the settings object sets it before anything imports airflow.
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from importlib.metadata import version
from pathlib import Path
from urllib.parse import quote

from errors import P2Error
from settings import PATTERN_DIR, P2Settings

SETTINGS = P2Settings()
AIRFLOW = Path(sys.executable).parent / "airflow"
TASKS = ["extract", "transform", "load", "submit_pipeline", "collect_metrics", "check_threshold"]


def configure() -> None:
    os.environ.update(SETTINGS.airflow_env() | SETTINGS.s3_env())
    # Task output and warnings only: Airflow's own INFO lines (hundreds per
    # run) go nowhere here. `run.py airflow ...` keeps Airflow's default.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")


def migrate() -> None:
    """Create or upgrade Airflow's SQLite database once per Airflow version
    (`airflow db migrate` costs seconds; a stamp file remembers it ran)."""
    home = SETTINGS.airflow_home
    stamp = home / f".migrated-{version('apache-airflow')}"
    if stamp.exists() and (home / "airflow.db").exists():
        return
    home.mkdir(parents=True, exist_ok=True)
    print(f"Creating Airflow's database in {home} (first run only)", flush=True)
    done = subprocess.run([str(AIRFLOW), "db", "migrate"], capture_output=True, text=True)
    if done.returncode != 0:
        raise P2Error(
            f"`airflow db migrate` failed in {home}:\n{(done.stdout + done.stderr)[-3000:]}",
            f"remove {home} to start from an empty database",
        )
    stamp.touch()


# ## One DAG run, in this process
@contextlib.contextmanager
def one_run_per_date(logical_date: datetime):
    """One in-process DAG run per logical date at a time. With a scheduler,
    Airflow refuses a second run for the same logical date; `DAG.test()` would
    replace the running one instead. So a second trigger for that date waits
    here for the first, then runs and finds its KFP run already done (reused,
    nothing executes twice)."""
    import fcntl

    SETTINGS.airflow_home.mkdir(parents=True, exist_ok=True)
    with (SETTINGS.airflow_home / f".run-{logical_date:%Y-%m-%d}.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"another DAG run for {logical_date:%Y-%m-%d} is in progress here; waiting for it", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def run_dag(logical_date: datetime, conf: dict) -> dict:
    sys.path.insert(0, str(PATTERN_DIR / "dags"))
    import p2_airflow_kfp
    from airflow import settings as airflow_settings
    from airflow.models.xcom import XComModel

    dag_run = p2_airflow_kfp.DAG.test(logical_date=logical_date, run_conf=conf)
    with airflow_settings.Session() as session:
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances(session=session)}
        rows = session.scalars(
            XComModel.get_many(run_id=dag_run.run_id, dag_ids=p2_airflow_kfp.DAG_ID, key="return_value")
        ).all()
        xcoms = {row.task_id: XComModel.deserialize_value(row) for row in rows}
    return {"run_id": dag_run.run_id, "state": str(dag_run.state), "tasks": states, "xcom": xcoms}


def outcome_of(run: dict, logical_date: datetime) -> dict:
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
        "mode": submitted.get("mode") or SETTINGS.mode,
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
    env = f"cd {PATTERN_DIR} && uv run --locked python run.py airflow"
    inspect = f"{env} tasks states-for-dag-run p2_airflow_kfp {o['dag_run']}"
    ui = f"{env} api-server --port 8080   then http://127.0.0.1:8080/dags/p2_airflow_kfp"
    if api_url:  # a running Airflow: its REST API and its UI
        run = f"p2_airflow_kfp/dagRuns/{quote(o['dag_run'], safe='')}"
        inspect = f"{api_url}/api/v2/dags/{run}/taskInstances"
        ui = f"{api_url}/dags/p2_airflow_kfp/runs/{quote(o['dag_run'], safe='')}"
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["airflow"]:
        configure()
        os.environ.pop("AIRFLOW__LOGGING__LOGGING_LEVEL", None)
        os.execv(str(AIRFLOW), [str(AIRFLOW), *argv[1:]])
    parser = argparse.ArgumentParser(description="Pattern 2: one DAG run (ETL in Airflow, training in KFP).")
    parser.add_argument("--date", type=date.fromisoformat, default=datetime.now(UTC).date(), help="logical date")
    parser.add_argument("--n-estimators", type=int)
    parser.add_argument("--max-depth", type=int, help="0 means unlimited")
    parser.add_argument("--min-accuracy", type=float)
    args = parser.parse_args(argv)
    conf = {
        k: v
        for k, v in {
            "n_estimators": args.n_estimators,
            "max_depth": args.max_depth,
            "min_accuracy": args.min_accuracy,
        }.items()
        if v is not None
    }
    logical_date = datetime(args.date.year, args.date.month, args.date.day, tzinfo=UTC)
    started = time.monotonic()
    api_url = SETTINGS.airflow_api_url.rstrip("/")
    try:
        if api_url:  # a running Airflow: over its REST API, without importing airflow here
            import airflow_rest

            run = airflow_rest.trigger_and_wait(SETTINGS, logical_date, conf)
        else:
            configure()
            with one_run_per_date(logical_date):
                migrate()
                run = run_dag(logical_date, conf)
    except P2Error as exc:
        print(exc.render(), file=sys.stderr)
        print("Result: pattern=p2 status=failed", file=sys.stderr)
        return 1
    outcome = outcome_of(run, logical_date)
    print(summary(outcome, time.monotonic() - started, api_url))
    line = result_line(outcome)
    if outcome["status"] != "ok":
        for task, errors in (run.get("task_errors") or {}).items():  # a remote run: its tasks' errors
            print(f"{task} failed: " + "\n  ".join(errors or ["(no error in its log; see the UI)"]), file=sys.stderr)
        if run.get("already_ended"):
            print(airflow_rest.rerun_hint(SETTINGS, run["run_id"]), file=sys.stderr)
        print(line, file=sys.stderr)
        return 1
    print(line)
    return 0


if __name__ == "__main__":
    code = main()
    # Everything is written, committed and flushed by now. The interpreter's
    # own teardown of Airflow's import graph took about 3 s on two cores, for
    # nothing: leave at once.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
