"""Where the worker starts its flow runs: never in this folder, whose code a run
must not import; in P4_WORKER_DIR when a container has this folder read-only."""

from __future__ import annotations

from pathlib import Path

import pytest

import worker


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict:
    """What `worker.main` would exec, and in which folder, without starting it."""
    seen: dict = {}
    monkeypatch.setattr(worker.os, "chdir", lambda path: seen.setdefault("cwd", Path(path)))

    def execv(path: str, argv: list[str]) -> None:
        seen["argv"] = argv
        raise SystemExit(0)

    monkeypatch.setattr(worker.os, "execv", execv)
    return seen


def run(monkeypatch: pytest.MonkeyPatch, settings) -> None:
    monkeypatch.setattr(worker, "load_settings", lambda: settings)
    with monkeypatch.context() as patched:
        patched.setattr(worker.os, "environ", dict(worker.os.environ))  # main adds the flow runs' variables
        with pytest.raises(SystemExit):
            worker.main(["worker.py", "p4-worker"])


def test_flow_runs_start_in_the_state_folders_worker_folder_by_default(settings, started, monkeypatch, tmp_path):
    run(monkeypatch, settings())
    assert started["cwd"] == tmp_path / "state" / "worker"
    assert started["cwd"].is_dir()
    assert started["argv"][1:4] == ["worker", "start", "--pool"]


def test_a_worker_folder_of_its_own_is_used_and_the_state_folder_left_alone(settings, started, monkeypatch, tmp_path):
    run(monkeypatch, settings(P4_WORKER_DIR=str(tmp_path / "scratch")))
    assert started["cwd"] == tmp_path / "scratch"
    assert started["cwd"].is_dir()
    assert not (tmp_path / "state" / "worker").exists()
