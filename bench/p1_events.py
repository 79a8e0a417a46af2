"""Pattern 1's event-driven retraining, measured inside pattern 1's environment by
bench/run.py (the stack up): `python flow.py serve` (the deployment p1-retrain
with its triggers) runs for a model and experiment of the bench's own; each
round publishes a new batch (a seed no round used, so it trains) and times,
from the moment the event is sent:

- event to flow run created (Prefect's trigger evaluation and its action),
- event to training start (the run's start time: the served process picked it
  up, PREFECT_RUNNER_POLL_FREQUENCY=2 s),
- event to the run's end (trained, gated, scored; the decision).

Prints one JSON line: {"created_s": [...], "started_s": [...], "finished_s": [...], "decisions": [...]}.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

P1 = Path(__file__).resolve().parents[1] / "patterns" / "p1_prefect_mlflow"
sys.path.insert(0, str(P1))

import events  # noqa: E402
import loop  # noqa: E402

import data  # noqa: E402  (this folder, put on sys.path above)
from errors import P1Error  # noqa: E402
from settings import load_settings  # noqa: E402

NAME = "p1-events-bench"  # model and experiment
FIRST_SEED = 1000  # far from the loop's seeds


def seconds_since(t0: float, moment: datetime | None) -> float | None:
    return round(moment.timestamp() - t0, 3) if moment else None


def round_trip(client, deployment_id, settings, seed: int, timeout: float = 300) -> dict:
    path = data.BATCHES / f"bench-events-{seed}.csv"
    data.derive_batch(path, seed, 0.0)
    version = data.publish_new(path, settings)
    t0 = time.time()
    emitted = str(events.emit(events.DATA_PUBLISHED, data.relative_name(path), version.md5))
    try:
        # The times come from the run's own record, so how often this asks does not change them.
        run = loop.finished_run(client, deployment_id, emitted, timeout)
    except P1Error as exc:
        raise SystemExit(exc.render()) from exc
    return {
        "created_s": seconds_since(t0, run.created),
        "started_s": seconds_since(t0, run.start_time),
        "finished_s": seconds_since(t0, run.end_time),
        "path": path,
    }


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    os.chdir(P1)
    os.environ |= {"P1_MODEL_NAME": NAME, "P1_EXPERIMENT_NAME": NAME}
    settings = load_settings()
    from prefect.client.orchestration import get_client

    found: dict[str, list] = {"created_s": [], "started_s": [], "finished_s": []}
    made: list[Path] = []
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(tempfile.TemporaryFile("w+"))
        server = subprocess.Popen([sys.executable, "flow.py", "serve"], stdout=log, stderr=subprocess.STDOUT)
        stack.callback(server.wait, 30)
        stack.callback(server.terminate)
        client = stack.enter_context(get_client(sync_client=True))
        deadline = time.monotonic() + 180
        deployment = None
        while deployment is None:
            with contextlib.suppress(Exception):
                deployment = client.read_deployment_by_name("p1-train-register-serve/p1-retrain")
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise SystemExit(f"flow.py serve did not register p1-retrain: {log.read()[-2000:]}")
            time.sleep(0.5)
        time.sleep(3)  # the triggers are registered with the deployment; let the runner start polling
        try:
            for i in range(repeat):
                measured = round_trip(client, deployment.id, settings, FIRST_SEED + i)
                made.append(measured.pop("path"))
                for key, value in measured.items():
                    found[key].append(value)
        finally:
            for path in made:
                for leftover in (path, path.with_name(path.name + ".dvc")):
                    leftover.unlink(missing_ok=True)
    print(json.dumps(found))


if __name__ == "__main__":
    main()
