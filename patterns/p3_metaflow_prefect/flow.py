"""Pattern 3: Prefect workers distribute Metaflow runs; Metaflow keeps versions
and lineage on S3.

Who owns what:
- Prefect owns distribution and run state: a work pool, the workers polling
  it, one deployment (`p3-train-one/p3-train`) per Metaflow training run, the
  fan-out flow that submits N of them, crash detection, and the table
  artifact that summarises the fan-out.
- Metaflow owns versions and lineage: each training run's pathspec, its
  parameters, the exact dataset it read (with its sha256) and the model, all
  stored in the S3 datastore and read back with the Metaflow Client.
- The two are linked both ways: every Metaflow run is tagged
  `prefect_flow_run_id:<id>`, and every Prefect flow run carries the Metaflow
  pathspec in an artifact.

    python flow.py                 deploy, then fan out a grid over the pool's workers
                                   (the same grid again reuses the finished runs: --run-key)
    python flow.py deploy          only create/update the pool, deployment and crash automation
    python flow.py train-one ...   one training run in this process (no worker), for debugging

Workers: `python worker.py NAME` (make pattern-3 starts two under supervisord).
The run ends with a table of who ran what and one stable line:
    Result: pattern=p3 status=ok runs=4 workers=2 best=P3TrainFlow/... ...
"""

# ## Settings first
# Prefect and Metaflow both read their configuration when imported, so the
# settings object exports it before either is imported.
from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from errors import P3Error
from settings import PATTERN_DIR, P3Settings, load_settings

SETTINGS = load_settings()
SETTINGS.export_to_environ()

import httpx  # noqa: E402
from prefect import flow, get_run_logger, runtime  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.deployments import run_deployment  # noqa: E402

TRAINFLOW = PATTERN_DIR / "trainflow.py"
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
METAFLOW_FLOW = "P3TrainFlow"
CHILD_FLOW = "p3-train-one"
PARENT_FLOW = "p3-fan-out"
DEFAULT_GRID = "50x8,100x8,50x16,100x0"
LINK_TAG = "prefect_flow_run_id"  # the Metaflow tag that points back at Prefect
GIT_TAG = "git_commit"  # the Metaflow tag naming the commit of the code that ran


