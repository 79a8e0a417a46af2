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
os.chdir(P3)

from prefect.deployments import run_deployment  # noqa: E402

import flow  # noqa: E402  (exports the settings before prefect and metaflow load)

PARAMS = {"n_estimators": 50, "max_depth": 8, "folds": 3, "seed": 0}


def direct(data_url: str, data_version: str) -> float:
    command = [sys.executable, str(flow.TRAINFLOW), "--no-pylint", "run", "--data_url", data_url]
    command += ["--data_version", data_version] + [a for k, v in PARAMS.items() for a in (f"--{k}", str(v))]
    t0 = time.perf_counter()
    subprocess.run(command, env=os.environ | flow.SETTINGS.metaflow_env(), check=True, capture_output=True)
    return time.perf_counter() - t0


def deployed(data_url: str, data_version: str) -> float:
    t0 = time.perf_counter()
    run = run_deployment(
        f"{flow.CHILD_FLOW}/{flow.SETTINGS.deployment}",
        parameters={"data_url": data_url, "data_version": data_version, **PARAMS},
        poll_interval=0.5,
    )
    seconds = time.perf_counter() - t0
    if not run.state.is_completed():
        raise SystemExit(f"deployment run {run.name} ended {run.state.type.value}: {run.state.message}")
    return seconds


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    data_url, data_version = flow.publish_dataset(flow.SETTINGS)
    out: dict[str, list[float]] = {"direct_s": [], "deployment_s": []}
    for _ in range(repeat):
        out["direct_s"].append(round(direct(data_url, data_version), 3))
        out["deployment_s"].append(round(deployed(data_url, data_version), 3))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
