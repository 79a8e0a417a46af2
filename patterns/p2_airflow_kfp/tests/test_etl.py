"""The ETL's transform contract (a `target` column, numeric values, integer
labels, exact duplicates dropped), extract's errors, and the lineage keys:
the data version (sha256) and the code version (git_commit)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import etl
import pytest

from errors import P2Error
from settings import PATTERN_DIR

WINE = PATTERN_DIR / "data" / "wine.csv"


def test_transform_keeps_the_bundled_wine_table_whole() -> None:
    text, facts = etl.transform(etl.extract(WINE))
    lines = text.splitlines()
    assert facts == {"rows": 178, "duplicates_dropped": 0, "columns": 14}
    assert lines[0].endswith(",target") and len(lines) == 179
    assert {line.rsplit(",", 1)[1] for line in lines[1:]} == {"0", "1", "2"}  # integer labels


def test_transform_drops_exact_duplicates_and_blank_lines() -> None:
    text, facts = etl.transform("a,b,target\n1,2.50,0\n\n1,2.5,0\n3,4,1.0\n")
    assert text == "a,b,target\n1,2.5,0\n3,4,1\n"
    assert facts == {"rows": 2, "duplicates_dropped": 1, "columns": 3}


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("a,b,label\n1,2,0\n", "has no 'target' column"),
        ("a,target\n1,0\n", "has no 'target' column"),  # one feature only
        ("a,b,target\n", "has a header but no rows"),
        ("a,b,target\n1,2,0\n1,2\n", "line 3 has 2 fields, the header 3"),
        ("a,b,target\n1,x,0\n", "line 2 has a non-numeric value"),
        ("a,b,target\n1,nan,0\n", "line 2 has NaN or infinite values"),
        ("a,b,target\n1,2,0.5\n", "line 2 has a non-integer class label 0.5"),
    ],
)
def test_transform_names_the_line_at_fault(raw: str, problem: str) -> None:
    with pytest.raises(P2Error) as failed:
        etl.transform(raw, source="src.csv")
    assert problem in failed.value.problem and failed.value.fix


def test_extract_errors_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(P2Error, match="does not exist") as missing:
        etl.extract(tmp_path / "nowhere.csv")
    assert "P2_SOURCE_FILE" in missing.value.fix
    (tmp_path / "empty.csv").write_text("  \n")
    with pytest.raises(P2Error, match="is empty"):
        etl.extract(tmp_path / "empty.csv")
    (tmp_path / "latin1.csv").write_bytes("a,target\ncaf\xe9,0\n".encode("latin-1"))
    with pytest.raises(P2Error, match="is not UTF-8 text"):
        etl.extract(tmp_path / "latin1.csv")


def test_one_dataset_key_per_logical_date() -> None:
    assert etl.dataset_key("2026-03-01") == "datasets/wine/ds=2026-03-01/wine.csv"
    assert etl.dataset_key("2026-03-01") != etl.dataset_key("2026-03-02")


def test_data_version_is_the_sha256_of_the_loaded_bytes() -> None:
    text = WINE.read_text()
    assert etl.data_sha256(text) == hashlib.sha256(text.encode()).hexdigest()


def test_git_commit_of_this_checkout_and_outside_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inside = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PATTERN_DIR, capture_output=True, text=True)
    if inside.returncode == 0:
        assert etl.git_commit().removesuffix("-dirty") == inside.stdout.strip()
    monkeypatch.setattr(etl, "PATTERN_DIR", tmp_path)  # not a git checkout
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert etl.git_commit() == "none (not a git checkout)"