# ## The grid
@dataclass(frozen=True)
class GridPoint:
    n_estimators: int
    max_depth: int

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
    s: P3Settings, data_version: str, points: list[GridPoint], folds: int, seed: int, run_key: str
) -> str:
    """A fan-out is one logical run per (dataset sha256, set of grid points,
    folds, seed, Metaflow store, deployment, run key). Each child flow run's
    Prefect idempotency key derives from it, so a second fan-out of the same
    logical run (at once, or later) gets the same child runs back instead of
    training them again: it waits for the ones in flight and reuses the ones
    that completed. `--run-key` names a new logical run (a fresh training)."""
    payload = {
        "data_sha256": data_version,
        "grid": sorted(p.label for p in points),
        "folds": folds,
        "seed": seed,
        "metaflow": [s.metaflow_s3_root, str(s.metaflow_metadata_dir.resolve())],
        "deployment": f"{CHILD_FLOW}/{s.deployment}",
        "run_key": run_key,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# ## Pre-flight: fail in seconds, naming the service and the variable to fix
def preflight(s: P3Settings) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        httpx.get(f"{s.prefect_api_url}/health", timeout=s.connect_timeout).raise_for_status()
    except httpx.HTTPError as exc:
        raise P3Error(
            f"the Prefect API at {s.prefect_api_url} is unreachable ({type(exc).__name__})",
            "start the local stack with `make up`, or set P3_PREFECT_API_URL / PREFECT_API_URL",
        ) from None
    client = s3_client(s)
    try:
        client.head_bucket(Bucket=s.metaflow_bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise P3Error(
                f"S3 at {s.s3_endpoint_url} rejected the key {s.s3_access_key_id!r}",
                "set P3_S3_ACCESS_KEY_ID / P3_S3_SECRET_ACCESS_KEY (or S3_*) to the stack's keys",
            ) from None
        raise P3Error(
            f"the Metaflow bucket {s.metaflow_bucket!r} does not exist on {s.s3_endpoint_url}",
            "create it (`make up` creates `metaflow`), or point P3_METAFLOW_S3_ROOT at a bucket that exists",
        ) from None
    except BotoCoreError as exc:
        raise P3Error(
            f"S3 at {s.s3_endpoint_url} is unreachable ({type(exc).__name__})",
            "start the local stack with `make up`, or set P3_S3_ENDPOINT_URL / S3_ENDPOINT_URL",
        ) from None


def s3_client(s: P3Settings):
    # boto3 is imported here, not at the top: a worker's flow run loads this
    # module and never needs it (Metaflow has its own client).
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s.s3_endpoint_url,
        aws_access_key_id=s.s3_access_key_id,
        aws_secret_access_key=s.s3_secret_access_key,
        region_name="us-east-1",
        config=Config(
            connect_timeout=s.connect_timeout, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"}
        ),
    )


# ## Data: one content-addressed object per dataset version
def publish_dataset(s: P3Settings) -> tuple[str, str]:
    """Upload the dataset under its sha256 (once), return (s3 url, sha256).
    A Metaflow run re-checks the sha256 of what it reads."""
    from botocore.exceptions import ClientError

    try:
        raw = s.data_file.read_bytes()
    except OSError as exc:
        raise P3Error(
            f"cannot read the dataset {s.data_file} ({exc.strerror})", "set P3_DATA_FILE to a CSV file"
        ) from None
    sha = hashlib.sha256(raw).hexdigest()
    prefix = s.metaflow_s3_root.removeprefix("s3://").partition("/")[2].strip("/")
    key = "/".join(part for part in (prefix, "datasets", f"{s.data_file.stem}-{sha}.csv") if part)
    client = s3_client(s)
    try:
        client.head_object(Bucket=s.metaflow_bucket, Key=key)
    except ClientError:
        client.put_object(Bucket=s.metaflow_bucket, Key=key, Body=raw)
    return f"s3://{s.metaflow_bucket}/{key}", sha


# ## Deployment: the pool, the deployment and crash detection, all idempotent
def deploy(s: P3Settings) -> str:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):  # idempotent
        client.create_work_pool(WorkPoolCreate(name=s.work_pool, type="process"))
    deployment_id = train_one.from_source(source=str(PATTERN_DIR), entrypoint="flow.py:train_one").deploy(
        name=s.deployment,
        work_pool_name=s.work_pool,
        # Flow runs send heartbeats, so a run whose process dies is detected.
        job_variables={"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(s.heartbeat_seconds)}},
        tags=["p3"],
        description="One Metaflow training run (trainflow.py), tagged with this flow run's id.",
        print_next_steps=False,
        ignore_warnings=True,
    )
    ensure_crash_detection(s, str(deployment_id))
    return str(deployment_id)


def ensure_crash_detection(s: P3Settings, deployment_id: str) -> None:
    """A killed worker takes its flow run's process with it, and nothing is left
    to report the crash. Prefect's answer is heartbeats plus a proactive
    automation: no heartbeat (and no final state) within `crash_after_seconds`
    -> the run is set CRASHED. The fan-out then resubmits it."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    trigger = EventTrigger(
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.id": f"prefect.deployment.{deployment_id}"},
        after={"prefect.flow-run.heartbeat"},
        expect={
            "prefect.flow-run.heartbeat",
            "prefect.flow-run.Completed",
            "prefect.flow-run.Failed",
            "prefect.flow-run.Cancelled",
            "prefect.flow-run.Crashed",
        },
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive,
        threshold=1,
        within=timedelta(seconds=s.crash_after_seconds),
    )
    actions = [
        ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"no heartbeat for {s.crash_after_seconds} s: the process running this flow run is gone",
        )
    ]
    name = f"{s.deployment}-crash-detection"
    try:
        automation = Automation.read(name=name)
    except ValueError:
        description = "Marks p3 runs CRASHED when heartbeats stop"
        Automation(name=name, description=description, trigger=trigger, actions=actions).create()
        return
    automation.trigger, automation.actions, automation.enabled = trigger, actions, True
    automation.update()


def online_workers(s: P3Settings) -> list[str]:
    with get_client(sync_client=True) as client:
        workers = client.read_workers_for_work_pool(s.work_pool, limit=200, offset=0)
    return sorted(w.name for w in workers if str(getattr(w.status, "value", w.status)).upper() == "ONLINE")


# ## One training run: the deployment's flow, executed by a worker
@flow(name=CHILD_FLOW, log_prints=True)
def train_one(
    data_url: str, data_version: str = "", n_estimators: int = 50, max_depth: int = 8, folds: int = 3, seed: int = 0
) -> dict:
    """Run trainflow.py with Metaflow's CLI and tag the run with this flow run's id."""
    from metaflow import Run, namespace

    logger = get_run_logger()
    flow_run_id = str(runtime.flow_run.id)
    worker = worker_of(flow_run_id)
    if worker:
        # A process worker's flow runs are its children: they die with it, as
        # on a lost host, instead of crashing at their next log line after the
        # work is done. Heartbeats stop, the automation marks the run CRASHED
        # and the fan-out resubmits it to a live worker.
        _die_with_parent()
    commit = git_commit()
    tags = [f"{LINK_TAG}:{flow_run_id}", f"{GIT_TAG}:{commit}"] + ([f"prefect_worker:{worker}"] if worker else [])
    params = dict(n_estimators=n_estimators, max_depth=max_depth, folds=folds, seed=seed)
    logger.info("worker %s starts Metaflow %s with %s", worker or "(none: run in-process)", METAFLOW_FLOW, params)
    status, stdout, stderr, run_id = run_metaflow(
        dict(data_url=data_url, data_version=data_version, **params), tags, flow_run_id
    )
    if run_id is None:  # the CLI exited before Metaflow allocated a run id
        raise P3Error(
            f"Metaflow did not start a run of {METAFLOW_FLOW}: {_exception_line(stderr) or _tail(stderr, 6)}",
            "check the parameters and the Metaflow settings in .env.example",
        )
    namespace(None)
    run = Run(f"{METAFLOW_FLOW}/{run_id}")
    if f"{LINK_TAG}:{flow_run_id}" not in run.tags:
        raise P3Error(
            f"Metaflow run {run.pathspec} does not carry this flow run's tag {LINK_TAG}:{flow_run_id}: "
            "another run was given the same run id",
            "give every process the same P3_METAFLOW_METADATA_DIR (run starts are serialised there)",
        )
    for line in stdout.splitlines()[-8:]:
        logger.info("metaflow: %s", line)
    if status != 0 or not run.successful:
        raise describe_failure(run.pathspec, stderr)
    data = run.data
    create_markdown_artifact(
        markdown=(
            f"**Metaflow run** `{run.pathspec}` (tag `{LINK_TAG}:{flow_run_id}`)\n\n"
            f"| field | value |\n|---|---|\n| cv_accuracy | {data.cv_accuracy:.4f} |\n"
            f"| n_estimators | {n_estimators} |\n| max_depth | {max_depth} |\n| folds | {folds} |\n"
            f"| data | `{data_url}` |\n| data sha256 | `{data.data_sha256}` |\n| worker | {worker or '-'} |\n"
            f"| git commit | `{commit}` |\n"
        ),
        description=f"Metaflow run {run.pathspec}",
    )
    return {"pathspec": run.pathspec, "cv_accuracy": data.cv_accuracy, "data_sha256": data.data_sha256}


def run_metaflow(parameters: dict, tags: list[str], flow_run_id: str) -> tuple[int, str, str, str | None]:
    """`python trainflow.py run ...`, fenced to this flow run.

    A Metaflow run keeps going only while its Prefect flow run does. Once
    Prefect has given up on a flow run (CRASHED, and resubmitted; or
    cancelled), a Metaflow run left going would finish a model that no Prefect
    run owns: a duplicate of the resubmitted run. So the runtime gets a
    session of its own, and the whole session is killed when the flow run
    reaches a final state or this process dies (the parent-death signal, on
    Linux). A run stopped that way never reaches `end`, so it is never
    `successful`. Returns (exit code, stdout, stderr, run id)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run_id_file, out, err = Path(tmp) / "run-id", Path(tmp) / "stdout", Path(tmp) / "stderr"
        command = [sys.executable, str(TRAINFLOW), "--no-pylint", "run", "--run-id-file", str(run_id_file)]
        for name, value in parameters.items():
            command += [f"--{name}", str(value)]
        for tag in tags:
            command += ["--tag", tag]
        with out.open("w") as stdout, err.open("w") as stderr:
            with _run_start_lock():
                process = subprocess.Popen(
                    command,
                    cwd=PATTERN_DIR,
                    env=os.environ | SETTINGS.metaflow_env(),
                    stdout=stdout,
                    stderr=stderr,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
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
                f"{METAFLOW_FLOW}/{run_id} was stopped so that it cannot finish a second time",
                "nothing to do: the fan-out resubmits crashed runs",
            )
        return process.returncode, out.read_text(), err.read_text(), run_id or None


@contextlib.contextmanager
def _run_start_lock():
    """Serialise Metaflow run-id allocation across the processes that share
    the metadata folder. The local metadata provider makes a run id from the
    time in microseconds, and two workers starting runs at once were given
    the same id here: their runs wrote into one pathspec. So runs start one
    at a time under an exclusive lock in that folder, held until Metaflow has
    written its run id (about as long as Metaflow's start-up)."""
    import fcntl

    SETTINGS.metaflow_metadata_dir.mkdir(parents=True, exist_ok=True)
    with (SETTINGS.metaflow_metadata_dir / ".p3-run-start.lock").open("w") as lock:
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
    import subprocess

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


def _die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux; elsewhere a no-op).
    Also runs between fork and exec, so it only calls a function resolved
    beforehand: no import, no lock."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def git_commit() -> str:
    """The commit of the code this run executes (`-dirty` when this folder has
    uncommitted changes), or 'none (not a git checkout)'."""
    import subprocess

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


