"""The two DAGs as Airflow imports them (local mode): their tasks and edges,
the Asset that hands data from the ETL DAG to the training DAG, the params
with their defaults and ranges (declared once), that parsing stays light, and
that the harness and the KFP pipeline agree with them."""

from __future__ import annotations

import copy
import sys
from pathlib import Path as Path

import pytest
import yaml
from harness import report, rest

from settings import PATTERN_DIR

ETL_CHAIN = ["extract", "transform", "load"]
TRAIN_CHAIN = ["plan", "submit_pipeline", "collect_metrics", "check_threshold"]
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


def edges(dag) -> set[tuple[str, str]]:
    return {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}


def test_the_etl_dag_is_daily_and_its_load_task_writes_the_asset(dag_module) -> None:
    dag = dag_module.ETL_DAG
    assert dag.dag_id == "p2_etl"  # bench/, infra/lineage/ and the harness query this id
    assert sorted(dag.task_ids) == sorted(ETL_CHAIN)
    assert edges(dag) == set(zip(ETL_CHAIN, ETL_CHAIN[1:], strict=False))
    assert dag.timetable.expression == "0 4 * * *"  # daily, P2_SCHEDULE
    assert dag.get_task("load").outlets == [dag_module.WINE]
    assert [t.task_id for t in dag.tasks if t.outlets] == ["load"]  # only a loaded dataset is announced
    assert dag.catchup is False and dag.max_active_runs == 1
    assert {t.retries for t in dag.tasks} == {0}  # a user-fixable error fails at once


def test_the_training_dag_is_scheduled_on_the_asset_not_on_a_clock(dag_module) -> None:
    from airflow.sdk import Asset

    dag = dag_module.TRAIN_DAG
    assert dag.dag_id == "p2_train"
    # the bucket is the settings' (a copied folder's .env names its own)
    bucket = dag_module.SETTINGS.bucket
    assert Asset(name="p2_wine", uri=f"s3://{bucket}/datasets/wine", group="p2") == dag_module.WINE
    assert type(dag.timetable).__name__ == "AssetTriggeredTimetable"
    assert list(dag.timetable.asset_condition.objects) == [dag_module.WINE]
    assert sorted(dag.task_ids) == sorted([*TRAIN_CHAIN, "publish_model", "reject_model"])
    assert set(zip(TRAIN_CHAIN, TRAIN_CHAIN[1:], strict=False)) <= edges(dag)
    assert {("check_threshold", "publish_model"), ("check_threshold", "reject_model")} <= edges(dag)
    assert dag.get_task("plan").inlets == [dag_module.WINE]  # a manual run reads the newest event
    assert type(dag.get_task("check_threshold")).__name__ == "_BranchPythonDecoratedOperator"
    assert dag.catchup is False and dag.max_active_runs == 1
    assert {t.retries for t in dag.tasks} == {0}


def test_without_a_schedule_the_etl_dag_only_runs_when_triggered(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import p2_airflow_kfp

    monkeypatch.setenv("P2_SCHEDULE", "")
    try:
        assert type(importlib.reload(p2_airflow_kfp).ETL_DAG.timetable).__name__ == "NullTimetable"
    finally:
        monkeypatch.delenv("P2_SCHEDULE")
        importlib.reload(p2_airflow_kfp)


def test_params_have_their_defaults_and_ranges(dag_module) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    # One declaration serves both DAGs: a trigger of p2_etl is validated against it.
    assert dag_module.ETL_DAG.params.dump() == dag_module.TRAIN_DAG.params.dump()
    params = copy.deepcopy(dag_module.TRAIN_DAG.params)  # resolve() keeps the value it checked
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
    params = dag_module.TRAIN_DAG.params
    for name in dag_module.TRAINING_PARAMS:
        assert inputs[name]["parameterType"] == "NUMBER_INTEGER"
        assert inputs[name]["defaultValue"] == params[name], name


def test_parsing_loads_nothing_heavy(dag_module) -> None:
    assert dag_module.loaded_by_parsing, "the DAG was imported before this module measured it"
    loaded = dag_module.loaded_by_parsing
    assert [m for m in loaded if m.split(".")[0] in HEAVY or m == PROVIDER or m.startswith(f"{PROVIDER}.")] == []


def test_the_harness_reads_these_dags(dag_module) -> None:
    assert (report.ETL_DAG_ID, report.TRAIN_DAG_ID) == (rest.ETL_DAG_ID, rest.TRAIN_DAG_ID)
    assert (report.ETL_DAG_ID, report.TRAIN_DAG_ID) == (dag_module.ETL_DAG_ID, dag_module.TRAIN_DAG_ID)
    assert Path(dag_module.__file__).name == report.DAG_FILE
    assert set(report.TASKS) <= set(dag_module.ETL_DAG.task_ids) | set(dag_module.TRAIN_DAG.task_ids)
