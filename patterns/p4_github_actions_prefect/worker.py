"""One Prefect worker for pattern 4's work pool.

    python worker.py p4-worker    a worker for the pool of the last build here
    python worker.py --which      print that pool's type and name

A worker polls one work pool and runs each flow run it claims: a process
pool runs it as a subprocess of this environment (source releases), a Docker
pool in a container of the release's image. It serves the pool the last
build here deployed to (release.json), or, before any build, the pool of the
build P4_BUILD would choose. `make pattern-4` starts one under the local
stack's supervisord (p4-worker, or p4-docker-worker for an image). In
production the worker runs on your infrastructure (or Prefect Cloud's managed
pools), not in GitHub Actions: CI only deploys and triggers.

The worker's environment carries the S3 keys, so deployments never store them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from errors import P4Error
from release import recorded, resolve_mode
from settings import P4Settings, load_settings


def pool_and_type(settings: P4Settings) -> tuple[str, str]:
    try:
        built = recorded(settings)
        mode, pool = built["mode"], built["work_pool"]
    except P4Error:  # nothing built here yet
        mode = resolve_mode(settings)
        pool = settings.pool_for(mode)
    return pool, "docker" if mode == "image" else "process"


def main(argv: list[str]) -> None:
    name = argv[1] if len(argv) > 1 else "p4-worker"
    settings = load_settings()
    pool, kind = pool_and_type(settings)
    if name == "--which":
        print(kind, pool)
        return
    bin_dir = Path(sys.executable).parent
    os.environ.update(
        settings.s3_env()
        | settings.flow_run_env()  # flow runs read no .env: they run in the release
        | settings.prefect_env()
        | {
            "PREFECT_WORKER_QUERY_SECONDS": str(settings.worker_poll_seconds),
            # Flow runs of a process pool are subprocesses: they must find this
            # environment's python whatever PATH the worker inherited.
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(bin_dir.parent),
            "DO_NOT_TRACK": "true",
        }
    )
    command = [
        str(bin_dir / "prefect"),
        "worker",
        "start",
        "--pool",
        pool,
        "--type",
        kind,
        "--name",
        f"{name}-pid{os.getpid()}",
        "--limit",
        "1",
    ]
    # Flow runs start in the worker's working directory, which Python puts first
    # on sys.path: keep it out of this folder so a run imports only the code of
    # its release (the pull step's folder), never the working copy.
    scratch = settings.worker_dir or settings.state_dir / "worker"
    scratch.mkdir(parents=True, exist_ok=True)
    os.chdir(scratch)
    os.execv(command[0], command)  # same pid: a process manager signals the worker itself


if __name__ == "__main__":
    try:
        main(sys.argv)
    except P4Error as exc:
        raise SystemExit(exc.render()) from None
