"""The digest that decides whether a model is loaded: any change to a file's bytes
or name changes it; MLflow's own registry note does not (no service needed)."""

from __future__ import annotations

from pathlib import Path

import integrity


def model_folder(root: Path) -> Path:
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "model.skops").write_bytes(b"\x00weights")
    return root


def test_the_digest_is_stable_and_ignores_the_registry_note(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    before = integrity.artifacts_digest(folder)
    (folder / "registered_model_meta").write_text("model_name: p1\n")
    assert integrity.artifacts_digest(folder) == before


def test_changed_bytes_an_added_file_or_a_rename_change_the_digest(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    before = integrity.artifacts_digest(folder)
    (folder / "model.skops").write_bytes(b"\x00weightz")
    changed = integrity.artifacts_digest(folder)
    (folder / "extra.py").write_text("print('hi')\n")
    added = integrity.artifacts_digest(folder)
    (folder / "extra.py").rename(folder / "other.py")
    assert len({before, changed, added, integrity.artifacts_digest(folder)}) == 4
