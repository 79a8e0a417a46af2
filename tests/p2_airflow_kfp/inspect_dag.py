"""Run inside pattern 2's Airflow environment by the tests: parse the DAG the
way Airflow's DAG processor does and print what the tests assert on, as JSON.

    python inspect_dag.py structure   import errors, tasks, edges, heavy modules loaded by parsing
    python inspect_dag.py pod         (with P2_KFP_HOST set) the submit task's rendered pod spec
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

P2 = Path(__file__).resolve().parents[2] / "patterns" / "p2_airflow_kfp"
HEAVY = ("kfp", "sklearn", "pandas", "boto3", "botocore", "kubernetes", "airflow.providers.cncf.kubernetes")


def parse():
    from airflow.dag_processing.dagbag import DagBag

    before = set(sys.modules)
    bag = DagBag(dag_folder=str(P2 / "dags"))
    loaded = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in HEAVY or m.startswith(HEAVY))
    return bag, loaded


def describe(dag) -> dict:
    return {
        "tasks": sorted(dag.task_ids),
        "edges": sorted([t.task_id, d] for t in dag.tasks for d in t.downstream_task_ids),
        "operators": {t.task_id: type(t).__name__ for t in dag.tasks},
        "schedule": str(getattr(dag, "schedule", "")),
        "catchup": dag.catchup,
        "params": {k: dag.params[k] for k in dag.params},
        "outlets": {t.task_id: [a.uri for a in t.outlets] for t in dag.tasks if t.outlets},
    }


def structure() -> dict:
    bag, loaded = parse()
    return {
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
        "dag_ids": sorted(bag.dags),
        **{dag_id: describe(dag) for dag_id, dag in bag.dags.items()},
        "heavy_modules": sorted({m.split(".")[0] for m in loaded}),
    }


class _TaskInstance:
    """What the pod's argument templates pull: the plan task's XCom."""

    def xcom_pull(self, task_ids: str) -> dict:
        assert task_ids == "plan"
        return {
            "run_name": "p2-wine-1fe63d079def-m6-n200",
            "dataset_uri": "s3://p2-data/datasets/wine/ds=2026-03-01/wine.csv",
            "export_uri": "s3://p2-data/runs/p2-wine-1fe63d079def-m6-n200",
            "params_json": '{"n_estimators": 200, "max_depth": 6}',
            "origin_json": '{"dag_id": "p2_train", "dag_run_id": "asset_triggered__2026-03-01T04:00:05+00:00_x"}',
        }


def pod() -> dict:
    bag, _ = parse()
    task = bag.dags["p2_train"].get_task("submit_pipeline")
    task.arguments = task.render_template(task.arguments, {"ti": _TaskInstance()})
    spec = task.build_pod_request_obj(dry_run=True)  # no cluster, no kube config
    container = spec.spec.containers[0]
    return {
        "operator": type(task).__name__,
        "upstream": sorted(task.upstream_task_ids),
        "namespace": spec.metadata.namespace,
        "labels": spec.metadata.labels,
        "image": container.image,
        "command": container.command,
        "args": container.args,
        "env": {e.name: e.value for e in container.env or []},
        "env_from": [e.secret_ref.name for e in container.env_from or [] if e.secret_ref],
        "resources": {"requests": container.resources.requests, "limits": container.resources.limits},
        "do_xcom_push": task.do_xcom_push,
        "sidecars": [c.name for c in spec.spec.containers[1:]],
    }


if __name__ == "__main__":
    print(json.dumps({"structure": structure, "pod": pod}[sys.argv[1]](), default=str))
