"""Shared by this folder's fast tests: settings from the variables a test gives."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from settings import P4Settings

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., P4Settings]:
    """Settings from the variables a test gives (no .env, no P4_ variable of the
    caller, no GitHub Actions variable); a variable given as None is unset."""
    for name in [n for n in os.environ if n.startswith("P4_") or n in ("GITHUB_SHA", "GITHUB_REPOSITORY")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("P4_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("P4_GIT_SHA", SHA)

    def make(**env: str | None) -> P4Settings:
        for name, value in env.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        return P4Settings(_env_file=None)

    return make
