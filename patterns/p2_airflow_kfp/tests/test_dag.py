"""The DAG as Airflow imports it (local mode): its tasks and edges, its params
with their defaults and ranges (declared once, on the DAG), that parsing
stays light, and that the harness and the KFP pipeline agree with it."""

from __future__ import annotations

import copy
import sys

import pytest
import yaml
from harness import report, rest

from settings import PATTERN_DIR

CHAIN = ["extract", "transform", "load", "submit_pipeline", "collect_metrics", "check_threshold"]
# kfp, scikit-learn, pandas, boto3 and the Kubernetes client and provider load only when a task runs.
HEAVY = ("kfp", "sklearn", "pandas", "boto3", "botocore", "kubernetes")
PROVIDER = "airflow.providers.cncf.kubernetes"


@pytest.fixture(scope="module")
def dag_module():
    import airflow.sdk  # noqa: F401  (Airflow's own imports, the DAG processor's before it parses a file)

    sys.path.insert(0, str(PATTERN_DIR / "dags"))  # what Airflow does for its DAGs folder
    before = set(sys.modules)
    import p2_airflow_kfp

    p2_airflow_kfp.loaded_by_parsing = sorted(set(sys.modules) - before)
    return p2_airflow_kfp


def test_tasks_and_edges(dag_module) -> None:
    dag = dag_module.DAG
    assert dag.dag_id == "p2_airflow_kfp"  # bench/ and infra/lineage/ query this id
    assert sorted(dag.task_ids) == sorted([*CHAIN, "publish_model", "reject_model"])
    edges = {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}
    assert set(zip(CHAIN, CHAIN[1:], strict=False)) <= edges
    assert {("check_threshold", "publish_model"), ("check_threshold", "reject_model")} <= edges
    assert type(dag.get_task("check_threshold")).__name__ == "_BranchPythonDecoratedOperator"
    assert dag.catchup is False and dag.max_active_runs == 1
    assert {t.retries for t in dag.tasks} == {0}  # a user-fixable error fails at once


def test_params_have_their_defaults_and_ranges(dag_module) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    params = copy.deepcopy(dag_module.DAG.params)  # resolve() keeps the value it checked
    assert {k: params[k] for k in params} == {"n_estimators": 200, "max_depth": 6, "min_accuracy": 0.9}
    for name, good, bad in [
        ("n_estimators", 1, 0),
        ("max_depth", 0, -1),  # 0: no depth limit
        ("min_accuracy", 1.0, 1.5),
        ("min_accuracy", 0.0, -0.1),
    ]:
        assert params.get_param(name).resolve(good) == good
        with pytest.raises(ParamValidationError):
            params.get_param(name).resolve(bad)
    with pytest.raises(ParamValidationError):
        params.get_param("n_estimators").resolve("many")


def test_the_dag_passes_the_pipeline_its_own_parameters(dag_module) -> None:
    """The training params the DAG passes on are parameters of the KFP
    pipeline (its committed IR, pipeline/p2_pipeline.yaml), with the same defaults."""
    ir = yaml.safe_load((PATTERN_DIR / "pipeline" / "p2_pipeline.yaml").read_text())
    inputs = ir["root"]["inputDefinitions"]["parameters"]
    params = dag_module.DAG.params
    for name in dag_module.TRAINING_PARAMS:
        assert inputs[name]["parameterType"] == "NUMBER_INTEGER"
        assert inputs[name]["defaultValue"] == params[name], name


def test_parsing_loads_nothing_heavy(dag_module) -> None:
    assert dag_module.loaded_by_parsing, "the DAG was imported before this module measured it"
    loaded = dag_module.loaded_by_parsing
    assert [m for m in loaded if m.split(".")[0] in HEAVY or m == PROVIDER or m.startswith(f"{PROVIDER}.")] == []


def test_the_harness_reads_this_dag(dag_module) -> None:
    assert report.DAG_ID == rest.DAG_ID == dag_module.DAG_ID
    assert set(report.TASKS) <= set(dag_module.DAG.task_ids)
