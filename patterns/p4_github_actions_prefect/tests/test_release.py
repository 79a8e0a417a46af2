"""What a release is (release.py), with no server and no Docker: its id from
the commit CI names or from git, the files it holds, and a source snapshot
that, once published, never changes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import release
from conftest import SHA
from errors import P4Error

PATTERN = Path(__file__).resolve().parents[1]


@pytest.fixture
def folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A copy of this folder's release files outside any git checkout, which
    release.py then treats as the pattern folder."""
    copy = tmp_path / "p4"
    for name in release.release_files():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PATTERN / name, copy / name)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # git stops here: no checkout above
    monkeypatch.setattr(release, "PATTERN_DIR", copy)
    return copy


def git(folder: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, check=True).stdout.strip()


def test_a_release_holds_the_code_lock_and_data_and_nothing_a_developer_left_around():
    files = release.release_files()
    assert {p.name for p in PATTERN.glob("*.py")} <= set(files)  # every module, including new ones
    assert {"prefect.yaml", "pyproject.toml", "uv.lock", "Dockerfile", ".dockerignore"} <= set(files)
    assert {"data/wine.csv", "data/batch.csv"} <= set(files)
    assert not [f for f in files if f.startswith(("tests/", ".state/", ".venv/", ".env")) or f.endswith(".md")]


def test_a_new_module_is_in_the_release_and_local_leftovers_are_not(folder: Path):
    for leftover in ("helpers.py", "README.md", ".env", "tests/test_more.py", ".state/build/x.py", "data/notes.txt"):
        (folder / leftover).parent.mkdir(parents=True, exist_ok=True)
        (folder / leftover).write_text("x = 1\n")
    files = release.release_files()
    assert "helpers.py" in files
    assert not {"README.md", ".env", "tests/test_more.py", ".state/build/x.py", "data/notes.txt"} & set(files)


def test_the_commit_ci_names_is_the_release(settings):
    one = release.identify(settings(P4_GIT_SHA=SHA))
    assert (one.id, one.git_sha, one.dirty) == (SHA, SHA, False)
    assert one.files == tuple(release.release_files()) and len(one.content_sha256) == 64
    assert release.identify(settings()) == one, "the same files and commit are the same release"
    github = "fedcba9876543210fedcba9876543210fedcba98"
    assert release.identify(settings(P4_GIT_SHA=None, GITHUB_SHA=github)).id == github  # GitHub Actions' variable


@pytest.mark.parametrize("given", ["abc1234", SHA.upper(), SHA + "0", "g" * 40])
def test_a_sha_that_is_not_a_full_lower_case_commit_is_refused(settings, given):
    with pytest.raises(P4Error, match="is not a full 40-character git commit SHA") as refused:
        release.identify(settings(P4_GIT_SHA=given))
    assert "git rev-parse HEAD" in refused.value.fix


def test_from_git_the_release_is_head_and_dirty_only_when_a_release_file_changed(settings, folder: Path):
    s = settings(P4_GIT_SHA=None)
    git(folder, "init", "--quiet")
    git(folder, "add", "--all")
    git(folder, "commit", "--quiet", "-m", "release")
    head = git(folder, "rev-parse", "HEAD")
    clean = release.identify(s)
    assert (clean.id, clean.git_sha, clean.dirty) == (head, head, False)

    (folder / "README.md").write_text("notes\n")  # not a release file: the same release
    assert release.identify(s).id == head

    (folder / "flow.py").write_text((folder / "flow.py").read_text() + "\n# a change\n")
    dirty = release.identify(s)
    assert dirty.dirty and dirty.git_sha == head and dirty.content_sha256 != clean.content_sha256
    assert dirty.id == f"{head}-dirty.{dirty.content_sha256[:8]}"


def test_outside_git_the_release_is_named_by_its_content(settings, folder: Path):
    found = release.identify(settings(P4_GIT_SHA=None))
    assert found.git_sha is None and found.dirty
    assert found.id == f"src.{found.content_sha256[:12]}"


def test_no_build_recorded_names_the_build_stage(settings):
    with pytest.raises(P4Error, match="no release has been built here") as missing:
        release.recorded(settings())
    assert "python release.py build" in missing.value.fix


def test_a_source_release_is_published_read_only_once_and_never_changes(settings, folder: Path, capsys):
    s = settings(P4_BUILD="source")
    built = release.build(s)
    assert (built["release"], built["mode"], built["work_pool"]) == (SHA, "source", "p4-process")
    assert built["artifact"] == f"source:{SHA}" and built["git_sha"] == SHA
    pushed = release.push(s, built)
    published = Path(pushed["code_dir"])
    assert published == s.releases / SHA and pushed["pushed"] is True
    manifest = json.loads((published / "RELEASE.json").read_text())
    assert manifest["release"] == SHA and manifest["content_sha256"] == built["content_sha256"]
    assert manifest["files"] == release.release_files()
    assert (published / "flow.py").read_bytes() == (folder / "flow.py").read_bytes()
    writable = [p for p in [published, *published.rglob("*")] if p.stat().st_mode & 0o222]
    assert not writable, f"a run could change its release: {writable[:3]}"
    assert release.recorded(s) == built | pushed, "deploy and run read what build and push did"

    # Idempotent: the build stage and `prefect deploy`'s build steps do the work once.
    capsys.readouterr()
    assert release.push(s, release.build(s)) == pushed
    progress = capsys.readouterr().err
    assert "already built" in progress and "already published" in progress

    # The same release id with other content (a forced P4_GIT_SHA) is refused.
    (folder / "flow.py").write_text((folder / "flow.py").read_text() + "\n# changed after publishing\n")
    changed = release.build(s)
    assert changed["release"] == SHA and changed["content_sha256"] != built["content_sha256"]
    with pytest.raises(P4Error, match=f"already holds release {SHA} with different content") as refused:
        release.push(s, changed)
    assert "releases are immutable" in refused.value.fix
    assert json.loads((published / "RELEASE.json").read_text()) == manifest


def test_prefect_yaml_calls_the_build_and_push_steps_by_these_names():
    from prefect.deployments.steps.core import _get_function_for_step

    steps = (PATTERN / "prefect.yaml").read_text()
    assert "release.build_step:" in steps and "release.push_step:" in steps
    assert _get_function_for_step("release.build_step") is release.build_step
    assert _get_function_for_step("release.push_step") is release.push_step
