"""The settings object: the local stack's defaults, P2_* over the shared
names, the mode that follows from one variable, and the ranges it refuses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from settings import PATTERN_DIR, P2Settings


@pytest.fixture(autouse=True)
def no_shared_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("S3_ENDPOINT_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "KFP_HOST", "P2_KFP_HOST"):
        monkeypatch.delenv(name, raising=False)


def settings(**env: str) -> P2Settings:
    return P2Settings(_env_file=None, **env)


def test_defaults_point_at_the_local_stack_and_local_mode() -> None:
    s = settings(P2_KFP_HOST="")
    assert s.s3_endpoint_url == "http://127.0.0.1:8333" and s.bucket == "p2-data"
    assert s.source_file == PATTERN_DIR / "data" / "wine.csv"
    assert s.mode == "local" and s.airflow_api_url == ""
    assert s.dag_run_wait == s.pipeline_timeout + 300


def test_a_kfp_host_means_cluster_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KFP_HOST", "http://kfp.example:8888")  # the shared name
    assert P2Settings(_env_file=None).mode == "cluster"


def test_the_pattern_variable_wins_over_the_shared_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://shared:1")
    assert P2Settings(_env_file=None).s3_endpoint_url == "http://shared:1"
    monkeypatch.setenv("P2_S3_ENDPOINT_URL", "http://mine:2")
    assert P2Settings(_env_file=None).s3_endpoint_url == "http://mine:2"
    assert P2Settings(_env_file=None).s3_env()["AWS_ENDPOINT_URL_S3"] == "http://mine:2"


@pytest.mark.parametrize(
    "bad",
    [
        {"P2_PIPELINE_TIMEOUT": "0"},
        {"P2_DAG_PARSE_TIMEOUT": "-1"},
        {"P2_DAG_RUN_TIMEOUT": "0"},
        {"P2_CONNECT_TIMEOUT": "0"},
        {"P2_PIPELINE_TIMEOUT": "soon"},
    ],
)
def test_out_of_range_values_are_refused(monkeypatch: pytest.MonkeyPatch, bad: dict[str, str]) -> None:
    for name, value in bad.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        P2Settings(_env_file=None)


def test_airflow_runs_on_loopback_in_the_state_folder(tmp_path) -> None:
    env = settings(P2_STATE_DIR=str(tmp_path)).airflow_env()
    assert env["AIRFLOW_HOME"] == str(tmp_path.resolve() / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(PATTERN_DIR / "dags")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path.resolve() / 'airflow' / 'airflow.db'}"
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1" and env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