def worker_of(flow_run_id: str) -> str:
    """The worker that claimed this flow run (its label); empty when none did."""
    with get_client(sync_client=True) as client:
        labels = client.read_flow_run(flow_run_id).labels or {}
    return str(labels.get("prefect.worker.name", ""))


def describe_failure(pathspec: str, stderr: str) -> P3Error:
    """'Metaflow run X failed in task X/step/id: <the exception>', from the Client,
    with the fix that fits the cause."""
    from metaflow import Run, namespace

    namespace(None)
    where, error = pathspec, ""
    for step in Run(pathspec):
        for task in step:
            if not task.successful:
                where, error = task.pathspec, _exception_line(task.stderr)
    error = error or _exception_line(stderr) or _tail(stderr, 5) or "no error text"
    if "Could not connect to the endpoint URL" in error or "EndpointConnectionError" in error:
        fix = f"Metaflow cannot reach S3 at {SETTINGS.s3_endpoint_url}: `make up`, or fix P3_S3_ENDPOINT_URL"
    elif "bad parameter" in error:
        fix = "pass values inside the ranges named (flow.py --grid N_ESTIMATORSxMAX_DEPTH,... --folds N)"
    else:
        fix = f"read the task's log: python trainflow.py logs {where.split('/', 1)[1]}"
    place = f"in task {where}" if where != pathspec else "before its first step"
    return P3Error(f"Metaflow run {pathspec} failed {place}: {error}", fix)


