"""The data side of pattern 1: the raw table, its schema, and DVC.

DVC owns the data version. The raw CSV is exported from the Wisconsin breast
cancer table that ships inside scikit-learn (nothing is downloaded), tracked
with `dvc add`, and pushed to the DVC remote on the S3 server; git holds only
the small `.dvc` pointer with the file's md5. The flow asks DVC for that
version and pulls the bytes from the remote.

New data starts a retraining: publishing a new version emits the Prefect
event `p1.data.published` naming it, and the `p1-retrain` deployment trains
on exactly that version (events.py).

    python data.py publish                    export the bundled CSV if it is missing, check it
                                              against the committed pointer, push it (no event)
    python data.py publish --batch NAME       derive a new batch from the bundled data (--seed,
                                              --shift), `dvc add` and push it, emit the event
    python data.py publish --data-file F.csv  your own file: `dvc add` and push it, emit the event
    python data.py version                    print the data version (md5) of the pointer
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

import events
from errors import P1Error
from settings import PATTERN_DIR, P1Settings, load_settings

TARGET = "target"
# The contract the flow validates: 30 numeric features and a 0/1 target
# (0 = malignant, 1 = benign, as scikit-learn ships it).
FEATURES = [
    f"{stat}_{name}"
    for stat in ("mean", "error", "worst")
    for name in (
        "radius",
        "texture",
        "perimeter",
        "area",
        "smoothness",
        "compactness",
        "concavity",
        "concave_points",
        "symmetry",
        "fractal_dimension",
    )
]


@dataclass(frozen=True)
class DataVersion:
    path: Path  # the tracked file
    pointer: Path  # its committed `.dvc` file
    md5: str  # DVC's content hash: the data version
    dvc_root: Path  # the DVC project that tracks it


def export_raw(path: Path) -> None:
    """Write the raw table deterministically, so re-exporting gives the same md5."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = FEATURES + [TARGET]
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside it, then renamed: a run reading the file never sees half of it.
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    frame.to_csv(partial, index=False, float_format="%.6g", lineterminator="\n")
    os.replace(partial, path)


# Derived batches: "new data" made from the bundled table, the same bytes for
# the same seed and shift. Git ignores their CSVs (data/batches/.gitignore): the
# command that made one makes it again, and DVC's remote holds the bytes. Their
# pointers stay visible (DVC refuses a git-ignored one): commit one to keep it.
BATCHES = PATTERN_DIR / "data" / "batches"
BATCH_ROWS = 400  # of the 569 bundled rows
BATCH_NOISE = 0.02  # Gaussian noise per feature, as a share of the feature's spread


