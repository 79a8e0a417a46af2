"""Grid parsing, the logical-run key, each child's idempotency key and the
tags that link Prefect and Metaflow: no service, no Prefect import."""

from __future__ import annotations

import subprocess

import pytest

import keys
from errors import P3Error
from keys import GridPoint, child_key, child_tags, git_commit, logical_run_key, metaflow_tags, parse_grid
from settings import P3Settings


def settings(**env: str) -> P3Settings:
    """Settings given explicitly (they win over the environment and .env)."""
    return P3Settings(
        **{"P3_METAFLOW_S3_ROOT": "s3://metaflow/p3", "P3_METAFLOW_METADATA_DIR": "/p3-golden/metadata"} | env
    )


# ---- the grid -------------------------------------------------------------------------
def test_grid_items_are_n_estimators_x_max_depth_with_0_for_no_limit() -> None:
    points = parse_grid("50x8, 100X0 ,50x16")
    assert points == [GridPoint(50, 8), GridPoint(100, 0), GridPoint(50, 16)]
    assert [p.label for p in points] == ["50x8", "100x0", "50x16"]


@pytest.mark.parametrize("text, item", [("50by8", "50by8"), ("50x8,", ""), ("50x8,x3", "x3"), ("50x8x2", "50x8x2")])
def test_a_malformed_grid_item_is_named_with_the_fix(text: str, item: str) -> None:
    with pytest.raises(P3Error) as caught:
        parse_grid(text)
    assert caught.value.problem == f"grid item {item!r} is not N_ESTIMATORSxMAX_DEPTH"
    assert caught.value.fix == "write it like 50x8,100x0 (0: no depth limit)"
    assert caught.value.render().startswith("error: grid item") and "\n  fix: " in caught.value.render()


def test_a_repeated_grid_point_is_refused() -> None:
    with pytest.raises(P3Error, match="repeats a point"):
        parse_grid("50x8,100x0,50X8")


def test_ranges_are_not_the_grids_business() -> None:
    """Out-of-range values pass: the Metaflow flow rejects them in `start`, naming its task."""
    assert parse_grid("0x8,5x-1") == [GridPoint(0, 8), GridPoint(5, -1)]


# ---- the logical run and the child keys -------------------------------------------------
DEPLOYMENT = "p3-train-one/p3-train"
DATA = "a" * 64


@pytest.mark.parametrize(
    ("grid", "folds", "seed", "run_key", "data", "expected"),
    [
        # Computed with the flow.py of main before issue 18 moved the key here:
        # a changed key would train every logical run again.
        ("50x8,100x8,50x16,100x0", 3, 0, "", DATA, "120433b0ffae7204"),
        ("100x0,50x16,100x8,50x8", 3, 0, "", DATA, "120433b0ffae7204"),
        ("50x8,100x8,50x16,100x0", 3, 0, "retrain", DATA, "7f8ff3056db47c26"),
        ("35x3,45x3", 5, 7, "", "b" * 64, "0b4e8af153665c10"),
    ],
)
def test_logical_run_key_is_stable(grid: str, folds: int, seed: int, run_key: str, data: str, expected: str) -> None:
    assert logical_run_key(settings(), data, parse_grid(grid), folds, seed, run_key, DEPLOYMENT) == expected


def test_every_input_of_a_logical_run_changes_its_key() -> None:
    points = parse_grid("50x8,100x0")
    base = logical_run_key(settings(), DATA, points, 3, 0, "", DEPLOYMENT)
    variants = [
        logical_run_key(settings(), "c" * 64, points, 3, 0, "", DEPLOYMENT),
        logical_run_key(settings(), DATA, parse_grid("50x8"), 3, 0, "", DEPLOYMENT),
        logical_run_key(settings(), DATA, points, 4, 0, "", DEPLOYMENT),
        logical_run_key(settings(), DATA, points, 3, 1, "", DEPLOYMENT),
        logical_run_key(settings(), DATA, points, 3, 0, "again", DEPLOYMENT),
        logical_run_key(settings(), DATA, points, 3, 0, "", "p3-train-one/other"),
        logical_run_key(settings(P3_METAFLOW_S3_ROOT="s3://other/p3"), DATA, points, 3, 0, "", DEPLOYMENT),
        logical_run_key(settings(P3_METAFLOW_METADATA_DIR="/elsewhere"), DATA, points, 3, 0, "", DEPLOYMENT),
    ]
    assert len({base, *variants}) == len(variants) + 1
    assert all(len(k) == 16 and int(k, 16) >= 0 for k in variants)


def test_child_key_and_tags() -> None:
    point = GridPoint(100, 0)
    assert child_key("120433b0ffae7204", point, 0) == "p3:120433b0ffae7204:100x0:0"
    assert child_key("120433b0ffae7204", point, 1) == "p3:120433b0ffae7204:100x0:1"
    assert child_tags("120433b0ffae7204", point) == ["p3", "p3-grid-100x0", "p3-run-120433b0ffae7204"]


def test_metaflow_tags_link_back_to_prefect_the_commit_and_the_worker() -> None:
    assert metaflow_tags("f1", "abc", "p3-worker-1-pid7") == [
        "prefect_flow_run_id:f1",
        "git_commit:abc",
        "prefect_worker:p3-worker-1-pid7",
    ]
    assert metaflow_tags("f1", "abc", "") == ["prefect_flow_run_id:f1", "git_commit:abc"]


# ---- the commit that ran ----------------------------------------------------------------
def test_git_commit_names_this_checkout() -> None:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=keys.PATTERN_DIR, capture_output=True, text=True)
    if done.returncode != 0:
        assert git_commit() == "none (not a git checkout)"
        return
    assert git_commit() in (done.stdout.strip(), f"{done.stdout.strip()}-dirty")


def test_git_commit_outside_a_checkout(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.setattr(keys, "PATTERN_DIR", tmp_path)
    assert git_commit() == "none (not a git checkout)"