def _exception_line(text: str) -> str:
    """The last 'SomeError: message' line of a traceback."""
    for line in reversed(text.splitlines()):
        head = line.strip().split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and ":" in line:
            return line.strip()
    return ""


def _tail(text: str, lines: int) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


# ## The fan-out: N deployment runs, resubmit the crashed, read results from S3
@flow(name=PARENT_FLOW, log_prints=True)
def fan_out(grid: str = DEFAULT_GRID, folds: int = 3, seed: int = 0, run_key: str = "") -> dict:
    logger = get_run_logger()
    points = parse_grid(grid)
    data_url, data_version = publish_dataset(SETTINGS)
    logger.info("dataset %s (sha256 %s)", data_url, data_version[:12])
    deployment = f"{CHILD_FLOW}/{SETTINGS.deployment}"
    parent_id = str(runtime.flow_run.id)
    logical = logical_run_key(SETTINGS, data_version, points, folds, seed, run_key)
    logger.info("logical run %s", logical)
    attempts: dict[int, list] = {i: [] for i in range(len(points))}
    next_try = dict.fromkeys(attempts, 0)

    def submit(i: int) -> None:
        point = points[i]
        while True:
            # The child's idempotency key: this logical run, this grid point, this
            # try. Prefect returns the existing flow run for a key it has seen, so
            # two fan-outs of one logical run share each child (one training).
            child = run_deployment(
                deployment,
                parameters=dict(
                    data_url=data_url,
                    data_version=data_version,
                    n_estimators=point.n_estimators,
                    max_depth=point.max_depth,
                    folds=folds,
                    seed=seed,
                ),
                timeout=0,  # submit now, wait below for all of them together
                tags=["p3", f"p3-grid-{point.label}", f"p3-run-{logical}"],
                idempotency_key=f"p3:{logical}:{point.label}:{next_try[i]}",
            )
            next_try[i] += 1
            if child.state and child.state.is_final() and not child.state.is_completed():
                # An earlier fan-out's try that failed or crashed: train it again.
                logger.info(
                    "%s: try %s ended %s earlier, submitting the next", point.label, child.name, child.state.type.value
                )
                continue
            break
        attempts[i].append(child.id)
        logger.info("submitted %s as flow run %s (attempt %d)", point.label, child.name, len(attempts[i]))

    for i in attempts:
        submit(i)
    final: dict[int, object] = {}
    deadline = time.monotonic() + SETTINGS.fan_out_timeout
    with get_client(sync_client=True) as client:
        while len(final) < len(points):
            time.sleep(1.0)
            # One request for every run still open: on two cores the API server's
            # CPU is shared with the runs themselves.
            latest = {i: attempts[i][-1] for i in attempts if i not in final}
            runs = {r.id: r for r in client.read_flow_runs(flow_run_filter=_ids_filter(latest.values()))}
            for i, run_id in latest.items():
                child = runs.get(run_id)
                if child is None or not child.state or not child.state.is_final():
                    continue
                if child.state.is_crashed() and len(attempts[i]) <= SETTINGS.crash_resubmits:
                    logger.warning("%s crashed (%s): resubmitting", child.name, child.state.message)
                    submit(i)
                else:
                    final[i] = child
            if len(final) < len(points) and time.monotonic() > deadline:
                waiting = [str(attempts[i][-1]) for i in attempts if i not in final]
                raise P3Error(
                    f"{len(waiting)} run(s) not finished after {SETTINGS.fan_out_timeout:.0f} s: {', '.join(waiting)}",
                    f"check that workers poll the pool {SETTINGS.work_pool!r} (`python worker.py NAME`), "
                    "or raise P3_FAN_OUT_TIMEOUT",
                )

    failed = {i: child for i, child in final.items() if not child.state.is_completed()}
    if failed:
        lines = [
            f"{points[i].label} (flow run {c.name}, {c.id}) {c.state.type.value}: "
            + (c.state.message or "").removeprefix("Flow run encountered an exception: ").removeprefix("P3Error: ")
            for i, c in sorted(failed.items())
        ]
        raise P3Error(
            f"{len(failed)} of {len(points)} training runs failed, so none was compared or published:\n  "
            + "\n  ".join(lines),
            "each line names the Metaflow run or task and its own fix; the others finished and stay in Metaflow",
        )

    rows = [collect(points[i], final[i], len(attempts[i]), parent_id) for i in sorted(final)]
    best = max(rows, key=lambda r: r["cv_accuracy"])
    create_table_artifact(
        key="p3-fan-out",
        table=rows,
        description=(
            f"Fan-out of {len(rows)} Metaflow runs on dataset sha256 {data_version[:12]}; "
            f"best: {best['metaflow_pathspec']} ({best['cv_accuracy']:.4f})"
        ),
    )
    return {
        "flow_run_id": parent_id,
        "logical_run": logical,
        "data_url": data_url,
        "data_version": data_version,
        "rows": rows,
        "best": best,
    }


