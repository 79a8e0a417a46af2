"""Benchmarks of the compose tier: how long `make up STACK=compose` takes until
every service is healthy (`docker compose up --wait` returned).

    make bench-compose              BENCH_REPEAT=3 runs of each measure
    (part of `make bench`, after the local tier's measures)

What is timed (the whole `make up STACK=compose`, wall clock, every profile):

1. images cached, volumes kept: the stack was up, `make down` removed its
   containers; the restart of a working stack.
2. images cached, no volumes: `make compose-reset` removed containers and
   volumes; Postgres initialises, Prefect, MLflow and Airflow migrate.
3. from nothing: no project image, no base image, an empty wheelhouse, no
   volumes; on a machine with no registry this is debootstrap, the wheel
   downloads, every image build, then the first start.

Isolation: a compose project of its own (`hybrid-ml-patterns-bench`) on free
loopback ports, its state under .state/compose-bench, removed with its volumes
at the end. Measure 3 removes the project's images and the local base image:
it refuses to run while another container uses them (stop your own compose
stack first). The report goes to bench/results/compose-<UTC>.json and
bench/results/compose-latest.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime

from run import MAKE, RESULTS, ROOT, BenchError, Measure, _int_env, _port_free, _tail, git_commit, machine, render

PROJECT = "hybrid-ml-patterns-bench"
STATE = ROOT / ".state" / "compose-bench"
IMAGES_PREFIX = "hybrid-ml-patterns/"
BASE_IMAGE = "local/debian:bookworm"


def free_block(size: int, start: int = 23000) -> int:
    for base in range(start, 32000, size):
        if all(_port_free(p) for p in range(base, base + size)):
            return base
    raise BenchError(f"no {size} consecutive free ports on 127.0.0.1")


def bench_env() -> dict[str, str]:
    base = free_block(12)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STACK_", "COMPOSE_", "P3_", "P4_"))}
    env.update(
        STACK="compose",
        COMPOSE_PROJECT_NAME=PROJECT,
        COMPOSE_STATE_DIR=str(STATE),
        STACK_PREFECT_PORT=str(base),
        STACK_MLFLOW_PORT=str(base + 1),
        STACK_S3_PORT=str(base + 2),
        STACK_POSTGRES_PORT=str(base + 3),
        STACK_AIRFLOW_PORT=str(base + 4),
        STACK_SEAWEED_PORT_BASE=str(base + 5),
        PREFECT_API_URL=f"http://127.0.0.1:{base}/api",
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{base + 1}",
        S3_ENDPOINT_URL=f"http://127.0.0.1:{base + 2}",
    )
    return env


def make(env: dict[str, str], *args: str, timeout: float) -> float:
    started = time.monotonic()
    try:
        done = subprocess.run(
            [MAKE, "--no-print-directory", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"`make {' '.join(args)}` timed out after {timeout} s") from exc
    if done.returncode != 0:
        raise BenchError(f"`make {' '.join(args)}` failed ({done.returncode})", done.stdout + done.stderr)
    return time.monotonic() - started


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def remove_images() -> None:
    """The project's images and the local base: gone, with their build cache."""
    present = docker("images", "--format", "{{.Repository}}:{{.Tag}}").split()
    images = [i for i in present if i.startswith(IMAGES_PREFIX) or i == BASE_IMAGE]
    users = [
        line
        for line in docker("ps", "-a", "--format", "{{.Names}} {{.Image}}").splitlines()
        if line.split()[1] in images
    ]
    if users:
        raise BenchError(f"containers still use the images to remove (stop them first): {users}")
    if images:
        docker("rmi", *images)
    docker("image", "prune", "--force")


def main() -> int:
    repeat = _int_env("BENCH_REPEAT", 3)
    timeout = _int_env("BENCH_TIMEOUT", 1800)
    info = {**machine(), "commit": git_commit()}
    env = bench_env()
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    kept = Measure("compose_up_kept", "compose stack up, images cached, volumes kept")
    fresh = Measure("compose_up_fresh", "compose stack up, images cached, no volumes")
    cold = Measure("compose_up_cold", "compose stack up from nothing (base image, wheelhouse, images built)")
    try:
        print("building the images and starting once (untimed)", flush=True)
        make(env, "up", timeout=timeout)
        for i in range(repeat):
            make(env, "down", timeout=600)
            kept.samples.append(make(env, "up", timeout=timeout))
            make(env, "compose-reset", timeout=600)
            fresh.samples.append(make(env, "up", timeout=timeout))
            print(f"run {i + 1}/{repeat}: kept {kept.samples[-1]:.1f} s, fresh {fresh.samples[-1]:.1f} s", flush=True)
        for i in range(repeat):
            make(env, "compose-reset", timeout=600)
            remove_images()
            wheels = STATE / f"wheels-{i}"  # an empty wheelhouse: every wheel downloaded again
            cold.samples.append(make({**env, "COMPOSE_WHEELHOUSE_DIR": str(wheels)}, "up", timeout=timeout))
            shutil.rmtree(wheels, ignore_errors=True)
            print(f"run {i + 1}/{repeat}: from nothing {cold.samples[-1]:.1f} s", flush=True)
    except BenchError as exc:
        print(f"\nerror: {exc}\n--- last lines of its output ---\n{_tail(exc.output)}", file=sys.stderr)
        return 1
    finally:
        subprocess.run([MAKE, "--no-print-directory", "compose-reset"], cwd=ROOT, env=env, capture_output=True)
        shutil.rmtree(STATE, ignore_errors=True)
    cold.notes.append(
        "air-gapped: includes debootstrap of the base image and the download of every wheel (about 370 MB); "
        "with a registry: the pulls of postgres and seaweedfs and the PyPI installs instead"
    )
    summaries = [m.summary() for m in (kept, fresh, cold)]
    report = render(summaries, info, repeat)
    print("\n" + report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"compose-{stamp}.json").write_text(
        json.dumps({"repeat": repeat, "machine": info, "measures": summaries}, indent=2) + "\n"
    )
    (RESULTS / "compose-latest.md").write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
