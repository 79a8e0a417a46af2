"""Pattern 3's deployment overhead, run inside pattern 3's environment by
bench/run.py (workers must be polling the pool): the same training run, timed
twice, alternately, BENCH_REPEAT times each:

- direct: `python trainflow.py run ...` (Metaflow's CLI, as a user would run it);
- through the deployment: `run_deployment("p3-train-one/p3-train", ...)` from
  submission to the flow run's final state (worker pickup, process start, the
  Prefect flow, the same Metaflow command, result reporting).

Prints one JSON line: {"direct_s": [...], "deployment_s": [...]}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

P3 = Path(__file__).resolve().parents[1] / "patterns" / "p3_metaflow_prefect"
sys.path.insert(0, str(P3))

from settings import P3Settings, configure  # noqa: E402  (this folder, put on sys.path above)

PARAMS = {"n_estimators": 50, "max_depth": 8, "folds": 3, "seed": 0}


def direct(settings: P3Settings, data_url: str, data_version: str) -> float:
    from fencing import TRAINFLOW

    command = [sys.executable, str(TRAINFLOW), "--no-pylint", "run", "--data_url", data_url]
    command += ["--data_version", data_version] + [a for k, v in PARAMS.items() for a in (f"--{k}", str(v))]
    t0 = time.perf_counter()
    subprocess.run(command, env=os.environ | settings.metaflow_env(), check=True, capture_output=True)
    return time.perf_counter() - t0


def deployed(settings: P3Settings, data_url: str, data_version: str) -> float:
    from prefect.deployments import run_deployment

    from flow import CHILD_FLOW

    t0 = time.perf_counter()
    run = run_deployment(
        f"{CHILD_FLOW}/{settings.deployment}",
        parameters={"data_url": data_url, "data_version": data_version, **PARAMS},
        poll_interval=0.5,
    )
    seconds = time.perf_counter() - t0
    if not run.state.is_completed():
        raise SystemExit(f"deployment run {run.name} ended {run.state.type.value}: {run.state.message}")
    return seconds


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    os.chdir(P3)
    # Before Prefect and Metaflow are imported (below, inside the functions):
    # both read the environment once, at import.
    settings = configure()
    from dataset import publish_dataset

    data_url, data_version = publish_dataset(settings)
    out: dict[str, list[float]] = {"direct_s": [], "deployment_s": []}
    for _ in range(repeat):
        out["direct_s"].append(round(direct(settings, data_url, data_version), 3))
        out["deployment_s"].append(round(deployed(settings, data_url, data_version), 3))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
