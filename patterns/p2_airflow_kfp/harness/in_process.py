"""This repository's harness (not the pattern): the DAG run in this process on
the local tier, the way `airflow dags test` runs it.

Airflow keeps its state in P2_STATE_DIR/airflow (SQLite, no examples, the
DAGs folder `dags/`); the first run creates the database. `DAG.test()` runs
every task here: no scheduler, no server, nothing listens on a port. (A
scheduler with the LocalExecutor starts Airflow's worker log server, which
in Airflow 3.3 binds every interface; this repository keeps local services
on 127.0.0.1.) The run's task states and XComs are read back from the
database for harness/report.py.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

from errors import P2Error
from settings import PATTERN_DIR, P2Settings

AIRFLOW = Path(sys.executable).parent / "airflow"


def configure(settings: P2Settings) -> None:
    """Airflow reads its configuration from the environment when it is
    imported: set it before anything imports airflow."""
    os.environ.update(settings.airflow_env(settings.dag_test_home) | settings.s3_env())
    # Task output and warnings only: Airflow's own INFO lines (hundreds per
    # run) go nowhere here. `python -m harness airflow ...` keeps Airflow's default.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")


def exec_airflow(settings: P2Settings, args: list[str]) -> None:
    """Replace this process with `airflow ARGS` in the services' AIRFLOW_HOME
    (`airflow dags list-runs p2_train`, `airflow assets list`, ...)."""
    os.environ.update(settings.airflow_env(settings.airflow_home) | settings.s3_env())
    os.execv(str(AIRFLOW), [str(AIRFLOW), *args])


def migrate(home: Path, env: dict[str, str] | None = None) -> None:
    """Create or upgrade the SQLite database in Airflow's `home` once per Airflow
    version (`airflow db migrate` costs seconds; a stamp file remembers it ran)."""
    stamp = home / f".migrated-{version('apache-airflow')}"
    if stamp.exists() and (home / "airflow.db").exists():
        return
    home.mkdir(parents=True, exist_ok=True)
    print(f"Creating Airflow's database in {home} (first run only)", flush=True)
    done = subprocess.run([str(AIRFLOW), "db", "migrate"], capture_output=True, text=True, env=os.environ | (env or {}))
    if done.returncode != 0:
        raise P2Error(
            f"`airflow db migrate` failed in {home}:\n{(done.stdout + done.stderr)[-3000:]}",
            f"remove {home} to start from an empty database",
        )
    stamp.touch()


@contextlib.contextmanager
def one_run_per_date(settings: P2Settings, logical_date: datetime):
    """One in-process DAG run per logical date at a time. With a scheduler,
    Airflow refuses a second run for the same logical date; `DAG.test()` would
    replace the running one instead. So a second trigger for that date waits
    here for the first, then runs and finds its KFP run already done (reused,
    nothing executes twice)."""
    import fcntl

    settings.dag_test_home.mkdir(parents=True, exist_ok=True)
    with (settings.dag_test_home / f".run-{logical_date:%Y-%m-%d}.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"another DAG run for {logical_date:%Y-%m-%d} is in progress here; waiting for it", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def run_dag(dag, logical_date: datetime | None, conf: dict) -> dict:
    """One run of `dag` with `DAG.test()`; its task states and return_value XComs."""
    from airflow import settings as airflow_settings
    from airflow.models.xcom import XComModel

    dag_run = dag.test(logical_date=logical_date, run_conf=conf)
    with airflow_settings.Session() as session:
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances(session=session)}
        rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag.dag_id, key="return_value")).all()
        xcoms = {row.task_id: XComModel.deserialize_value(row) for row in rows}
    return {
        "run_id": dag_run.run_id,
        "run_type": str(dag_run.run_type),
        "state": str(dag_run.state),
        "tasks": states,
        "xcom": xcoms,
    }


def trigger_and_wait(settings: P2Settings, logical_date: datetime, conf: dict) -> dict:
    """The local debugging path: the ETL DAG run for `logical_date`, then, if it
    loaded a dataset, a manual run of the training DAG, which trains on the
    asset's newest event (no scheduler here to start it from the event)."""
    configure(settings)
    with one_run_per_date(settings, logical_date):
        migrate(settings.dag_test_home)
        sys.path.insert(0, str(PATTERN_DIR / "dags"))
        import p2_airflow_kfp

        etl = run_dag(p2_airflow_kfp.ETL_DAG, logical_date, conf)
        answer = {"etl": etl, "train": None, "asset_event": None}
        if etl["state"] != "success":
            return answer
        return answer | {"train": run_dag(p2_airflow_kfp.TRAIN_DAG, None, conf)}
