"""The contract between the DAG and the KFP environment, without running
either: the run name (the KFP run's idempotency key, one per dataset content
and parameters), which asset event a training run trains on, where the run
record goes, submit.py's arguments, and how its answer is read back."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import handoff
import pytest

from errors import P2Error
from settings import P2Settings

DAY = datetime(2026, 3, 1, tzinfo=UTC)


SHA = "1fe63d079def" + "0" * 52


def test_run_name_is_one_per_dataset_content_and_parameters() -> None:
    name = handoff.run_name(SHA, {"n_estimators": 200, "max_depth": 6})
    assert name == "p2-wine-1fe63d079def-m6-n200"  # KFP-safe: lower case, digits, dashes
    assert handoff.run_name(SHA, {"max_depth": 6, "n_estimators": 200}) == name  # a retry finds it
    assert handoff.run_name("f" * 64, {"n_estimators": 200, "max_depth": 6}) != name  # other data
    assert handoff.run_name(SHA, {"n_estimators": 1, "max_depth": 1}) != name  # other parameters


class Event:
    def __init__(self, uri: str, params: dict | None = None):
        self.extra = {"dataset_uri": uri} | ({"train_params": params} if params else {})


def test_the_training_run_takes_the_newest_triggering_event_and_its_params() -> None:
    wine = object()
    old, new = Event("s3://b/ds=1", {"n_estimators": 5}), Event("s3://b/ds=2", {"n_estimators": 1, "max_depth": 1})
    context = {"triggering_asset_events": {wine: [old, new]}, "params": {"n_estimators": 200, "max_depth": 6}}
    event, params = handoff.dataset_event(context, wine, "p2_train")
    assert event is new and params == {"n_estimators": 1, "max_depth": 1}


def test_a_manual_training_run_takes_the_newest_event_of_the_asset_and_its_own_params() -> None:
    wine = type("A", (), {"uri": "s3://b/datasets/wine"})()
    newest = Event("s3://b/ds=2", {"n_estimators": 1})
    context = {"triggering_asset_events": {}, "inlet_events": {wine: [Event("s3://b/ds=1"), newest]}}
    event, params = handoff.dataset_event(context | {"params": {"n_estimators": 7}}, wine, "p2_train")
    assert event is newest and params == {"n_estimators": 7}
    with pytest.raises(P2Error, match="no asset event of s3://b/datasets/wine to train on") as err:
        handoff.dataset_event(context | {"inlet_events": {wine: []}, "params": {}}, wine, "p2_train")
    assert "run the ETL DAG first" in str(err.value)


def test_the_run_record_lives_under_the_run_name() -> None:
    settings = P2Settings(_env_file=None, P2_BUCKET="my-bucket")
    assert handoff.export_uri(settings, "p2-airflow-kfp-20260301t000000") == (
        "s3://my-bucket/runs/p2-airflow-kfp-20260301t000000"
    )


def test_submit_arguments_carry_the_load_tasks_request() -> None:
    request = {
        "run_name": "r",
        "dataset_uri": "s3://b/datasets/wine/ds=2026-03-01/wine.csv",
        "export_uri": "s3://b/runs/r",
        "params_json": json.dumps({"n_estimators": 5, "max_depth": 0}),
    }
    args = handoff.submit_arguments(request, P2Settings(_env_file=None, P2_PIPELINE_TIMEOUT="42"))
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags == {
        "--run-name": "r",
        "--dataset-uri": request["dataset_uri"],
        "--export-uri": "s3://b/runs/r",
        "--params-json": request["params_json"],
        "--origin-json": "{}",  # no lineage given: an empty object, not a missing flag
        "--timeout": "42.0",
    }


def test_the_last_result_line_is_the_answer() -> None:
    first = {"run_name": "r", "state": "FAILED", "error": "an earlier attempt"}
    last = {"run_name": "r", "state": "SUCCEEDED", "run_id": "local-1", "reused": False}
    output = "\n".join(
        ["component log", handoff.RESULT_PREFIX + json.dumps(first), handoff.RESULT_PREFIX + json.dumps(last)]
    )
    assert handoff.parse_result(output, "r") == last


def test_no_result_line_fails_with_the_output_and_the_fix() -> None:
    with pytest.raises(P2Error) as failed:
        handoff.parse_result("Traceback ...\nModuleNotFoundError: No module named 'kfp'", "r")
    assert "submit.py gave no result for r" in failed.value.problem
    assert "No module named 'kfp'" in failed.value.problem
    assert "uv sync --locked --project pipeline" in failed.value.fix


def test_a_failed_run_fails_the_task_with_the_components_error() -> None:
    line = handoff.RESULT_PREFIX + json.dumps({"run_name": "r", "state": "FAILED", "error": "ValueError: boom"})
    with pytest.raises(P2Error) as failed:
        handoff.parse_result(line, "r")
    assert failed.value.problem == "the KFP run r failed: ValueError: boom"
    assert "nothing was published" in failed.value.fix


def test_a_missing_kfp_interpreter_is_named_with_the_fix(tmp_path) -> None:
    settings = P2Settings(_env_file=None, P2_KFP_PYTHON=str(tmp_path / "no" / "python"))
    with pytest.raises(P2Error) as failed:
        handoff.submit_local({"run_name": "r"}, settings)
    assert "does not exist" in failed.value.problem and "uv sync --locked --project" in failed.value.fix


VERTEX = {
    "P2_KFP_MODE": "vertex",
    "P2_VERTEX_PROJECT": "my-project",
    "P2_VERTEX_REGION": "europe-west4",
    "P2_VERTEX_PIPELINE_ROOT": "gs://my-bucket/p2-root",
}


def test_vertex_mode_submits_the_same_run_from_the_kfp_environment_to_vertex() -> None:
    """P2_KFP_MODE=vertex: the subprocess submit, aimed at Vertex AI (the job
    itself: pipeline/tests/test_vertex.py)."""
    settings = P2Settings(_env_file=None, **VERTEX)
    assert settings.mode == "vertex"
    assert handoff.mode_arguments(settings) == [
        "--mode", "vertex", "--pipeline-root", "gs://my-bucket/p2-root",
        "--project", "my-project", "--region", "europe-west4", "--service-account", "",
    ]  # fmt: skip
    local = P2Settings(_env_file=None, P2_KFP_HOST="")
    assert handoff.mode_arguments(local) == ["--mode", "local", "--pipeline-root", str(local.kfp_local_root)]


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ({"P2_VERTEX_PROJECT": ""}, "P2_KFP_MODE=vertex needs P2_VERTEX_PROJECT"),
        ({"P2_VERTEX_REGION": "", "P2_VERTEX_PIPELINE_ROOT": ""}, "needs P2_VERTEX_REGION, P2_VERTEX_PIPELINE_ROOT"),
        ({"P2_VERTEX_PIPELINE_ROOT": "s3://b/root"}, "must be a gs:// URI"),
    ],
)
def test_an_incomplete_vertex_setting_is_refused_naming_the_variables(missing: dict, message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        P2Settings(_env_file=None, **(VERTEX | missing))