def _ids_filter(ids):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return FlowRunFilter(id=FlowRunFilterId(any_=list(ids)))


def collect(point: GridPoint, child, attempts: int, parent_id: str) -> dict:
    """Read one finished run back through the Metaflow Client (artifacts from S3),
    found by its Prefect tag: exactly one successful Metaflow run per flow run.
    `reused_from`: the fan-out that submitted the child, when it is another one."""
    from metaflow import Flow, namespace

    submitted_by = ""
    if child.parent_task_run_id:
        with get_client(sync_client=True) as client:
            submitted_by = str(client.read_task_run(child.parent_task_run_id).flow_run_id)

    namespace(None)
    runs = [r for r in Flow(METAFLOW_FLOW).runs(f"{LINK_TAG}:{child.id}") if r.successful]
    if len(runs) != 1:
        raise P3Error(
            f"flow run {child.name} ({child.id}) has {len(runs)} successful Metaflow runs tagged {LINK_TAG}:{child.id}",
            "expected exactly one: check that every process shares P3_METAFLOW_METADATA_DIR and P3_METAFLOW_S3_ROOT",
        )
    run = runs[0]
    data = run.data
    return {
        "grid": point.label,
        "metaflow_pathspec": run.pathspec,
        "n_estimators": data.n_estimators,
        "max_depth": data.max_depth,
        "cv_accuracy": round(float(data.cv_accuracy), 4),
        "data_sha256": data.data_sha256,
        "prefect_flow_run": child.name,
        "prefect_flow_run_id": str(child.id),
        "worker": (child.labels or {}).get("prefect.worker.name", ""),
        "attempts": attempts,
        "reused_from": submitted_by if submitted_by and submitted_by != parent_id else "",
    }


