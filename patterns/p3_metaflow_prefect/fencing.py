"""Process fencing: a Metaflow run lives only as long as the Prefect flow run
that started it, and only one run starts at a time per metadata folder.

- `die_with_parent()`: Linux's parent-death signal (prctl), so a flow run dies
  with the worker that started it, as it would with a lost host.
- `run_metaflow()`: `python trainflow.py run ...` in a session of its own,
  killed as a whole (killpg) once its flow run is final or its parent dies.
- `_run_start_lock()`: an flock in the shared metadata folder around Metaflow's
  run-id allocation.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prefect.client.orchestration import get_client

from errors import P3Error
from settings import PATTERN_DIR, P3Settings

TRAINFLOW = PATTERN_DIR / "trainflow.py"
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux; elsewhere a no-op).
    Also runs between fork and exec, so it only calls a function resolved
    beforehand: no import, no lock."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_metaflow(
    s: P3Settings, parameters: dict, tags: list[str], flow_run_id: str, flow_name: str
) -> tuple[int, str, str, str | None]:
    """`python trainflow.py run ...`, fenced to this flow run.

    A Metaflow run keeps going only while its Prefect flow run does. Once
    Prefect has given up on a flow run (CRASHED, and resubmitted; or
    cancelled), a Metaflow run left going would finish a model that no Prefect
    run owns: a duplicate of the resubmitted run. So the runtime gets a
    session of its own, and the whole session is killed when the flow run
    reaches a final state or this process dies (the parent-death signal, on
    Linux). A run stopped that way never reaches `end`, so it is never
    `successful`. Returns (exit code, stdout, stderr, run id)."""
    with tempfile.TemporaryDirectory() as tmp:
        run_id_file, out, err = Path(tmp) / "run-id", Path(tmp) / "stdout", Path(tmp) / "stderr"
        command = [sys.executable, str(TRAINFLOW), "--no-pylint", "run", "--run-id-file", str(run_id_file)]
        for name, value in parameters.items():
            command += [f"--{name}", str(value)]
        for tag in tags:
            command += ["--tag", tag]
        with out.open("w") as stdout, err.open("w") as stderr:
            with _run_start_lock(s.metaflow_metadata_dir):
                process = subprocess.Popen(
                    command,
                    cwd=PATTERN_DIR,
                    env=os.environ | s.metaflow_env(),
                    stdout=stdout,
                    stderr=stderr,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
                _wait_for_run_id(process, run_id_file)
            try:
                fenced = _wait_while_flow_run_is_live(process, flow_run_id)
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        run_id = run_id_file.read_text().strip() if run_id_file.exists() else None
        if fenced:
            raise P3Error(
                f"flow run {flow_run_id} became {fenced} while Metaflow ran; Metaflow run "
                f"{flow_name}/{run_id} was stopped so that it cannot finish a second time",
                "nothing to do: the fan-out resubmits crashed runs",
            )
        return process.returncode, out.read_text(), err.read_text(), run_id or None


@contextlib.contextmanager
def _run_start_lock(metadata_dir: Path):
    """Serialise Metaflow run-id allocation across the processes that share
    the metadata folder. The local metadata provider makes a run id from the
    time in microseconds, and two workers starting runs at once were given
    the same id here: their runs wrote into one pathspec. So runs start one
    at a time under an exclusive lock in that folder, held until Metaflow has
    written its run id (about as long as Metaflow's start-up)."""
    metadata_dir.mkdir(parents=True, exist_ok=True)
    with (metadata_dir / ".p3-run-start.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _wait_for_run_id(process, run_id_file: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if run_id_file.exists() and run_id_file.read_text().strip():
            time.sleep(0.001)  # the next run's microsecond timestamp is a later one
            return
        time.sleep(0.02)


def _wait_while_flow_run_is_live(process, flow_run_id: str) -> str | None:
    """Wait for the Metaflow process; return the flow run's state type if that
    became final first (the caller then kills the process group)."""
    with get_client(sync_client=True) as client:
        while True:
            try:
                process.wait(timeout=5)
                return None
            except subprocess.TimeoutExpired:
                pass
            try:
                state = client.read_flow_run(flow_run_id).state
            except Exception:  # the API being briefly away is no reason to stop training
                continue
            if state is not None and state.is_final():
                return state.type.value
