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


def _run(state: str, tasks: dict[str, str], xcom: dict) -> dict:
    return {"run_id": "manual__2026-03-01T00:00:00+00:00", "state": state, "tasks": tasks, "xcom": xcom}


def test_result_line_of_a_published_run() -> None:
    xcom = {
        "load": {"run_name": "p2-airflow-kfp-20260301t000000", "dataset_uri": "s3://p2-data/datasets/x.csv"},
        "submit_pipeline": {"run_name": "p2-airflow-kfp-20260301t000000", "run_id": "local-1", "reused": False},
        "collect_metrics": {"accuracy": 0.97777, "f1_macro": 0.9},
        "publish_model": {"published_uri": "s3://p2-data/published/ds=2026-03-01"},
    }
    tasks = {t: "success" for t in [*report.TASKS, "publish_model"]} | {"reject_model": "skipped"}
    outcome = report.outcome_of(_run("success", tasks, xcom), DAY, P2Settings(_env_file=None, P2_KFP_HOST=""))
    assert report.result_line(outcome) == (
        "Result: pattern=p2 status=ok decision=published mode=local logical_date=2026-03-01 "
        "kfp_run=p2-airflow-kfp-20260301t000000 kfp_run_id=local-1 reused=false accuracy=0.9778 "
        "dataset=s3://p2-data/datasets/x.csv published=s3://p2-data/published/ds=2026-03-01 failed_task=none "
        "dag_run=manual__2026-03-01T00:00:00+00:00"
    )


def test_result_line_names_the_first_task_that_failed() -> None:
    tasks = {"extract": "success", "transform": "failed", "load": "upstream_failed"}
    outcome = report.outcome_of(_run("failed", tasks, {}), DAY, P2Settings(_env_file=None, P2_KFP_HOST=""))
    fields = dict(f.split("=", 1) for f in report.result_line(outcome).removeprefix("Result: ").split())
    assert fields["status"] == "failed" and fields["decision"] == "none" and fields["failed_task"] == "transform"
    assert fields["kfp_run"] == fields["accuracy"] == fields["published"] == "none"
    rejected = {t: "success" for t in report.TASKS} | {"reject_model": "failed", "publish_model": "skipped"}
    outcome = report.outcome_of(_run("failed", rejected, {}), DAY, P2Settings(_env_file=None, P2_KFP_HOST=""))
    assert (outcome["decision"], outcome["failed_task"]) == ("rejected", "reject_model")
