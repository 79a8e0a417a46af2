"""The pre-flight's Prefect half for Prefect Cloud: the same code, two variables
(README, "Scale out"); checked here, never called."""

from __future__ import annotations

import pytest

import checks
from errors import P3Error
from settings import P3Settings

CLOUD = "https://api.prefect.cloud/api/accounts/0ff44498-d380-4d7b-bd68-9b52da03823f/workspaces/c8ab5a2f-b2a4-4ac5-9bc5-c6b7f4d1d3ec"


def test_prefect_cloud_is_asked_with_the_api_key_and_a_server_with_its_auth_string(monkeypatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", CLOUD)
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_example")
    assert checks.prefect_headers(P3Settings()) == {"Authorization": "Bearer pnu_example"}
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:pw")
    assert checks.prefect_headers(P3Settings()) == {"Authorization": "Basic YWRtaW46cHc="}


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
def test_a_prefect_cloud_setting_that_cannot_work_is_named_before_any_request(monkeypatch, given, problem, fix):
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(P3Error) as failed:
        checks.preflight(P3Settings())  # raises before asking anything
    assert problem in failed.value.problem and fix in failed.value.fix
