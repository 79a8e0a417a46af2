"""One settings object: environment variables win (P1_X over the shared name),
defaults point at the local stack, and reading it has no side effect: the
command line exports it to the environment, importing the flow does not."""

from __future__ import annotations

import importlib

import pytest
from conftest import PATTERN_DIR
from pydantic import ValidationError

from errors import explain
from settings import P1Settings, load_settings


def test_defaults_point_at_the_local_stack(environ) -> None:
    settings = P1Settings(_env_file=None)
    assert settings.prefect_api_url == "http://127.0.0.1:4200/api"
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:5000"
    assert settings.s3_endpoint_url == "http://127.0.0.1:8333"
    assert settings.data_file == PATTERN_DIR / "data" / "raw" / "breast_cancer.csv"


def test_the_pattern_variable_wins_over_the_shared_one(environ) -> None:
    environ["MLFLOW_TRACKING_URI"] = "http://shared:5000"
    assert P1Settings(_env_file=None).mlflow_tracking_uri == "http://shared:5000"
    environ["P1_MLFLOW_TRACKING_URI"] = "http://mine:5000"
    assert P1Settings(_env_file=None).mlflow_tracking_uri == "http://mine:5000"


def test_a_bad_setting_names_the_variable_and_the_fix(environ) -> None:
    environ["P1_SERVE_PORT"] = "70000"
    with pytest.raises(ValidationError) as raised:
        P1Settings(_env_file=None)
    error = explain(raised.value)
    assert error is not None
    assert error.problem.startswith("invalid setting P1_SERVE_PORT='70000'")
    assert "in the environment or .env" in error.fix


def test_load_settings_exports_endpoints_and_turns_phoning_home_off(environ) -> None:
    environ["P1_PREFECT_API_URL"] = "http://prefect.example:4200/api"
    environ["P1_S3_ACCESS_KEY_ID"] = "my-key"
    load_settings()
    assert environ["PREFECT_API_URL"] == "http://prefect.example:4200/api"
    assert environ["AWS_ACCESS_KEY_ID"] == "my-key"
    assert environ["MLFLOW_DISABLE_TELEMETRY"] == "true" and environ["DO_NOT_TRACK"] == "true"


def test_logins_from_dot_env_reach_prefect_and_mlflow_clients(environ, tmp_path) -> None:
    """A copied folder's .env carries the servers' logins: load_settings hands them
    to Prefect's and MLflow's clients, which read only the environment."""
    env_file = tmp_path / ".env"
    env_file.write_text(
        "P1_PREFECT_API_AUTH_STRING=admin:s3cret\nP1_MLFLOW_TRACKING_USERNAME=admin\nP1_MLFLOW_TRACKING_PASSWORD=pw\n"
    )
    settings = P1Settings(_env_file=env_file)
    settings.export_to_environ()
    assert environ["PREFECT_API_AUTH_STRING"] == "admin:s3cret"
    assert (environ["MLFLOW_TRACKING_USERNAME"], environ["MLFLOW_TRACKING_PASSWORD"]) == ("admin", "pw")


def test_no_login_set_exports_none(environ) -> None:
    P1Settings(_env_file=None).export_to_environ()
    assert not {"PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} & set(environ)


def test_importing_the_pattern_changes_no_environment_variable(environ) -> None:
    """Each of the pattern's modules, executed again with none of the settings'
    variables set, sets none of them (Prefect and MLflow are imported already)."""
    before = dict(environ)
    modules = (
        "settings",
        "errors",
        "data",
        "checks",
        "integrity",
        "model",
        "serving",
        "report",
        "deploy",
        "cli",
        "flow",
    )
    for name in modules:
        importlib.reload(importlib.import_module(name))
    assert dict(environ) == before


# Prefect Cloud: the same code, two variables (README, "Scale out"); checked here, never called.
CLOUD = "https://api.prefect.cloud/api/accounts/0ff44498-d380-4d7b-bd68-9b52da03823f/workspaces/c8ab5a2f-b2a4-4ac5-9bc5-c6b7f4d1d3ec"


def test_prefect_cloud_is_asked_with_the_api_key_and_a_server_with_its_auth_string(environ) -> None:
    import checks

    environ.update(PREFECT_API_URL=CLOUD, PREFECT_API_KEY="pnu_example")
    assert checks.prefect_headers(P1Settings(_env_file=None)) == {"Authorization": "Bearer pnu_example"}
    environ.update(PREFECT_API_URL="http://127.0.0.1:4200/api", PREFECT_API_AUTH_STRING="admin:pw")
    assert checks.prefect_headers(P1Settings(_env_file=None)) == {"Authorization": "Basic YWRtaW46cHc="}


@pytest.mark.parametrize(
    ("given", "problem", "fix"),
    [
        ({"PREFECT_API_URL": CLOUD}, "PREFECT_API_KEY is not set", "set PREFECT_API_KEY"),
        (
            {"PREFECT_API_URL": "https://api.prefect.cloud/api", "PREFECT_API_KEY": "pnu_x"},
            "is not a Prefect Cloud workspace's API URL",
            "accounts/<account id>/workspaces/<workspace id>",
        ),
        (
            {"PREFECT_API_URL": CLOUD, "PREFECT_API_KEY": "pnu_x", "PREFECT_API_AUTH_STRING": "admin:pw"},
            "Prefect Cloud takes an API key",
            "unset it",
        ),
    ],
)
def test_a_prefect_cloud_setting_that_cannot_work_is_named_before_any_request(environ, given, problem, fix) -> None:
    import checks
    from errors import P1Error

    environ.update(given)
    with pytest.raises(P1Error) as failed:
        checks.check_prefect(P1Settings(_env_file=None))  # raises before asking: nothing listens there
    assert problem in failed.value.problem and fix in failed.value.fix
