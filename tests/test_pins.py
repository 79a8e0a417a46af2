"""The pins the registry forces on us, held in every lock that has Prefect.

prefect 3.8.8 is the newest installable here, and its server fails with
fastapi >= 0.155 (`Body() got an unexpected keyword argument 'min_items'`)
and <= 0.134; from fastapi 0.151 it answers 422 to the `"limit": null` that
its own client sends to list a pool's workers (`flow.deploy()`, `prefect
deploy`). The stack fixture proves the pair at run time (a Prefect server
starts, every pattern talks to it, and test_stack checks that call); this
test stops a lock from drifting out of the proven range unnoticed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from conftest import REPO

LOCKS = sorted(p for p in REPO.rglob("uv.lock") if not any(part.startswith(".") for part in p.relative_to(REPO).parts))


def versions(lock: Path) -> dict[str, tuple[int, ...]]:
    packages = tomllib.loads(lock.read_text())["package"]
    return {
        p["name"]: tuple(int(x) for x in p["version"].split(".")[:3] if x.isdigit()) for p in packages if "version" in p
    }


PREFECT_LOCKS = [lock for lock in LOCKS if "prefect" in versions(lock)]


def test_the_locks_with_prefect_are_the_ones_expected() -> None:
    """Collected, not skipped: a lock that gains or loses Prefect shows up here."""
    assert [str(lock.parent.relative_to(REPO)) for lock in PREFECT_LOCKS] == [
        "infra/compose/server",
        "infra/local",
        "patterns/p1_prefect_mlflow",
        "patterns/p3_metaflow_prefect",
        "patterns/p4_github_actions_prefect",
    ]


@pytest.mark.parametrize("lock", PREFECT_LOCKS, ids=lambda p: str(p.relative_to(REPO)))
def test_prefect_and_fastapi_pins(lock: Path) -> None:
    pinned = versions(lock)
    assert pinned["prefect"] == (3, 8, 8)
    assert (0, 149) <= pinned["fastapi"][:2] < (0, 151), f"fastapi {pinned['fastapi']} is outside the proven range"


def test_every_environment_has_a_lock() -> None:
    projects = sorted(
        p.parent for p in REPO.rglob("pyproject.toml") if not any(s.startswith(".") for s in p.relative_to(REPO).parts)
    )
    assert projects
    for project in projects:
        assert (project / "uv.lock").is_file(), f"{project.relative_to(REPO)} has no uv.lock"
