"""The decision matrix's workload as two Airflow 3 DAGs (TaskFlow): one task per step.

Each step is a task instance with its own state row and XCom in Airflow's
metadata database; values move between tasks through XCom. Run by
bench/runners/airflow_runner.py with `DAG.test()` (Airflow's `dags test`: no
scheduler, tasks run one after the other in that process).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # workload.py, one folder up

import workload  # noqa: E402
from airflow.sdk import dag, task  # noqa: E402


@task
def step(value: str, i: int) -> str:
    return workload.step(value, i)


@task
def join(values: list[str]) -> str:
    return workload.join(list(values))


@dag(dag_id="bench_chain", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def bench_chain():
    value = workload.SEED
    for i in range(1, workload.N + 1):
        value = step.override(task_id=f"step_{i}")(value, i)


@dag(dag_id="bench_fanout", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def bench_fanout():
    join([step.override(task_id=f"step_{i}")(workload.SEED, i) for i in range(1, workload.N + 1)])


DAGS = {"chain": bench_chain(), "fanout": bench_fanout()}
LAST_TASK = {"chain": f"step_{workload.N}", "fanout": "join"}