def derive_batch(path: Path, seed: int, shift: float) -> None:
    """A sample of the bundled rows with a little measurement noise; `shift`
    scales every feature by 1 + shift, as a recalibrated instrument would
    (the labels stay: this data can be trained on)."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = FEATURES + [TARGET]
    rng = np.random.default_rng(seed)
    batch = frame.iloc[np.sort(rng.choice(len(frame), size=BATCH_ROWS, replace=False))].reset_index(drop=True)
    features = batch[FEATURES]
    noisy = features + rng.normal(0.0, 1.0, features.shape) * (BATCH_NOISE * features.std().to_numpy())
    batch[FEATURES] = noisy.clip(lower=0.0) * (1.0 + shift)  # every feature here is a size or a ratio: >= 0
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    batch.to_csv(partial, index=False, float_format="%.6g", lineterminator="\n")
    os.replace(partial, path)


def relative_name(path: Path) -> str:
    """The path an event carries: relative to this folder when inside it (so a
    run in another checkout of it finds the same file)."""
    path = path.resolve()
    return str(path.relative_to(PATTERN_DIR)) if path.is_relative_to(PATTERN_DIR) else str(path)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dvc_root_of(path: Path) -> Path:
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    start = path.parent
    while not start.exists() and start != start.parent:
        start = start.parent
    try:
        return Path(Repo.find_root(str(start)))
    except NotDvcRepoError as exc:
        raise P1Error(
            f"{path} is not inside a DVC project",
            "run `dvc init --subdir` in the folder that holds your data (the pattern "
            "folder ships one), then `dvc add` the file",
        ) from exc


def open_repo(root: Path, settings: P1Settings):
    """The DVC project with its remote pointed at this environment's S3.

    The committed `.dvc/config` names the remote and the local endpoint; the
    endpoint and credentials in use come from the settings, so the same pointer
    works against the local stack, the compose stack or a real S3.

    Two runs in one checkout take turns on the project's lock, as
    `dvc --wait-for-lock` does (without it DVC gives up after 3 s with
    "Unable to acquire lock", and a pull or push longer than that fails the other run).
    """
    from dvc.repo import Repo

    return Repo(
        str(root),
        # DVC's "site cache" (pickled hash caches, lock files) defaults to the shared,
        # world-writable /var/tmp/dvc: this user's cache folder instead. DVC_SITE_CACHE_DIR wins.
        config={"core": {"site_cache_dir": str(user_site_cache())}},
        remote_config={
            "endpointurl": settings.s3_endpoint_url,
            "access_key_id": settings.s3_access_key_id,
            "secret_access_key": settings.s3_secret_access_key,
        },
        _wait_for_lock=True,  # what the CLI's --wait-for-lock passes (dvc pinned in pyproject.toml)
    )


def user_site_cache() -> Path:
    """~/.cache/dvc-site (or under XDG_CACHE_HOME), created readable by this user only."""
    path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dvc-site"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def data_version(path: Path) -> DataVersion:
    """Read the data version from the committed pointer (no network needed)."""
    path = path.resolve()
    pointer = path.with_name(path.name + ".dvc")
    if not pointer.exists():
        if not path.exists():
            raise P1Error(
                f"data file {path} does not exist and no DVC pointer {pointer.name} tracks it",
                "pass an existing DVC-tracked file with --data-file (or P1_DATA_FILE), "
                "or run `python data.py publish`, which exports and pushes the bundled data set",
            )
        raise P1Error(
            f"data file {path} is not tracked by DVC (no {pointer.name} beside it)",
            f"run `dvc add {path.name}` and `dvc push` in {path.parent}, and commit the "
            "pointer, so every run can name its data version",
        )
    try:
        outs = yaml.safe_load(pointer.read_text())["outs"]
        md5 = next(o["md5"] for o in outs if o["path"] == path.name)
    except (TypeError, KeyError, StopIteration, yaml.YAMLError) as exc:
        raise P1Error(
            f"DVC pointer {pointer} is malformed or does not track {path.name}",
            f"restore it from git, or re-create it with `dvc add {path.name}`",
        ) from exc
    return DataVersion(path=path, pointer=pointer, md5=md5, dvc_root=dvc_root_of(path))


def resolve(data_file: str | None, data_md5: str | None, settings: P1Settings) -> DataVersion:
    """The version to train on or score: `data_file` (relative paths are this
    folder's, as events carry them; none: P1_DATA_FILE), and when `data_md5`
    is given (an event names it) exactly that version, or an error."""
    version = data_version(PATTERN_DIR / data_file if data_file else settings.data_file)
    if data_md5 and data_md5 != version.md5:
        raise P1Error(
            f"data version {data_md5} was asked for, but {version.pointer} names {version.md5}",
            f"publish that version of {version.path.name} again (`python data.py publish`), "
            "or ask for the version the pointer names",
        )
    return version


def remote_url(version: DataVersion, settings: P1Settings) -> str:
    """The URL of the DVC project's default remote, e.g. s3://dvc/p1_prefect_mlflow."""
    repo = open_repo(version.dvc_root, settings)
    try:
        name = repo.config["core"].get("remote")
        if not name:
            raise P1Error(
                f"the DVC project {version.dvc_root} has no default remote",
                "add one: `dvc remote add -d storage s3://YOUR-BUCKET/path`",
            )
        return repo.config["remote"][name]["url"]
    finally:
        repo.close()


def pull(version: DataVersion, settings: P1Settings) -> Path:
    """Make the working copy match the pointer, fetching from the remote if needed.

    A checkout this process cannot write (the compose tier mounts it read-only
    into the p1-retrain container) is left as it is: the version is fetched
    into a DVC project of its own under the temp folder (scratch_project) and
    read from there."""
    from dvc.exceptions import DvcException

    if not os.access(version.dvc_root, os.W_OK):
        version = scratch_project(version)
    repo = open_repo(version.dvc_root, settings)
    try:
        repo.pull(targets=[str(version.pointer)])
    except DvcException as exc:
        raise P1Error(
            f"DVC could not fetch {version.path.name} (md5 {version.md5}) from the remote "
            f"{remote_url(version, settings)} at {settings.s3_endpoint_url}: {exc}",
            "push the data first (`python data.py publish` does it for the bundled data set, "
            f"or `dvc push` in {version.dvc_root}), and check S3_ENDPOINT_URL and the S3 keys",
        ) from exc
    finally:
        repo.close()
    if not version.path.exists() or _md5(version.path) != version.md5:
        raise P1Error(
            f"after `dvc pull`, {version.path} does not match its pointer (md5 {version.md5})",
            f"run `dvc checkout {version.path.name}` in {version.path.parent}",
        )
    return version.path


def scratch_project(version: DataVersion) -> DataVersion:
    """The same version in a DVC project of its own, $TMPDIR/p1-dvc/<md5>: the
    checkout's DVC config (its remote) and a copy of the pointer, no git. Runs
    that pull one version share it and take turns on its lock (open_repo)."""
    root = Path(tempfile.gettempdir()) / "p1-dvc" / version.md5
    (root / ".dvc").mkdir(parents=True, exist_ok=True)
    config = (version.dvc_root / ".dvc" / "config").read_text()
    config = (
        config.replace("[core]", "[core]\n    no_scm = true", 1)
        if "[core]" in config
        else f"[core]\n    no_scm = true\n{config}"
    )
    pointer = root / version.pointer.name
    for path, text in ((root / ".dvc" / "config", config), (pointer, version.pointer.read_text())):
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(text)
        partial.replace(path)  # whole or not at all, when two runs write it at once
    return DataVersion(path=root / version.path.name, pointer=pointer, md5=version.md5, dvc_root=root)


def publish(settings: P1Settings) -> DataVersion:
    """Export the bundled data set if missing, and push it to the DVC remote.

    The export is deterministic, so it reproduces the committed pointer; if it
    does not (another scikit-learn changed the table), say so instead of
    silently re-versioning the data.
    """
    path = settings.data_file.resolve()
    pointer = path.with_name(path.name + ".dvc")
    root = dvc_root_of(path)
    repo = open_repo(root, settings)
    try:
        if not path.exists():
            export_raw(path)
        if not pointer.exists():
            repo.add(str(path))  # first time: create the pointer (commit it)
        version = data_version(path)
        if _md5(path) != version.md5:
            raise P1Error(
                f"{path} (md5 {_md5(path)}) differs from its committed pointer (md5 {version.md5})",
                f"if the change is intended, `dvc add {path.name}` and commit the pointer; "
                f"otherwise `dvc checkout {path.name}` restores the versioned data",
            )
        repo.commit(str(pointer), force=True)  # make sure the cache holds the bytes
        pushed = repo.push(targets=[str(pointer)])
    finally:
        repo.close()
    print(f"data {path.name} md5={version.md5} pushed={pushed} file(s) to the DVC remote")
    return version


def publish_new(path: Path, settings: P1Settings) -> DataVersion:
    """`dvc add` a file (a new version if its bytes changed) and push it."""
    path = path.resolve()
    if not path.is_file():
        raise P1Error(f"data file {path} does not exist", "pass the CSV to publish with --data-file")
    repo = open_repo(dvc_root_of(path), settings)
    try:
        # A derived batch is made again by its command: no "git add the pointer" hint for it.
        repo.scm_context.quiet = path.parent == BATCHES
        repo.add(str(path))
        version = data_version(path)
        pushed = repo.push(targets=[str(version.pointer)])
    finally:
        repo.close()
    print(f"data {relative_name(path)} md5={version.md5} pushed={pushed} file(s) to the DVC remote")
    return version


def announce(version: DataVersion) -> str:
    """Emit `p1.data.published` for a pushed version: p1-retrain's trigger trains on it."""
    emitted = events.emit(events.DATA_PUBLISHED, relative_name(version.path), version.md5)
    print(f"event {emitted.name} id={emitted.id} data_md5={version.md5}")
    return str(emitted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pattern 1 data: export, version, push; new data emits an event.")
    parser.add_argument("command", choices=["publish", "version"])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--batch", metavar="NAME", help="derive data/batches/NAME.csv from the bundled data")
    source.add_argument("--data-file", type=Path, help="a CSV of your own, inside this folder's DVC project")
    parser.add_argument("--seed", type=int, help="which rows and noise a --batch gets (default 1)")
    parser.add_argument("--shift", type=float, help="scale a --batch's features by 1 + SHIFT (default 0)")
    parser.add_argument("--no-event", action="store_true", help="push only: start no retraining")
    args = parser.parse_args(argv)
    if args.batch is not None and not args.batch.replace("-", "").replace("_", "").isalnum():
        parser.error(f"--batch {args.batch!r}: use letters, digits, - and _ (it names data/batches/NAME.csv)")
    if args.batch is None and (args.seed, args.shift) != (None, None):
        parser.error("--seed and --shift shape a derived batch: give --batch NAME too")
    seed, shift = (1 if args.seed is None else args.seed), (args.shift or 0.0)
    if shift <= -1:
        parser.error(f"--shift {shift}: must be above -1 (features are scaled by 1 + SHIFT)")
    settings = load_settings()
    try:
        if args.command == "version":
            print(data_version(args.data_file or settings.data_file).md5)
        elif args.batch is None and args.data_file is None:
            publish(settings)  # the bundled data set: set-up, no event
        else:
            path = args.data_file
            if args.batch is not None:
                path = BATCHES / f"{args.batch}.csv"
                derive_batch(path, seed, shift)
            version = publish_new(path, settings)
            if not args.no_event:
                announce(version)
    except P1Error as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
