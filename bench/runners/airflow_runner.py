"""The workload as an Airflow 3 DAG run by `DAG.test()`, on SQLite in BENCH_AIRFLOW_HOME.

The database is created before the clock starts (`airflow db migrate`: the
benchmark measures it once, as Airflow's setup cost). Runs in pattern 2's
environment (the patterns' Airflow), the way pattern 2 runs its DAG locally.
"""

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import protocol

shape = protocol.shape_from_argv("airflow")
home = os.environ.get("BENCH_AIRFLOW_HOME")
if not home or not (Path(home) / "airflow.db").exists():
    raise SystemExit(
        f"error: BENCH_AIRFLOW_HOME={home!r} has no airflow.db: create it first with "
        "`AIRFLOW_HOME=<folder> airflow db migrate` (bench/matrix.py does)"
    )
os.environ.update(
    {
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).resolve().parent / "airflow_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{Path(home) / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(Path(home) / "logs"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
)
sys.path.insert(0, os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
import bench_dags  # noqa: E402 - timed: importing the tool is part of its cost
from airflow import settings as airflow_settings  # noqa: E402
from airflow.models.xcom import XComModel  # noqa: E402

imported = time.perf_counter()
started = time.perf_counter()
dag_run = bench_dags.DAGS[shape].test(logical_date=datetime.now(UTC))
finished = time.perf_counter()
if str(dag_run.state) != "success":
    raise SystemExit(f"error: DAG run {dag_run.run_id} ended {dag_run.state}")
with airflow_settings.Session() as session:
    row = session.scalars(
        XComModel.get_many(
            run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=bench_dags.LAST_TASK[shape], key="return_value"
        )
    ).first()
    result = XComModel.deserialize_value(row) if row is not None else ""
protocol.report("airflow", shape, result, imported, started, finished)
