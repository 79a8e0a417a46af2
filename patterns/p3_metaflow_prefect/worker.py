"""One Prefect worker for pattern 3's work pool, with the Metaflow store set.

    python worker.py p3-worker-1

Prefect 3 replaced agents with workers: a worker polls one work pool and runs
each flow run it claims as a subprocess (a "process" pool here; a Kubernetes
pool runs a pod instead, see docs/operations.md). `make pattern-3` starts two
of these under the local stack's supervisord; anywhere else run one per
terminal, machine or container.

The Prefect worker name gets this process's pid (`p3-worker-1-pid4242`), so
a worker restarted after a crash is a new worker in the UI and in each flow
run's `prefect.worker.name` label, which is how the fan-out shows who ran what.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from settings import configure


def main(argv: list[str]) -> None:
    name = argv[1] if len(argv) > 1 else "p3-worker"
    settings = configure()
    # Flow runs are subprocesses of the worker: they must find this
    # environment's python and Metaflow whatever PATH the worker inherited.
    bin_dir = Path(sys.executable).parent
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["VIRTUAL_ENV"] = str(bin_dir.parent)
    os.environ["PREFECT_WORKER_QUERY_SECONDS"] = str(settings.worker_poll_seconds)
    command = [
        str(bin_dir / "prefect"),
        "worker",
        "start",
        "--pool",
        settings.work_pool,
        "--type",
        "process",
        "--name",
        f"{name}-pid{os.getpid()}",
        "--limit",
        str(settings.worker_limit),
    ]
    os.execv(command[0], command)  # same pid: a process manager signals the worker itself


if __name__ == "__main__":
    main(sys.argv)
