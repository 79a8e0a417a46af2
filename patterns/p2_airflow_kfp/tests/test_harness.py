"""This repository's harness (not the pattern): the command line passes on
only the params a user gave, the REST mode's run id is one per logical date,
and the `Result:` line says what the run did."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from harness import cli, report, rest

from settings import P2Settings

DAY = datetime(2026, 3, 1, tzinfo=UTC)


def test_only_the_params_given_become_the_runs_conf() -> None:
    assert cli.parse_args(["--date", "2026-03-01"]) == (DAY, {})
    day, conf = cli.parse_args(["--date", "2026-03-01", "--max-depth", "0", "--min-accuracy", "0.5"])
    assert day == DAY and conf == {"max_depth": 0, "min_accuracy": 0.5}  # 0 is given, not dropped


def test_the_rest_run_id_is_one_per_logical_date() -> None:
    assert rest.dag_run_id(DAY) == rest.dag_run_id(datetime(2026, 3, 1, tzinfo=UTC))
    assert rest.dag_run_id(DAY) == "manual__2026-03-01T00:00:00+00:00"
    assert rest.dag_run_id(datetime(2026, 3, 2, tzinfo=UTC)) != rest.dag_run_id(DAY)
    with pytest.raises(ValueError, match="no time zone"):
        rest.dag_run_id(datetime(2026, 3, 1))


def test_xcom_values_from_the_api_decode_to_what_the_task_returned() -> None:
    assert rest.decode_xcom('{"a": 1}') == {"a": 1}
    assert rest.decode_xcom({"a": 1}) == {"a": 1}
    assert rest.decode_xcom("text") == "text"
    assert rest.decode_xcom("[not json") == "[not json"


ETL_RUN, TRAIN_RUN = "manual__2026-03-01T00:00:00+00:00", "asset_triggered__2026-11-26T21:42:35+00:00_x"
NAME = "p2-wine-1fe63d079def-m6-n200"


def _answer(etl_state: str, etl_tasks: dict, train_state: str | None, train_tasks: dict, xcom: dict) -> dict:
    etl = {"run_id": ETL_RUN, "run_type": "manual", "state": etl_state, "tasks": etl_tasks, "xcom": {}}
    etl["xcom"] = {k: v for k, v in xcom.items() if k in etl_tasks}
    train = None
    if train_state:
        train = {"run_id": TRAIN_RUN, "run_type": "asset_triggered", "state": train_state, "tasks": train_tasks}
        train["xcom"] = {k: v for k, v in xcom.items() if k in train_tasks}
    return {"etl": etl, "train": train, "asset_event": None}


ETL_OK = {"extract": "success", "transform": "success", "load": "success"}


def test_result_line_of_a_published_run_names_both_dag_runs() -> None:
    dataset = "s3://p2-data/datasets/wine/ds=2026-03-01/wine.csv"
    xcom = {
        "load": {"dataset_uri": dataset},
        "plan": {"run_name": NAME, "dataset_uri": dataset},
        "submit_pipeline": {"run_name": NAME, "run_id": "local-1", "reused": False},
        "collect_metrics": {"accuracy": 0.97777, "f1_macro": 0.9},
        "publish_model": {"published_uri": "s3://p2-data/published/ds=2026-03-01"},
    }
    train = {t: "success" for t in [*report.TASKS[3:], "publish_model"]} | {"reject_model": "skipped"}
    answer = _answer("success", ETL_OK, "success", train, xcom)
    outcome = report.outcome_of(answer, DAY, P2Settings(_env_file=None, P2_KFP_HOST=""))
    assert report.result_line(outcome) == (
        "Result: pattern=p2 status=ok decision=published mode=local logical_date=2026-03-01 "
        f"kfp_run={NAME} kfp_run_id=local-1 reused=false accuracy=0.9778 "
        f"dataset={dataset} published=s3://p2-data/published/ds=2026-03-01 failed_task=none "
        f"etl_run={ETL_RUN} train_run={TRAIN_RUN}"
    )
    assert "training run  p2_train " + TRAIN_RUN + " (asset_triggered)" in report.summary(
        outcome, 1.0, P2Settings(_env_file=None)
    )


def test_result_line_names_the_first_task_that_failed() -> None:
    tasks = {"extract": "success", "transform": "failed", "load": "upstream_failed"}
    answer = _answer("failed", tasks, None, {}, {})
    outcome = report.outcome_of(answer, DAY, P2Settings(_env_file=None, P2_KFP_HOST=""))
    fields = dict(f.split("=", 1) for f in report.result_line(outcome).removeprefix("Result: ").split())
    assert fields["status"] == "failed" and fields["decision"] == "none" and fields["failed_task"] == "transform"
    assert fields["kfp_run"] == fields["accuracy"] == fields["published"] == fields["train_run"] == "none"
    assert "no asset event: nothing trained" in report.summary(outcome, 1.0, P2Settings(_env_file=None))
    rejected = {t: "success" for t in report.TASKS[3:]} | {"reject_model": "failed", "publish_model": "skipped"}
    answer = _answer("success", ETL_OK, "failed", rejected, {})
    outcome = report.outcome_of(answer, DAY, P2Settings(_env_file=None, P2_KFP_HOST=""))
    assert (outcome["decision"], outcome["failed_task"]) == ("rejected", "reject_model")


def test_an_etl_run_that_started_no_training_run_is_a_failure() -> None:
    outcome = report.outcome_of(_answer("success", ETL_OK, None, {}, {}), DAY, P2Settings(_env_file=None))
    assert (outcome["status"], outcome["failed_task"]) == ("failed", "no-training-run")


def test_the_rerun_hint_names_the_run_that_failed() -> None:
    settings = P2Settings(_env_file=None, P2_AIRFLOW_API_URL="http://127.0.0.1:8080")
    answer = _answer("success", ETL_OK, "failed", {"submit_pipeline": "failed"}, {})
    hint = rest.rerun_hint(settings, answer)
    assert "The p2_train run " + TRAIN_RUN in hint and "/api/v2/dags/p2_train/dagRuns/" in hint
    answer = _answer("failed", {"load": "failed"}, None, {}, {})
    assert "/api/v2/dags/p2_etl/dagRuns/manual__2026-03-01T00%3A00%3A00%2B00%3A00/clear" in rest.rerun_hint(
        settings, answer
    )
