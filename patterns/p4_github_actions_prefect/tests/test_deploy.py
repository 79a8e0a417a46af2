"""prefect.yaml's contract (deploy.py's validate, the pull request's dry run)
and the command line that runs it, with no server: every deployment loads
its flow with parameters in range, a broken prefect.yaml lists every problem."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import cli
from deploy import validate
from errors import P4Error

PATTERN = Path(__file__).resolve().parents[1]

BAD_PREFECT_YAML = """
deployments:
  - name: p4-retrain
    entrypoint: flow.py:retrain
    parameters: {n_estimators: 0, learning_rate: 0.1}
    work_pool: {name: p4-process}
  - name: p4-retrain
    entrypoint: flow.py:no_such_flow
    work_pool: {name: p4-process}
  - name: p4-batch-score
    entrypoint: flow.py:batch_score
    schedules: [{cron: "61 * * * *"}]
"""


def test_every_deployment_in_prefect_yaml_validates():
    names = {item["name"] for item in validate()}
    assert names == {"p4-retrain", "p4-batch-score"}


def test_a_broken_prefect_yaml_lists_every_problem(tmp_path: Path):
    bad = tmp_path / "prefect.yaml"
    bad.write_text(BAD_PREFECT_YAML)
    with pytest.raises(P4Error) as found:
        validate(bad)
    for finding in (
        "deployment name 'p4-retrain' is used twice",
        "parameters ['learning_rate'] are not parameters of flow 'p4-retrain'",
        "entrypoint 'flow.py:no_such_flow' does not load a flow",
        "schedule {'cron': '61 * * * *'} is invalid",
        "deployment 'p4-batch-score': no work_pool.name",
    ):
        assert finding in found.value.render(), found.value.render()
    bad.write_text(BAD_PREFECT_YAML.replace(", learning_rate: 0.1", ""))
    with pytest.raises(P4Error) as found:
        validate(bad)
    assert "do not fit flow 'p4-retrain'" in found.value.problem and "n_estimators" in found.value.problem


def test_a_step_that_does_not_import_and_a_missing_deployment_are_found(tmp_path: Path):
    bad = tmp_path / "prefect.yaml"
    bad.write_text(
        "build:\n  - release.no_such_step: {id: build}\n"
        "deployments:\n  - {name: p4-retrain, entrypoint: 'flow.py:retrain', work_pool: {name: p4-process}}\n"
    )
    with pytest.raises(P4Error) as found:
        validate(bad)
    assert "build step 'release.no_such_step' cannot be imported" in found.value.problem
    assert "declares 1 deployment(s); this pattern ships two" in found.value.problem
    assert found.value.fix == "fix the items listed"


@pytest.fixture
def cli_env(settings) -> Iterator[None]:
    """cli.main() sets PREFECT_API_URL and others in the process environment: put it back after the test."""
    settings()
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_the_validate_stage_prints_each_deployment_with_its_schedule(cli_env, capsys):
    assert cli.main(["validate"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ok  p4-retrain/p4-retrain  params={")
    assert out[0].endswith("schedule=0 3 * * 1") and '"min_accuracy": 0.85' in out[0]
    assert out[1] == 'ok  p4-batch-score/p4-batch-score  params={"batch_file": "data/batch.csv"}  schedule=on demand'


def test_prefect_going_away_mid_stage_is_an_error_with_the_fix(cli_env, capsys, monkeypatch):
    """A restart of the server while the run stage polls: the problem and the fix, exit 1, no traceback."""

    def refused(settings):
        raise httpx.ConnectError("[Errno 111] Connection refused")

    monkeypatch.setattr(cli, "run", refused)
    assert cli.main(["run"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the Prefect API at http") and "stopped answering during the run stage" in err
    assert "ConnectError: [Errno 111] Connection refused" in err and "fix: when it answers again" in err
    assert "Traceback" not in err


def test_an_unknown_stage_is_a_usage_error(cli_env, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["ship"])
    assert stopped.value.code == 2 and "invalid choice: 'ship'" in capsys.readouterr().err


def test_release_py_is_the_command_the_makefile_and_ci_run():
    env = {k: v for k, v in os.environ.items() if not k.startswith("P4_")}
    done = subprocess.run(
        [sys.executable, "release.py", "validate"], cwd=PATTERN, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ok  p4-retrain/p4-retrain" in done.stdout and "ok  p4-batch-score/p4-batch-score" in done.stdout


# Prefect Cloud: the deploy job's two secrets (README, "Scale out"); checked here, never called.
CLOUD = "https://api.prefect.cloud/api/accounts/0ff44498-d380-4d7b-bd68-9b52da03823f/workspaces/c8ab5a2f-b2a4-4ac5-9bc5-c6b7f4d1d3ec"


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"PREFECT_API_URL": CLOUD, "PREFECT_API_KEY": None}, "PREFECT_API_KEY is not set"),
        ({"PREFECT_API_URL": "https://api.prefect.cloud/api/", "PREFECT_API_KEY": "pnu_x"}, "not a Prefect Cloud"),
        (
            {"PREFECT_API_URL": CLOUD, "PREFECT_API_KEY": "pnu_x", "PREFECT_API_AUTH_STRING": "admin:pw"},
            "Prefect Cloud takes an API key",
        ),
    ],
)
def test_a_prefect_cloud_setting_that_cannot_work_stops_the_stage_before_any_request(settings, given, problem):
    from deploy import check_prefect

    with pytest.raises(P4Error, match=problem):
        check_prefect(settings(**({"PREFECT_API_AUTH_STRING": None} | given)))  # make exports the stack's


def test_a_prefect_cloud_workspace_with_its_key_passes_the_settings_check(settings) -> None:
    from deploy import check_cloud

    assert check_cloud(settings(PREFECT_API_URL=CLOUD, PREFECT_API_KEY="pnu_x", PREFECT_API_AUTH_STRING=None)) is True
    assert check_cloud(settings(PREFECT_API_URL="http://127.0.0.1:4200/api")) is False
