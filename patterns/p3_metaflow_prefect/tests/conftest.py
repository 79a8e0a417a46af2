"""Every fast test starts from the same settings, whatever the folder's `.env`
or the caller's shell holds: a copy of this folder pointed at real servers
(`cp .env.example .env`, then edited) must still pass them, with the same
golden keys."""

from __future__ import annotations

import os

import pytest

from settings import P3Settings

CALLER_PREFIXES = ("P3_", "PREFECT_", "S3_", "METAFLOW_", "AWS_")


@pytest.fixture(autouse=True)
def no_env_file_nor_caller_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(CALLER_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setitem(P3Settings.model_config, "env_file", None)