# ## Command line
def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--folds", type=int, default=3, help="cross-validation folds (2-10)")
    common.add_argument("--seed", type=int, default=0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[common])
    parser.add_argument("--grid", default=DEFAULT_GRID, help=f"N_ESTIMATORSxMAX_DEPTH,... (default {DEFAULT_GRID})")
    parser.add_argument(
        "--run-key",
        default="",
        help="part of the logical run: the same grid, folds, seed and data reuse the finished runs "
        "unless the run key differs (any text, e.g. a date, to train again)",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("deploy", help="create/update the work pool, deployment and crash automation")
    one = sub.add_parser("train-one", parents=[common], help="one training run in this process, no worker")
    one.add_argument("--n-estimators", type=int, default=50)
    one.add_argument("--max-depth", type=int, default=8)
    args = parser.parse_args(argv)
    try:
        if args.command == "train-one":
            preflight(SETTINGS)
            data_url, data_version = publish_dataset(SETTINGS)
            state = train_one(
                data_url=data_url,
                data_version=data_version,
                n_estimators=args.n_estimators,
                max_depth=args.max_depth,
                folds=args.folds,
                seed=args.seed,
                return_state=True,
            )
            print(f"Result: pattern=p3-one status=ok pathspec={_ok(state)['pathspec']}")
            return 0
        parse_grid(args.grid)  # a typo fails before anything is deployed
        preflight(SETTINGS)
        deployment_id = deploy(SETTINGS)
        print(f"deployment {CHILD_FLOW}/{SETTINGS.deployment} ({deployment_id}) on work pool {SETTINGS.work_pool!r}")
        if args.command == "deploy":
            return 0
        workers = online_workers(SETTINGS)
        if not workers:
            raise P3Error(
                f"no worker is polling the work pool {SETTINGS.work_pool!r}",
                "start some: `make pattern-3` starts two, or run `python worker.py p3-worker-1` in another terminal",
            )
        print(f"workers online: {', '.join(workers)}")
        t0 = time.monotonic()
        summary = _ok(
            fan_out(grid=args.grid, folds=args.folds, seed=args.seed, run_key=args.run_key, return_state=True)
        )
        report(summary, time.monotonic() - t0)
        return 0
    except P3Error as exc:
        print(exc.render(), file=sys.stderr)
        return 1


def _ok(state) -> dict:
    """The flow's return value, or its P3Error re-raised for the command line."""
    if state.is_completed():
        return state.result()
    error = state.result(raise_on_failure=False)
    if isinstance(error, P3Error):
        raise error
    raise P3Error(
        f"the flow run ended {state.type.value}: {state.message}", "read the flow run's logs in the Prefect UI"
    )


def report(summary: dict, seconds: float) -> None:
    rows, best = summary["rows"], summary["best"]
    ui = SETTINGS.prefect_api_url.removesuffix("/api")
    print(
        f"\nFan-out {summary['flow_run_id']} in {seconds:.1f} s, logical run {summary['logical_run']}, "
        f"dataset sha256 {summary['data_version'][:12]}:"
    )
    print(f"  {'grid':<8} {'worker':<24} {'prefect flow run':<26} {'metaflow run':<36} cv_accuracy")
    for r in rows:
        flag = "  <- best" if r is best else ""
        retry = f" (attempt {r['attempts']})" if r["attempts"] > 1 else ""
        retry += " (reused)" if r["reused_from"] else ""
        print(
            f"  {r['grid']:<8} {r['worker']:<24} {r['prefect_flow_run'] + retry:<26} "
            f"{r['metaflow_pathspec']:<36} {r['cv_accuracy']:.4f}{flag}"
        )
    print(f"  Prefect UI: {ui}/runs/flow-run/{summary['flow_run_id']} (artifact p3-fan-out)")
    print(f"  Metaflow:   Flow('{METAFLOW_FLOW}').runs('{LINK_TAG}:<id>') reads any of them back from S3")
    workers = sorted({r["worker"] for r in rows})
    reused = sum(bool(r["reused_from"]) for r in rows)
    if reused:
        print(
            f"  {reused} of {len(rows)} run(s) reused from an earlier fan-out of this logical run "
            "(same data, grid, folds, seed): pass --run-key to train again"
        )
    print(
        f"Result: pattern=p3 status=ok runs={len(rows)} workers={len(workers)} best={best['metaflow_pathspec']} "
        f"best_grid={best['grid']} cv_accuracy={best['cv_accuracy']:.4f} data_sha256={summary['data_version'][:12]} "
        f"prefect_flow_run={summary['flow_run_id']} logical_run={summary['logical_run']} reused={reused}"
    )


if __name__ == "__main__":
    sys.exit(main())
