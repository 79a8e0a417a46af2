"""What names and links pattern 3's runs: the grid points, the logical-run key
that makes two fan-outs the same, each child flow run's idempotency key and
tags, and the Metaflow tags that point back at Prefect and at the code.

Pure functions, no service: the folder's fast tests (tests/test_keys.py) pin
them, because a changed key would train a logical run a second time.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass

from errors import P3Error
from settings import PATTERN_DIR, P3Settings

LINK_TAG = "prefect_flow_run_id"  # the Metaflow tag that points back at Prefect
GIT_TAG = "git_commit"  # the Metaflow tag naming the commit of the code that ran
WORKER_TAG = "prefect_worker"  # the Metaflow tag naming the Prefect worker that ran it


# ## The grid
@dataclass(frozen=True)
class GridPoint:
    n_estimators: int
    max_depth: int  # 0: no depth limit (trainflow.py turns it into scikit-learn's None)

    @property
    def label(self) -> str:
        return f"{self.n_estimators}x{self.max_depth}"


def parse_grid(text: str) -> list[GridPoint]:
    """`50x8,100x0` -> two points. Only the format is checked here: the ranges
    belong to the Metaflow flow, which rejects a bad value in its start step."""
    points = []
    for item in (i.strip() for i in text.split(",")):
        try:
            n_estimators, max_depth = item.lower().split("x")
            points.append(GridPoint(int(n_estimators), int(max_depth)))
        except ValueError:
            raise P3Error(
                f"grid item {item!r} is not N_ESTIMATORSxMAX_DEPTH", "write it like 50x8,100x0 (0: no depth limit)"
            ) from None
    if len(set(points)) != len(points):
        raise P3Error(f"the grid {text!r} repeats a point", "list each N_ESTIMATORSxMAX_DEPTH once")
    return points


# ## The logical run: what makes two fan-outs the same
def logical_run_key(
    s: P3Settings, data_version: str, points: list[GridPoint], folds: int, seed: int, run_key: str, deployment: str
) -> str:
    """A fan-out is one logical run per (dataset sha256, set of grid points,
    folds, seed, Metaflow store, deployment, run key). Each child flow run's
    Prefect idempotency key derives from it, so a second fan-out of the same
    logical run (at once, or later) gets the same child runs back instead of
    training them again: it waits for the ones in flight and reuses the ones
    that completed. `--run-key` names a new logical run (a fresh training).
    `deployment` is the child deployment's full name, `p3-train-one/p3-train`."""
    payload = {
        "data_sha256": data_version,
        "grid": sorted(p.label for p in points),
        "folds": folds,
        "seed": seed,
        "metaflow": [s.metaflow_s3_root, str(s.metaflow_metadata_dir.resolve())],
        "deployment": deployment,
        "run_key": run_key,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def child_key(logical: str, point: GridPoint, attempt: int) -> str:
    """The child flow run's idempotency key: this logical run, this grid point,
    this try. Prefect returns the existing flow run for a key it has seen."""
    return f"p3:{logical}:{point.label}:{attempt}"


def child_tags(logical: str, point: GridPoint) -> list[str]:
    """The child flow run's Prefect tags: every try of a grid point, and every
    child of a logical run, are found by tag."""
    return ["p3", f"p3-grid-{point.label}", f"p3-run-{logical}"]


def metaflow_tags(flow_run_id: str, commit: str, worker: str) -> list[str]:
    """The Metaflow run's tags: the Prefect flow run that started it, the
    commit of the code, and the worker (none when run in-process)."""
    return [f"{LINK_TAG}:{flow_run_id}", f"{GIT_TAG}:{commit}"] + ([f"{WORKER_TAG}:{worker}"] if worker else [])


def git_commit() -> str:
    """The commit of the code this run executes (`-dirty` when this folder has
    uncommitted changes), or 'none (not a git checkout)'."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PATTERN_DIR, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."],
            cwd=PATTERN_DIR,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "none (not a git checkout)"
    return f"{sha}-dirty" if dirty else sha
