"""The workload as a Metaflow flow, `python <flow>.py run`, with pattern 3's datastore settings.

Metaflow runs a flow through its own command line, so the timed part is that
whole command: a new process that imports Metaflow, then one process per
task, artifacts in the S3 datastore (METAFLOW_* from the environment: the
benchmark points them at its stack's SeaweedFS, local metadata in a temporary
folder). The result is read back with the Metaflow Client after the clock
stops. Runs in pattern 3's environment (the patterns' Metaflow).
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import protocol

shape = protocol.shape_from_argv("metaflow")
from metaflow import Run, namespace  # noqa: E402 - timed: importing the tool is part of its cost

FLOWS = Path(__file__).resolve().parent / "metaflow_flows"
NAMES = {"chain": "BenchChainFlow", "fanout": "BenchFanoutFlow"}
imported = time.perf_counter()
with tempfile.TemporaryDirectory() as tmp:
    run_id_file = Path(tmp) / "run-id"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(FLOWS / f"{shape}.py"), "--quiet", "run", "--run-id-file", str(run_id_file)],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    finished = time.perf_counter()
    if done.returncode != 0:
        raise SystemExit(f"error: Metaflow run failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    run_id = run_id_file.read_text().strip()
namespace(None)
result = Run(f"{NAMES[shape]}/{run_id}").data.result
protocol.report("metaflow", shape, result, imported, started, finished)
