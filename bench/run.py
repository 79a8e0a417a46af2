"""Benchmarks of the local tier and the patterns, as people meet them: `make` wall times.

    make bench                      BENCH_REPEAT=3 runs of each measure (the default)
    make bench BENCH_REPEAT=5       more runs, steadier medians

What is timed (each a whole `make` command, wall clock, uv and make included):

1. local stack cold start: `make up` on a brand-new, empty STACK_STATE_DIR,
   until it returns (every service healthy, buckets created); then `make down`.
2. local stack warm start: `make up` on that state folder, initialised and
   stopped; then `make down`.
3. warm `make pattern-1`: with the stack up and one untimed warm-up run done, so
   the timed runs take the idempotent path (the `decision=` of each run's
   `Result:` line is recorded and reported). Then bench/p1_endpoint.py:
   pattern 1's live endpoint, from moving @champion to the first answer of
   the new version, and its latency and throughput for a 1-row and a 100-row
   request beside `mlflow models serve` on the same model (reported, no target);
   and bench/p1_events.py: new data's event to the triggered training's start.
4. warm `make pattern-2`: one untimed warm-up run, then runs on new logical
   dates, so the KFP pipeline really executes each time (target 45 s).
5. warm `make pattern-3`: a 4-way fan-out on 2 workers, after one untimed
   warm-up (which starts the workers and deploys) (target 60 s). Then
   bench/p3_overhead.py: one Metaflow training run directly (its CLI) and the
   same run through the Prefect deployment, alternately; the difference is
   the deployment's overhead (reported, no target).
6. warm `make pattern-4`: the whole CD cycle (lint, test, build, deploy, run,
   verify), each timed run claiming a new commit (P4_GIT_SHA), so it builds,
   redeploys and retrains; the time per stage is read from the output.
7. the tools side by side (bench/matrix.py): the same small workload as plain
   Python, Prefect, Airflow, KFP, Metaflow, Dagster and Flyte.
8. Dagster's typed contract and Flyte's dynamic fan-out, run and checked.
9. a fresh environment per tool group (`uv sync --locked` into a new folder).

BENCH_ONLY=matrix (`make bench-matrix`) runs steps 7-9 only, on a stack started
untimed: bench/report.py then takes the stack and pattern figures from the
newest full run and says so.

Isolation: everything runs against its own stack, in a temporary STACK_STATE_DIR,
on free loopback ports, with the endpoints passed explicitly to every `make`: a
stack you already run (`make up` on the default ports) is never touched. The
stack is stopped and the temporary folder removed however the run ends.

The report (median, min, max per measure, against the targets) is printed, and
written to bench/results/<UTC timestamp>.json and bench/results/latest.md.
A missed target is reported, not failed: the exit code is non-zero only when a
command fails or times out. Knobs: BENCH_REPEAT (3), BENCH_TIMEOUT (600 s per command), BENCH_ONLY.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import matrix

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra" / "local"))
import credentials  # noqa: E402 - the local stack's generated secrets (standard library only)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"
MAKE = shutil.which("make") or "make"


class BenchError(RuntimeError):
    """A command failed or timed out: what, and the tail of its output."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


@dataclass
class Measure:
    key: str
    title: str
    target_s: float | None = None  # None: reported, no target
    samples: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        s = self.samples
        median = statistics.median(s) if s else None
        met = None if self.target_s is None or median is None else median <= self.target_s
        return {
            "key": self.key,
            "measure": self.title,
            "median_s": median,
            "min_s": min(s) if s else None,
            "max_s": max(s) if s else None,
            "n": len(s),
            "samples_s": s,
            "target_s": self.target_s,
            "target_met": met,
            "notes": self.notes,
            **self.extra,
        }


# ---- ports --------------------------------------------------------------------
def _port_free(port: int) -> bool:
    """The check stack.py makes before it starts anything: can we bind it on loopback?"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_ports() -> dict[str, int]:
    """Ten consecutive free ports below the kernel's ephemeral range (so no
    outgoing connection takes one meanwhile): Prefect, MLflow, S3, then the
    seven SeaweedFS ports (master, volume, filer, their gRPC ports, S3 gRPC)."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    high = max(ephemeral_low, 12000) - 10
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(10000, high)
        if all(_port_free(p) for p in range(base, base + 11)):
            return {
                "STACK_PREFECT_PORT": base,
                "STACK_MLFLOW_PORT": base + 1,
                "STACK_S3_PORT": base + 2,
                "STACK_SEAWEED_PORT_BASE": base + 3,  # to base + 9
                "STACK_AIRFLOW_PORT": base + 10,
            }
    raise BenchError("found no block of 11 consecutive free ports on 127.0.0.1 between 10000 and 32768")


