"""The run's output contract: the Result line the README shows, the tests
grep and bench/ parses; and the errors a user can fix mapped to one."""

from __future__ import annotations

import pickle
import re
from dataclasses import asdict

from conftest import PATTERN_DIR
from mlflow.exceptions import MlflowException

from errors import P1Error, explain
from report import FAILED, Outcome, add_links, result_line, summary
from settings import P1Settings


def outcome() -> dict:
    return asdict(
        Outcome(
            decision="promoted",
            reason="no champion yet: the first model becomes champion",
            mlflow_run_id="e6be93b6ceab425ab48eda698ece0723",
            model_version="1",
            champion_version="1",
            metrics={"roc_auc": 0.99371, "f1": 0.97},
            data_md5="106c40cb3d7e70102bdce451c97db272",
            prefect_flow_run_id="0fdc1cd0-bbb6-4d70-9513-6a8fbba6e4a3",
            predictions=143,
        )
    )


def test_the_result_line() -> None:
    settings = P1Settings(_env_file=None, P1_MODEL_NAME="p1-breast-cancer")
    assert result_line(settings, outcome()) == (
        "Result: pattern=p1 status=ok decision=promoted model=p1-breast-cancer version=1 champion=1 "
        "roc_auc=0.9937 mlflow_run=e6be93b6ceab425ab48eda698ece0723 "
        "prefect_flow_run=0fdc1cd0-bbb6-4d70-9513-6a8fbba6e4a3 data_md5=106c40cb3d7e70102bdce451c97db272 "
        "predictions=143 trigger=none"
    )
    kept = outcome() | {"decision": "kept-champion", "model_version": ""}
    assert " version=none " in result_line(settings, kept)
    triggered = outcome() | {"trigger_event": "p1.data.published:0b4c0d8e-3f61-4f51-9a53-1c8d2b7a9f10"}
    assert result_line(settings, triggered).endswith(" trigger=p1.data.published:0b4c0d8e-3f61-4f51-9a53-1c8d2b7a9f10")
    assert FAILED == "Result: pattern=p1 status=failed"


def test_the_readme_shows_the_same_fields_in_the_same_order() -> None:
    readme = (PATTERN_DIR / "README.md").read_text()
    shown = re.search(r"^Result: (.*)$", readme, re.MULTILINE).group(1)
    settings = P1Settings(_env_file=None, P1_MODEL_NAME="p1-breast-cancer")
    printed = result_line(settings, outcome()).removeprefix("Result: ")
    assert [f.split("=")[0] for f in shown.split()] == [f.split("=")[0] for f in printed.split()]
    assert "Pattern 1 finished." in readme and "Pattern 1 finished." in summary(settings, outcome())


def test_the_links_point_at_the_uis() -> None:
    settings = P1Settings(
        _env_file=None,
        P1_MODEL_NAME="p1-breast-cancer",
        P1_MLFLOW_TRACKING_URI="http://127.0.0.1:5000/",
        P1_PREFECT_API_URL="http://127.0.0.1:4200/api",
    )
    outcome = Outcome(mlflow_run_id="e6be93b6", champion_version="2", prefect_flow_run_id="0fdc1cd0")
    add_links(outcome, settings, "1")
    assert outcome.mlflow_run_url == "http://127.0.0.1:5000/#/experiments/1/runs/e6be93b6"
    assert outcome.model_url == "http://127.0.0.1:5000/#/models/p1-breast-cancer/versions/2"
    assert outcome.prefect_flow_run_url == "http://127.0.0.1:4200/runs/flow-run/0fdc1cd0"


def test_errors_keep_the_problem_and_the_fix_through_pickling() -> None:
    error = P1Error("the problem", "the fix")
    assert error.render() == "error: the problem\n  fix: the fix"
    copy = pickle.loads(pickle.dumps(error))  # Prefect may pickle a failed task's exception
    assert (copy.problem, copy.fix) == ("the problem", "the fix")


def test_an_mlflow_failure_mid_run_is_explained() -> None:
    error = explain(MlflowException("API request failed"), "http://127.0.0.1:5000")
    assert error is not None
    assert error.problem.startswith("the MLflow tracking server at http://127.0.0.1:5000 failed mid-run")
    assert "an unfinished run is never reused" in error.fix


def test_other_errors_are_not_explained_away() -> None:
    assert explain(ValueError("a bug")) is None
    error = P1Error("a", "b")
    assert explain(error) is error
