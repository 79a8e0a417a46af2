"""The settings object: environment wins, the pattern's P3_ name over the
shared one, a bad value exits naming the variable, and configure() hands
the store to Metaflow and the API to Prefect."""

from __future__ import annotations

import os
import tempfile

import pytest

import settings as settings_module
from settings import P3Settings, configure, load_settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """No pattern or tool variable from the caller, no .env, os.environ restored after."""
    for name in list(os.environ):
        if name.startswith(("P3_", "PREFECT_", "S3_", "METAFLOW_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setattr(os, "environ", os.environ.copy())
    monkeypatch.setitem(P3Settings.model_config, "env_file", None)
    monkeypatch.setenv("P3_METAFLOW_METADATA_DIR", str(tmp_path / "metadata"))
    return tmp_path


def test_defaults_point_at_the_local_stack(clean_env) -> None:
    s = P3Settings()
    assert s.prefect_api_url == "http://127.0.0.1:4200/api"
    assert s.s3_endpoint_url == "http://127.0.0.1:8333"
    assert (s.metaflow_s3_root, s.metaflow_bucket) == ("s3://metaflow/p3", "metaflow")
    assert (s.work_pool, s.deployment) == ("p3-metaflow", "p3-train")
    assert s.data_file == settings_module.PATTERN_DIR / "data" / "digits.csv" and s.data_file.is_file()


def test_the_p3_name_wins_over_the_shared_one(clean_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://shared:1")
    assert P3Settings().s3_endpoint_url == "http://shared:1"
    monkeypatch.setenv("P3_S3_ENDPOINT_URL", "http://mine:2")
    assert P3Settings().s3_endpoint_url == "http://mine:2"


def test_the_store_root_is_normalised(clean_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P3_METAFLOW_S3_ROOT", "s3://bucket/some/prefix/")
    s = P3Settings()
    assert (s.metaflow_s3_root, s.metaflow_bucket) == ("s3://bucket/some/prefix", "bucket")
    env = s.metaflow_env()
    assert env["METAFLOW_DATASTORE_SYSROOT_S3"] == "s3://bucket/some/prefix/metaflow"
    assert env["METAFLOW_DATATOOLS_S3ROOT"] == "s3://bucket/some/prefix/data"
    # Its S3 client's staging folders go to the temp folder, not into this checkout.
    assert env["METAFLOW_TEMPDIR"] == env["METAFLOW_ARTIFACT_LOCALROOT"] == tempfile.gettempdir()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("P3_METAFLOW_S3_ROOT", "metaflow/p3", "P3_METAFLOW_S3_ROOT='metaflow/p3' must be an s3://bucket/prefix URL"),
        ("P3_METAFLOW_S3_ROOT", "s3:///p3", "must be an s3://bucket/prefix URL"),
        ("P3_HEARTBEAT_SECONDS", "10", "HEARTBEAT_SECONDS"),
        ("P3_CRASH_AFTER_SECONDS", "30", "CRASH_AFTER_SECONDS"),
        ("P3_CRASH_RESUBMITS", "6", "CRASH_RESUBMITS"),
        ("P3_FAN_OUT_TIMEOUT", "0", "FAN_OUT_TIMEOUT"),
        ("P3_WORKER_LIMIT", "0", "WORKER_LIMIT"),
    ],
)
def test_a_bad_setting_exits_naming_it_without_a_traceback(
    clean_env, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as caught:
        load_settings()
    text = str(caught.value.code)
    assert text.startswith("error: invalid setting ") and message in text
    assert text.endswith("\n  fix: correct it in the environment or .env")


def test_configure_exports_the_store_and_the_api(clean_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P3_PREFECT_API_URL", "http://prefect.example:4200/api")
    monkeypatch.setenv("P3_S3_ACCESS_KEY_ID", "key-1")
    monkeypatch.setenv("USER", "alice")
    s = configure()
    assert s.metaflow_metadata_dir.is_dir()
    assert os.environ["PREFECT_API_URL"] == "http://prefect.example:4200/api"
    assert os.environ["DO_NOT_TRACK"] == "true"
    assert os.environ["METAFLOW_DEFAULT_DATASTORE"] == "s3" and os.environ["METAFLOW_DEFAULT_METADATA"] == "local"
    assert os.environ["METAFLOW_DATASTORE_SYSROOT_LOCAL"] == str(clean_env / "metadata")
    assert os.environ["METAFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:8333"
    assert os.environ["AWS_ACCESS_KEY_ID"] == "key-1"
    assert os.environ["METAFLOW_USER"] == "alice"


def test_metaflow_never_runs_as_root(clean_env, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("METAFLOW_USER", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("USER", "root")
    assert P3Settings().metaflow_env()["METAFLOW_USER"] == "p3"
