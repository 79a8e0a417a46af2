"""The data contract: the bundled export reproduces the committed DVC
pointer, the pointer gives the data version, and validation refuses bad
tables with the problem and the fix (the same cases the stack tests run
through DVC and S3)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from conftest import PATTERN_DIR, POINTER

import data
from checks import validate
from errors import P1Error

POINTER_MD5 = yaml.safe_load(POINTER.read_text())["outs"][0]["md5"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("raw") / "breast_cancer.csv"
    data.export_raw(path)
    return path


def rows(raw: Path) -> list[dict[str, str]]:
    with raw.open() as handle:
        return list(csv.DictReader(handle))


def write(path: Path, table: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    return path


def test_the_export_reproduces_the_committed_data_version(raw: Path) -> None:
    assert data._md5(raw) == POINTER_MD5


def test_the_pointer_gives_the_data_version() -> None:
    version = data.data_version(PATTERN_DIR / "data" / "raw" / "breast_cancer.csv")
    assert version.md5 == POINTER_MD5
    assert version.pointer == POINTER and version.dvc_root == PATTERN_DIR


def test_the_bundled_table_passes_validation(raw: Path) -> None:
    frame = validate.fn(raw, 0.05)
    assert frame.shape == (569, 31)
    assert list(frame.columns) == [*data.FEATURES, data.TARGET]


def _drop_column(table):
    return [{k: v for k, v in r.items() if k != "mean_texture"} for r in table]


def _non_numeric(table):
    table[4]["mean_radius"] = "abc"
    return table


def _many_nans(table):
    for i, row in enumerate(table):
        if i % 8 == 0:
            row["worst_area"] = ""
    return table


def _one_class(table):
    for row in table:
        row["target"] = "1"
    return table


def _missing_label(table):
    table[3]["target"] = ""
    return table


@pytest.mark.parametrize(
    "corrupt, problem",
    [
        (_drop_column, "lacks column(s) mean_texture"),
        (_non_numeric, "column 'mean_radius' has non-numeric values, e.g. 'abc' at row 6"),
        (_many_nans, "column 'worst_area' is 12.7% missing, above the limit of 5.0%"),
        (_one_class, "column 'target' must hold both classes 0 and 1, found [1]"),
        (_missing_label, "column 'target' is 0.2% missing, above the limit of 0.0%"),
    ],
)
def test_bad_tables_are_refused_with_the_problem_and_a_fix(raw: Path, tmp_path: Path, corrupt, problem: str) -> None:
    bad = write(tmp_path / "bad.csv", corrupt(rows(raw)))
    max_nan = 0.0 if corrupt is _missing_label else 0.05
    with pytest.raises(P1Error) as raised:
        validate.fn(bad, max_nan)
    assert problem in raised.value.problem
    assert raised.value.fix


def test_a_missing_label_within_the_nan_limit_is_still_refused(raw: Path, tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.csv", _missing_label(rows(raw)))
    with pytest.raises(P1Error, match="column 'target' has missing labels"):
        validate.fn(bad, 0.05)


def test_a_table_without_rows_or_not_a_csv_is_refused(raw: Path, tmp_path: Path) -> None:
    header_only = tmp_path / "empty.csv"
    header_only.write_text(raw.read_text().splitlines()[0] + "\n")
    with pytest.raises(P1Error, match="has no rows"):
        validate.fn(header_only, 0.05)
    nothing = tmp_path / "nothing.csv"
    nothing.write_bytes(b"")
    with pytest.raises(P1Error, match="is not a readable CSV"):
        validate.fn(nothing, 0.05)


def test_a_file_dvc_does_not_track_is_refused(tmp_path: Path) -> None:
    with pytest.raises(P1Error, match="does not exist and no DVC pointer nowhere.csv.dvc tracks it"):
        data.data_version(tmp_path / "nowhere.csv")
    untracked = tmp_path / "untracked.csv"
    untracked.write_text("a\n1\n")
    with pytest.raises(P1Error, match="is not tracked by DVC"):
        data.data_version(untracked)
    (tmp_path / "untracked.csv.dvc").write_text("outs: []\n")
    with pytest.raises(P1Error, match="is malformed or does not track untracked.csv"):
        data.data_version(untracked)


def test_two_runs_in_one_checkout_take_turns_on_the_dvc_lock(tmp_path: Path) -> None:
    """A second run waits for the first one's DVC operation instead of failing with
    "Unable to acquire lock" after DVC's 3 s (a pull or push can take longer)."""
    import threading
    import time
    from types import SimpleNamespace

    from dvc.repo import Repo

    Repo.init(str(tmp_path), no_scm=True).close()
    config = "[core]\n    no_scm = True\n    remote = storage\n['remote \"storage\"']\n    url = s3://dvc/p\n"
    (tmp_path / ".dvc" / "config").write_text(config)
    settings = SimpleNamespace(s3_endpoint_url="http://127.0.0.1:1", s3_access_key_id="k", s3_secret_access_key="s")
    first, second = data.open_repo(tmp_path, settings), data.open_repo(tmp_path, settings)
    held_for, taken_at = 4.0, []

    def take_turn() -> None:
        with second.lock:
            taken_at.append(time.monotonic())

    try:
        with first.lock:
            released_at = time.monotonic() + held_for
            waiter = threading.Thread(target=take_turn)
            waiter.start()
            time.sleep(held_for)
        waiter.join(timeout=30)
    finally:
        first.close()
        second.close()
    assert taken_at and taken_at[0] >= released_at - 0.1, "the second run did not wait for the lock"


def test_dvc_keeps_its_site_cache_in_this_users_cache_folder(tmp_path: Path, monkeypatch) -> None:
    """Not in the shared /var/tmp/dvc (mode 0777), where another user could plant
    the pickled hash caches DVC reads back."""
    from types import SimpleNamespace

    from dvc.repo import Repo

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DVC_SITE_CACHE_DIR", raising=False)
    Repo.init(str(tmp_path / "project"), no_scm=True).close()
    config = "[core]\n    no_scm = True\n    remote = storage\n['remote \"storage\"']\n    url = s3://dvc/p\n"
    (tmp_path / "project" / ".dvc" / "config").write_text(config)
    settings = SimpleNamespace(s3_endpoint_url="http://127.0.0.1:1", s3_access_key_id="k", s3_secret_access_key="s")
    repo = data.open_repo(tmp_path / "project", settings)
    try:
        assert Path(repo.site_cache_dir).is_relative_to(tmp_path / "cache" / "dvc-site")
    finally:
        repo.close()
    assert (tmp_path / "cache" / "dvc-site").stat().st_mode & 0o777 == 0o700