def wait_ports_free(ports: dict[str, int], timeout: float = 120.0) -> float:
    """After `make down`, wait (untimed) until `make up`'s own port check would pass.
    Returns the seconds waited."""
    every = [
        ports["STACK_PREFECT_PORT"],
        ports["STACK_MLFLOW_PORT"],
        ports["STACK_S3_PORT"],
        *range(ports["STACK_SEAWEED_PORT_BASE"], ports["STACK_SEAWEED_PORT_BASE"] + 7),
    ]
    t0 = time.monotonic()
    while True:
        busy = [p for p in every if not _port_free(p)]
        if not busy:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise BenchError(f"ports {busy} still busy {timeout:.0f} s after `make down`")
        time.sleep(0.5)


# ---- running make -------------------------------------------------------------
class Bench:
    def __init__(self, repeat: int, timeout: float) -> None:
        self.repeat = repeat
        self.timeout = timeout
        self.tmp = Path(tempfile.mkdtemp(prefix="patterns-bench-"))
        self.ports = pick_ports()
        self.state_dir = self.tmp / "state-0"
        self.maybe_running: set[Path] = set()
        self.timeline: list[tuple[float, str]] = []

    def env(self, state_dir: Path) -> dict[str, str]:
        env = dict(os.environ)
        # A fresh top-level make: no inherited flags or command-line variables
        # (those would beat the environment; they are in the environment anyway).
        for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
            env.pop(name, None)
        # Nor the bench's own environment, which `uv run` activated: each `make`
        # runs as from a plain shell (and uv does not warn about a foreign venv).
        own = Path(sys.prefix)
        if env.get("VIRTUAL_ENV") and Path(env["VIRTUAL_ENV"]).resolve() == own.resolve():
            del env["VIRTUAL_ENV"]
            env["PATH"] = os.pathsep.join(
                d for d in env.get("PATH", "").split(os.pathsep) if d and Path(d).resolve() != (own / "bin").resolve()
            )
        p = self.ports
        endpoints = {
            "PREFECT_API_URL": f"http://{HOST}:{p['STACK_PREFECT_PORT']}/api",
            "MLFLOW_TRACKING_URI": f"http://{HOST}:{p['STACK_MLFLOW_PORT']}",
            "S3_ENDPOINT_URL": f"http://{HOST}:{p['STACK_S3_PORT']}",
        }
        env.update({k: str(v) for k, v in p.items()})
        env["STACK_STATE_DIR"] = str(state_dir)
        # The stack's generated keys (what make exports), unless the environment sets them.
        for name, value in credentials.read(credentials.ensure(state_dir)).items():
            if not name.startswith("STACK_"):
                env.setdefault(name, value)
        env.update(endpoints)
        # Pattern 1 reads P1_<NAME> before the shared names (also from its .env):
        # set those too, so nothing points it at another stack.
        env.update({f"P1_{k}": v for k, v in endpoints.items()})
        # Pattern 2 likewise, and its Airflow home in the bench's own folder.
        env["P2_S3_ENDPOINT_URL"] = endpoints["S3_ENDPOINT_URL"]
        env["P2_STATE_DIR"] = str(self.tmp / "p2-state")
        env["P2_SCHEDULE"] = ""  # no clock: unpausing would start a scheduled ETL run beside the timed ones
        env["P2_AIRFLOW_API_URL"] = f"http://{HOST}:{p['STACK_AIRFLOW_PORT']}"  # the bench's Airflow, not make's
        # Pattern 3 likewise; its workers inherit these through `make p3-workers`.
        env.update({f"P3_{k}": v for k, v in endpoints.items() if k != "MLFLOW_TRACKING_URI"})
        env["P3_METAFLOW_METADATA_DIR"] = str(self.tmp / "p3-metaflow")
        # Pattern 4 likewise, its build records and snapshots in the bench's folder.
        env.update({f"P4_{k}": v for k, v in endpoints.items() if k != "MLFLOW_TRACKING_URI"})
        env["P4_STATE_DIR"] = str(self.tmp / "p4-state")
        # The local tier's cycle: a source release, even where a Docker engine
        # answers; bench/p4_image.py times the image builds beside it.
        env["P4_BUILD"] = "source"
        env["STACK"] = "local"
        return env

    def make(self, target: str, *args: str, state_dir: Path | None = None) -> tuple[float, str]:
        """Run `make <target>`; return (wall seconds, combined output). Raise on failure.
        Each output line is also kept with the second it appeared (self.timeline)."""
        state_dir = state_dir or self.state_dir
        cmd = [MAKE, "-C", str(ROOT), "--no-print-directory", target, *args]
        timeline: list[tuple[float, str]] = []
        self.timeline = timeline
        t0 = time.perf_counter()
        # Its own session: a timeout or Ctrl-C here kills make, uv and python together.
        proc = subprocess.Popen(  # noqa: S603 - a fixed command line
            cmd,
            env=self.env(state_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )

        def read() -> None:
            for line in proc.stdout:
                timeline.append((time.perf_counter() - t0, line))

        reader = threading.Thread(target=read, name=f"make-{target}", daemon=True)
        reader.start()
        try:
            proc.wait(timeout=self.timeout)
            elapsed = time.perf_counter() - t0
        except BaseException as exc:  # timeout, Ctrl-C, SIGTERM
            _kill_group(proc)
            reader.join(timeout=5)
            output = "".join(line for _, line in timeline)
            if isinstance(exc, subprocess.TimeoutExpired):
                raise BenchError(f"`make {target}` did not finish in {self.timeout:.0f} s", output) from None
            raise
        reader.join(timeout=30)
        output = "".join(line for _, line in timeline)
        if proc.returncode != 0:
            raise BenchError(f"`make {target}` failed with exit code {proc.returncode}", output)
        return elapsed, output

    def up(self, state_dir: Path) -> tuple[float, str]:
        self.maybe_running.add(state_dir)
        return self.make("up", state_dir=state_dir)

    def down(self, state_dir: Path) -> float:
        seconds, _ = self.make("down", state_dir=state_dir)
        self.maybe_running.discard(state_dir)
        return seconds

    def logs(self, state_dir: Path) -> str:
        try:
            return self.make("logs", "LINES=60", state_dir=state_dir)[1]
        except BenchError as exc:
            return f"(make logs failed: {exc})\n{exc.output}"

    def cleanup(self) -> None:
        for state_dir in sorted(self.maybe_running):
            try:
                self.down(state_dir)
            except BenchError as exc:
                print(f"warning: {exc}:\n{_tail(exc.output)}", file=sys.stderr)
                _stop_supervisord(state_dir)
        self.remove_weed_sockets()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.tmp.exists():
            print(f"warning: could not remove {self.tmp} entirely", file=sys.stderr)

    def remove_weed_sockets(self) -> None:
        """SeaweedFS also listens on unix sockets named by port in the temp folder
        (/tmp/seaweedfs-s3-<port>.sock, ...) and, stopped with SIGKILL, leaves them
        there: remove those of this run's ports, once nothing listens on the port."""
        base = self.ports["STACK_SEAWEED_PORT_BASE"]
        ours = {self.ports["STACK_S3_PORT"], *range(base, base + 7)}
        folder = Path(os.environ.get("TMPDIR") or "/tmp")  # where weed puts them
        for sock in folder.glob("seaweedfs-*.sock"):
            port = sock.stem.rsplit("-", 1)[-1]
            if port.isdigit() and int(port) in ours and _port_free(int(port)):
                sock.unlink(missing_ok=True)


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _stop_supervisord(state_dir: Path) -> None:
    """Last resort when `make down` failed: SIGTERM the supervisord this run
    started (by the pid in its own state folder); it stops its children."""
    try:
        pid = int((state_dir / "supervisord.pid").read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    print(f"warning: supervisord pid {pid} (state {state_dir}) is still running", file=sys.stderr)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _stack_reported(output: str) -> float | None:
    """stack.py's own figure ('local stack up in 12.3 s'): the time without uv and make."""
    match = re.search(r"local stack up in ([0-9.]+) s", output)
    return float(match.group(1)) if match else None


def _healthy_after(timeline: list[tuple[float, str]]) -> dict[str, float]:
    """When `make up` printed each '<service> healthy' line, in seconds from its start."""
    found = {}
    for seconds, line in timeline:
        match = re.match(r"\s+(\S.*?)\s+healthy\s", line)
        if match:
            found[match.group(1)] = round(seconds, 1)
    return found


def _field(output: str, name: str) -> str:
    """A field of the last `Result:` line."""
    lines = [line for line in output.splitlines() if line.startswith("Result: ")]
    match = re.search(rf"\b{name}=(\S*)", lines[-1]) if lines else None
    return match.group(1) if match else "unknown"


def _result(output: str) -> dict[str, str]:
    """The fields of the last `Result: k=v ...` line of a pattern's output."""
    lines = [line for line in output.splitlines() if line.startswith("Result: ")]
    if not lines:
        raise BenchError("the command printed no `Result:` line", output)
    return dict(f.split("=", 1) for f in lines[-1][len("Result: ") :].split() if "=" in f)


def _split(measure: Measure, how, *args) -> None:
    """Split one timed pattern run by the orchestrators' records (bench/matrix.py)."""
    try:
        measure.extra.setdefault("split", []).append(how(*args))
    except (matrix.MatrixError, httpx.HTTPError, sqlite3.Error, KeyError, ValueError) as exc:
        measure.notes.append(f"could not split a run into start-up/orchestration/work: {exc}")


def _decision(output: str) -> str:
    return _field(output, "decision")


# ---- the measures -------------------------------------------------------------
def run(bench: Bench, compared: dict[str, object]) -> list[Measure]:
    cold = Measure("stack_cold_start", "local stack cold start (`make up`, empty state)")
    warm = Measure("stack_warm_start", "local stack warm start (`make up`, stopped)", target_s=20.0)
    down = Measure("stack_down", "local stack stop (`make down`)")
    p1 = Measure("pattern1_warm", "warm `make pattern-1`", target_s=30.0)
    p1_promotion = Measure(
        "pattern1_promotion_to_answer", "pattern 1: @champion moved, to the first answer of the new version"
    )
    p1_event = Measure(
        "pattern1_event_to_training_start", "pattern 1: new data's event sent, to the triggered training's start"
    )
    p2_services = Measure("pattern2_airflow_start", "pattern 2: Airflow's four services start (`make p2-airflow`)")
    p2 = Measure("pattern2_warm", "warm `make pattern-2` (new parameters: the pipeline runs)", target_s=45.0)
    p2_asset = Measure(
        "pattern2_asset_event_to_training_start", "pattern 2: the ETL run's asset event, to the training run's start"
    )
    p3 = Measure("pattern3_warm", "warm `make pattern-3` (4-way fan-out on 2 workers)", target_s=60.0)
    p3_direct = Measure("pattern3_metaflow_direct", "pattern 3: one Metaflow run directly (`trainflow.py run`)")
    p3_deployed = Measure("pattern3_via_deployment", "pattern 3: the same run through the Prefect deployment")
    p4 = Measure("pattern4_cycle", "warm `make pattern-4` (a new release each run: lint, test, build, deploy, run)")
    n = bench.repeat
    reported: dict[str, list[float]] = {"stack_cold_start": [], "stack_warm_start": []}
    port_waits: list[float] = []

    def timed_up(measure: Measure, state_dir: Path, label: str) -> None:
        port_waits.append(wait_ports_free(bench.ports))
        seconds, output = bench.up(state_dir)
        measure.samples.append(seconds)
        inner = _stack_reported(output)
        if inner is not None:
            reported[measure.key].append(inner)
        healthy = _healthy_after(bench.timeline)
        for service, after in healthy.items():
            measure.extra.setdefault("healthy_after_s", {}).setdefault(service, []).append(after)
        phases = ", ".join(f"{k} {v:.1f}" for k, v in healthy.items())
        print(f"  {label}: {seconds:6.1f} s  (stack.py reports {inner} s; healthy after: {phases})", flush=True)
        down.samples.append(bench.down(state_dir))

    print(f"1/9 cold stack start, {n} run(s), each on a new empty state folder", flush=True)
    for i in range(n):
        previous, bench.state_dir = bench.state_dir, bench.tmp / f"state-{i}"
        if i and previous.exists():
            shutil.rmtree(previous, ignore_errors=True)  # keep only the latest: disk
        timed_up(cold, bench.state_dir, f"cold {i + 1}/{n}")

    print(f"2/9 warm stack start, {n} run(s), on the initialised, stopped state folder", flush=True)
    for i in range(n):
        timed_up(warm, bench.state_dir, f"warm {i + 1}/{n}")

    print(f"3/9 warm `make pattern-1`: stack up, one untimed warm-up, then {n} timed run(s)", flush=True)
    wait_ports_free(bench.ports)
    bench.up(bench.state_dir)
    warmup_s, output = bench.make("pattern-1")
    warmup = _decision(output)
    print(f"  warm-up (untimed): {warmup_s:6.1f} s  decision={warmup}", flush=True)
    decisions: list[str] = []
    for i in range(n):
        seconds, output = bench.make("pattern-1")
        p1.samples.append(seconds)
        decisions.append(_decision(output))
        _split(p1, matrix.split_p1, bench.env(bench.state_dir), _result(output), seconds)
        print(f"  run {i + 1}/{n}: {seconds:6.1f} s  decision={decisions[-1]}", flush=True)
    print(f"  live endpoint: {n} promotion(s), and latency beside `mlflow models serve`", flush=True)
    _, output = bench.make("_p1-endpoint-bench", f"BENCH_REPEAT={n}")
    endpoint_bench(p1_promotion, json.loads(output.strip().splitlines()[-1]))
    print(f"  event-driven retraining: {n} new batch(es), each through p1-retrain's trigger", flush=True)
    _, output = bench.make("_p1-events-bench", f"BENCH_REPEAT={n}")
    events_bench(p1_event, json.loads(output.strip().splitlines()[-1]))
    print(f"4/9 pattern 2: Airflow's services, started {n} time(s) on the running stack", flush=True)
    for i in range(n):
        bench.make("_p2-airflow-stop")  # untimed: the services stopped, the stack and its database kept
        seconds, _ = bench.make("p2-airflow")
        p2_services.samples.append(seconds)
        print(f"  start {i + 1}/{n}: {seconds:6.1f} s  (the first creates Airflow's database)", flush=True)
    print(f"  warm `make pattern-2`: one untimed warm-up, then {n} timed run(s), each new parameters", flush=True)
    warmup2_s, output = bench.make("pattern-2", "ARGS=--date 2026-01-01")
    print(f"  warm-up (untimed): {warmup2_s:6.1f} s  reused={_field(output, 'reused')}", flush=True)
    for i in range(n):
        # A new logical date and a parameter set of its own each time: the KFP run is named
        # after the data's content and the parameters, so the pipeline really runs (no reuse).
        seconds, output = bench.make("pattern-2", f"ARGS=--date 2026-01-{i + 2:02d} --n-estimators {201 + i}")
        p2.samples.append(seconds)
        _split(p2, matrix.split_p2, bench.env(bench.state_dir), _result(output), seconds)
        p2_asset.samples.append(matrix.p2_asset_to_training_start(bench.env(bench.state_dir), _result(output)))
        p2.extra.setdefault("reused", []).append(_field(output, "reused"))
        print(
            f"  run {i + 1}/{n}: {seconds:6.1f} s  reused={p2.extra['reused'][-1]}  "
            f"asset event to training start {p2_asset.samples[-1]:.2f} s",
            flush=True,
        )
    p2.extra["warmup_s"] = round(warmup2_s, 3)
    if p2.extra["reused"] != ["false"] * n:
        p2.notes.append(f"timed runs were not all new pipeline executions: reused={p2.extra['reused']}")

    print(f"5/9 warm `make pattern-3`: one untimed warm-up (workers, deploy), then {n} timed run(s)", flush=True)
    # A fan-out of the same grid and data reuses the finished runs (one logical
    # run): each timed run gets a run key of its own, so each trains anew.
    stamp = time.strftime("%Y%m%dT%H%M%S")
    warmup3_s, output = bench.make("pattern-3", f"ARGS=--run-key bench-{stamp}-warmup")
    print(f"  warm-up (untimed): {warmup3_s:6.1f} s  workers={_field(output, 'workers')}", flush=True)
    for i in range(n):
        seconds, output = bench.make("pattern-3", f"ARGS=--run-key bench-{stamp}-{i}")
        p3.samples.append(seconds)
        _split(p3, matrix.split_p3, bench.env(bench.state_dir), _result(output), seconds)
        p3.extra.setdefault("workers", []).append(_field(output, "workers"))
        p3.extra.setdefault("reused", []).append(_field(output, "reused"))
        print(f"  run {i + 1}/{n}: {seconds:6.1f} s  workers={p3.extra['workers'][-1]}", flush=True)
    p3.extra["warmup_s"] = round(warmup3_s, 3)
    if p3.extra["reused"] != ["0"] * n:
        p3.notes.append(f"timed runs reused earlier trainings: reused={p3.extra['reused']}")
    p4_cycle(bench, p4)
    print(f"  deployment overhead: {n} direct and {n} deployed Metaflow run(s), alternately", flush=True)
    _, output = bench.make("_p3-overhead", f"BENCH_REPEAT={n}")
    overhead = json.loads(output.strip().splitlines()[-1])
    p3_direct.samples, p3_deployed.samples = overhead["direct_s"], overhead["deployment_s"]
    extra = statistics.median(p3_deployed.samples) - statistics.median(p3_direct.samples)
    p3_deployed.notes.append(f"median overhead of the deployment path: {extra:.1f} s per run")
    print(f"  direct {overhead['direct_s']}  deployed {overhead['deployment_s']}", flush=True)
    compare(bench, compared)
    down.samples.append(bench.down(bench.state_dir))

    kinds = sorted(set(decisions))
    p1.title += f" (decision={','.join(kinds)})"
    p1.extra.update({"decisions": decisions, "warmup_decision": warmup, "warmup_s": round(warmup_s, 3)})
    if kinds != ["reused"]:
        p1.notes.append(f"timed runs were not all on the idempotent path: {decisions}")
    for m in (cold, warm):
        if reported[m.key]:
            m.extra["stack_py_reported_median_s"] = statistics.median(reported[m.key])
    if max(port_waits, default=0) > 1:
        down.notes.append(
            f"ports took up to {max(port_waits):.1f} s to become bindable again after `make down` (untimed wait)"
        )
    return [cold, warm, p1, p1_promotion, p1_event, p2_services, p2, p2_asset, p3, p3_direct, p3_deployed, p4, down]


def endpoint_bench(measure: Measure, found: dict) -> None:
    """bench/p1_endpoint.py's figures: the promotion times as samples, the latency
    and throughput of each server and request size as notes (medians over the runs)."""
    measure.samples = found["promotion_s"]
    measure.notes.append(
        "endpoint.py polls @champion every second here (P1_ENDPOINT_POLL_SECONDS=1); the slowest answer "
        f"during each swap, in s: {found['slowest_answer_s']}, none failed"
    )
    for server, sizes in found["serve"].items():
        for rows, runs in sizes.items():
            p50, p99, rps = (statistics.median(r[k] for r in runs) for k in ("p50_ms", "p99_ms", "rps"))
            failed = sum(r["failed"] for r in runs)
            measure.notes.append(
                f"{server}, {rows}-row request, one client on loopback: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                f"{rps:.0f} requests/s, {failed} failed (median of {len(runs)} runs of {found['seconds']:.0f} s)"
            )
    print(f"  promotion to first answer: {found['promotion_s']} s", flush=True)


def events_bench(measure: Measure, found: dict) -> None:
    """bench/p1_events.py's figures: event to training start as samples, the rest as notes."""
    measure.samples = found["started_s"]
    measure.notes.append(
        f"event to flow run created (the trigger), in s: {found['created_s']}; the served deployment "
        f"asks for runs every 2 s; event to the run's end (trained, gated, scored), in s: {found['finished_s']}"
    )
    print(f"  event to training start: {found['started_s']} s", flush=True)


def compare(bench: Bench, compared: dict[str, object]) -> None:
    """Steps 7 and 8, on the running stack: the tools side by side, then Dagster's
    and Flyte's strengths."""
    n = bench.repeat
    names = ", ".join(r.name for r in matrix.RUNNERS)
    print(
        f"7/9 side by side: a {matrix.workload.N}-task chain and a {matrix.workload.N}-way fan-out in each runner "
        f"({names}), {n} interleaved round(s)",
        flush=True,
    )
    try:
        compared["side_by_side"] = matrix.side_by_side(
            bench.env(bench.state_dir), bench.tmp / "side-by-side", n, bench.timeout, log=_log
        )
        print(
            f"8/9 strengths: Dagster's typed contract ({len(matrix.DAGSTER_CASES)} cases) and Flyte's dynamic "
            f"fan-out (rows {', '.join(map(str, matrix.FLYTE_ROWS))}), {n} round(s)",
            flush=True,
        )
        compared["strengths"] = matrix.strengths(
            bench.env(bench.state_dir), bench.tmp / "strengths", n, bench.timeout, log=_log
        )
    except matrix.MatrixError as exc:
        raise BenchError(str(exc), exc.output) from None


def p4_stages(timeline: list[tuple[float, str]], seconds: float) -> dict[str, float]:
    """Seconds per stage of a `make pattern-4`, from its `== pattern 4, stage N/5: NAME` banners."""
    marks = [(t, line) for t, line in timeline if line.startswith("== pattern 4, stage")]
    return {
        line.split(": ", 1)[1].split()[0]: round(((marks[j + 1][0] if j + 1 < len(marks) else seconds) - t), 1)
        for j, (t, line) in enumerate(marks)
    }


def p4_cycle(bench: Bench, p4: Measure) -> None:
    """Pattern 4's whole CD cycle. Each timed run claims a new commit (P4_GIT_SHA),
    so every stage does its work: a new snapshot, a redeploy to a new version,
    a new retraining and batch-score run. Stage times come from the output."""
    n = bench.repeat
    print(f"6/9 warm `make pattern-4`: one untimed warm-up, then {n} timed run(s), each a new release", flush=True)
    warmup_s, _ = bench.make("pattern-4", f"P4_GIT_SHA={secrets.token_hex(20)}")
    print(f"  warm-up (untimed): {warmup_s:6.1f} s", flush=True)
    for i in range(n):
        seconds, output = bench.make("pattern-4", f"P4_GIT_SHA={secrets.token_hex(20)}")
        p4.samples.append(seconds)
        p4.extra.setdefault("new_run", []).append(_field(output, "new_run"))
        stages = p4_stages(bench.timeline, seconds)
        for stage, took in stages.items():
            p4.extra.setdefault("stage_s", {}).setdefault(stage, []).append(took)
        _split(p4, matrix.split_p4, bench.env(bench.state_dir), _result(output), seconds, stages)
        print(f"  run {i + 1}/{n}: {seconds:6.1f} s  stages={stages}", flush=True)
    p4.extra["warmup_s"] = round(warmup_s, 3)
    if p4.extra["new_run"] != ["true"] * n:
        p4.notes.append(f"timed runs did not all retrain: new_run={p4.extra['new_run']}")


# ---- report -------------------------------------------------------------------
def machine() -> dict[str, object]:
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = ""
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    return {
        "nproc": nproc,
        "mem_total_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def git_commit() -> str:
    try:
        sha = subprocess.run(  # noqa: S603 - a fixed command line
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render(summaries: list[dict[str, object]], info: dict[str, object], repeat: int) -> str:
    rows = ["| measure | median s | min | max | n | target |", "|---|---:|---:|---:|---:|---|"]
    for m in summaries:
        if m["target_s"] is None:
            target = "none"
        else:
            target = f"<= {m['target_s']:.0f} s: {'MET' if m['target_met'] else 'MISSED'}"
        rows.append(
            f"| {m['measure']} | {_s(m['median_s'])} | {_s(m['min_s'])} | {_s(m['max_s'])} | {m['n']} | {target} |"
        )
    notes = [f"- {m['key']}: {note}" for m in summaries for note in m["notes"]]
    for m in summaries:
        if "healthy_after_s" in m:
            after = ", ".join(f"{k} {statistics.median(v):.1f} s" for k, v in m["healthy_after_s"].items())
            notes.append(f"- {m['key']}: median time from `make up` until each service answered healthy: {after}")
        if "stack_py_reported_median_s" in m:
            notes.append(
                f"- {m['key']}: stack.py itself reports a median of {m['stack_py_reported_median_s']:.1f} s "
                "(the rest is uv and make)"
            )
        if "stage_s" in m:
            stages = ", ".join(f"{k} {statistics.median(v):.1f} s" for k, v in m["stage_s"].items())
            notes.append(f"- {m['key']}: median time per stage: {stages}")
        if "warmup_decision" in m:
            notes.append(
                f"- {m['key']}: the untimed warm-up run took {m['warmup_s']:.1f} s, decision={m['warmup_decision']}"
            )
    lines = [
        f"Benchmark: BENCH_REPEAT={repeat}, wall clock of each `make` command, median of n runs.",
        "",
        *rows,
        "",
        f"Machine: nproc={info['nproc']}, memory {info['mem_total_gib']} GiB, {info['cpu'] or 'cpu unknown'}, "
        f"Python {info['python']}, {info['platform']}",
        f"Date: {info['date_utc']}, commit {info['commit']}",
    ]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def failed(bench: Bench, exc: BenchError) -> int:
    """Say what failed, with the tail of its output and the stack's logs; exit code 1."""
    print(f"\nerror: {exc}\n--- last lines of its output ---\n{_tail(exc.output)}", file=sys.stderr)
    print(f"--- make logs ---\n{bench.logs(bench.state_dir)}", file=sys.stderr)
    return 1


def _log(line: str) -> None:
    print(line, flush=True)


def _uv() -> str:
    """uv: `uv run` exports its own path as UV; make's fallback in .tools/ otherwise."""
    found = os.environ.get("UV") or shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    if not Path(found).exists():
        raise BenchError(f"uv not found (UV={os.environ.get('UV')!r}): run the benchmark with `make bench`")
    return found


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip() or str(default)
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise SystemExit(f"error: {name}={raw!r} must be a whole number >= 1")
    return value


def main() -> int:
    repeat = _int_env("BENCH_REPEAT", 3)
    timeout = _int_env("BENCH_TIMEOUT", 600)
    only = os.environ.get("BENCH_ONLY", "").strip()
    if only not in ("", "matrix"):
        raise SystemExit(f"error: BENCH_ONLY={only!r}: leave it unset (everything) or set it to `matrix`")
    only_matrix = only == "matrix"

    def _terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through `finally`: the stack is stopped

    signal.signal(signal.SIGTERM, _terminate)
    info = {**machine(), "commit": git_commit()}
    print(
        f"machine: nproc={info['nproc']} mem={info['mem_total_gib']} GiB python={info['python']} "
        f"date={info['date_utc']}",
        flush=True,
    )

    bench = Bench(repeat, timeout)
    print(f"state: {bench.tmp}  ports: {bench.ports}", flush=True)
    try:
        print("preparing environments (`make setup`, untimed)", flush=True)
        bench.make("setup")
        compared: dict[str, object] = {}
        if only_matrix:
            print("BENCH_ONLY=matrix: steps 1-6 skipped; the stack started untimed for the runners", flush=True)
            bench.up(bench.state_dir)
            compare(bench, compared)
            bench.down(bench.state_dir)
            measures = []
        else:
            measures = run(bench, compared)
        print(
            f"9/9 a fresh environment per tool group: `uv sync --locked` into a new folder, {repeat} time(s) "
            "with uv's cache, once with an empty cache",
            flush=True,
        )
        try:
            compared["environments"] = matrix.env_installs(
                bench.env(bench.state_dir), _uv(), bench.tmp / "installs", repeat, bench.timeout, log=_log
            )
        except matrix.MatrixError as exc:
            raise BenchError(str(exc), exc.output) from None
    except BenchError as exc:
        return failed(bench, exc)
    finally:
        bench.cleanup()

    summaries = [m.summary() for m in measures]
    report = render(summaries, info, repeat)
    if not only_matrix:
        print("\n" + report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    data = {
        "only": only or "everything",
        "repeat": repeat,
        "timeout_s": timeout,
        "machine": info,
        "ports": bench.ports,
        "measures": summaries,
        **compared,
    }
    (RESULTS / f"{stamp}.json").write_text(json.dumps(data, indent=2) + "\n")
    if only_matrix:  # no stack or pattern measure: latest.md keeps the last full run's
        print(f"written: {RESULTS / (stamp + '.json')}")
        return 0
    (RESULTS / "latest.md").write_text(report)
    print(f"written: {RESULTS / (stamp + '.json')} and {RESULTS / 'latest.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
