"""Pattern 1's fast tests: the pure logic and the contracts, no service running.

Run them from the pattern folder with `uv run pytest`. The stack tests (a
real Prefect, MLflow and S3) are the repository's tests/p1_prefect_mlflow/.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PATTERN_DIR = Path(__file__).resolve().parents[1]
POINTER = PATTERN_DIR / "data" / "raw" / "breast_cancer.csv.dvc"

# What settings.py reads or exports, so a test starts from none of them.
SETTINGS_VARIABLES = (
    "PREFECT_API_URL",
    "MLFLOW_TRACKING_URI",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_API_KEY",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "S3_ENDPOINT_URL",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MLFLOW_DISABLE_TELEMETRY",
    "DO_NOT_TRACK",
)


@pytest.fixture
def environ() -> Iterator[os._Environ]:
    """os.environ without the settings' variables, restored afterwards (the
    command line exports the settings into it)."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name in SETTINGS_VARIABLES or name.startswith("P1_"):
            del os.environ[name]
    try:
        yield os.environ
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if "prefect.context" in sys.modules:  # cli.configure() made Prefect re-read the environment
            sys.modules["prefect.context"].refresh_global_settings_context()
