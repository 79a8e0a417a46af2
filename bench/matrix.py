"""The measured decision matrix: the parts of `make bench` that compare the tools.

Called by bench/run.py on the benchmark's own stack (never on yours):

1. side by side: the same workload (bench/runners/workload.py: a 10-task chain
   and a 10-way fan-out plus its join, each task ~30 ms of SHA-256) as plain
   Python, a Prefect flow, an Airflow DAG (`DAG.test()`), a kfp.local pipeline
   and a Metaflow flow, each in the environment its pattern uses, and as
   Dagster assets and a Flyte workflow, each in an environment of its own
   (bench/envs/: no pattern uses them). Runners and
   shapes are interleaved, BENCH_REPEAT rounds. Per run: the whole process
   (interpreter start to exit), the import of the tool, and the run itself;
   per-task overhead = (run - plain Python's run of the same shape) / tasks.
   Every run's result is checked against the plain answer.
2. what Dagster and Flyte claim as their strengths, where a local run can
   show it (strengths()): Dagster's typed outputs rejecting a bad value before
   the downstream step runs, Flyte's dynamic workflow fanning out a number of
   tasks decided at run time.
3. setup cost: a fresh environment per tool (`uv sync --locked` into a new
   folder, with uv's cache as it is, and once with an empty cache: every
   wheel downloaded), Airflow's database creation, and (in run.py) the stack's
   cold and warm start.
4. each pattern's warm run split into start-up, orchestration and work, from
   the orchestrators' own records of the run that was timed (see split_*).

The results go into run.py's JSON; bench/report.py turns them into the
decision matrix (markdown and PNG).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
RUNNERS_DIR = ROOT / "bench" / "runners"
PATTERNS = ROOT / "patterns"
sys.path.insert(0, str(RUNNERS_DIR))
import workload  # noqa: E402


@dataclass(frozen=True)
class Runner:
    name: str
    title: str
    project: Path  # the environment it runs in: the pattern's own
    tool: str = ""  # the runner script's tool, when two runners share one (default: name)

    @property
    def python(self) -> Path:
        return self.project / ".venv" / "bin" / "python"

    @property
    def script(self) -> Path:
        return RUNNERS_DIR / f"{self.tool or self.name}_runner.py"


RUNNERS = [
    Runner("plain", "plain Python", ROOT),
    Runner("prefect", "Prefect flow", PATTERNS / "p4_github_actions_prefect"),
    Runner("airflow", "Airflow DAG (`dags test`)", PATTERNS / "p2_airflow_kfp"),
    Runner("kfp", "KFP pipeline (kfp.local)", PATTERNS / "p2_airflow_kfp" / "pipeline"),
    Runner("metaflow", "Metaflow flow (S3 datastore, as pattern 3)", PATTERNS / "p3_metaflow_prefect"),
    # The same flow with Metaflow's default local datastore: what the S3 datastore costs per task.
    Runner("metaflow_local", "Metaflow flow (local datastore)", PATTERNS / "p3_metaflow_prefect", tool="metaflow"),
    # The guide's other two orchestrators, each in an environment of its own.
    Runner("dagster", "Dagster assets (`materialize`, in-process)", ROOT / "bench" / "envs" / "dagster"),
    Runner("flyte", "Flyte workflow (flytekit, local run)", ROOT / "bench" / "envs" / "flyte"),
]
# The environments a user installs (make setup): what a fresh install costs.
ENVIRONMENTS = {
    "root (tests, tooling)": ROOT,
    "local stack": ROOT / "infra" / "local",
    "pattern 1 (Prefect, MLflow, DVC)": PATTERNS / "p1_prefect_mlflow",
    "pattern 2 (Airflow)": PATTERNS / "p2_airflow_kfp",
    "pattern 2 pipeline (KFP)": PATTERNS / "p2_airflow_kfp" / "pipeline",
    "pattern 3 (Metaflow, Prefect)": PATTERNS / "p3_metaflow_prefect",
    "pattern 4 (Prefect)": PATTERNS / "p4_github_actions_prefect",
    "bench: Dagster": ROOT / "bench" / "envs" / "dagster",
    "bench: Flyte": ROOT / "bench" / "envs" / "flyte",
}


def runner_named(name: str) -> Runner:
    return next(r for r in RUNNERS if r.name == name)


class MatrixError(RuntimeError):
    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


def runner_env(base: dict[str, str], runner: Runner, tmp: Path) -> dict[str, str]:
    """The environment of one runner: the stack's endpoints from `base`, its
    tool's settings, its environment's bin first on PATH (kfp.local's
    components call `python3`), telemetry off."""
    env = dict(base)
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{runner.python.parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if runner.name == "prefect":
        env["PREFECT_LOGGING_LEVEL"] = "WARNING"
    elif runner.name == "airflow":
        env["BENCH_AIRFLOW_HOME"] = str(tmp / "airflow")
    elif runner.name == "kfp":
        env["BENCH_KFP_ROOT"] = str(tmp / "kfp-root")
    elif runner.tool == "metaflow" or runner.name == "metaflow":
        # Pattern 3's datastore settings (patterns/p3_metaflow_prefect/settings.py),
        # on the benchmark's stack, under a prefix of their own.
        env.update(
            {
                "METAFLOW_DEFAULT_DATASTORE": "s3",
                "METAFLOW_DATASTORE_SYSROOT_S3": "s3://metaflow/bench/metaflow",
                "METAFLOW_DATATOOLS_S3ROOT": "s3://metaflow/bench/data",
                "METAFLOW_S3_ENDPOINT_URL": base["S3_ENDPOINT_URL"],
                "METAFLOW_DEFAULT_METADATA": "local",
                "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp / "metaflow"),
                "AWS_ACCESS_KEY_ID": base["S3_ACCESS_KEY_ID"],
                "AWS_SECRET_ACCESS_KEY": base["S3_SECRET_ACCESS_KEY"],
                "AWS_DEFAULT_REGION": "us-east-1",
                "METAFLOW_USER": "bench",
                # Pattern 3's retry budget: fail in seconds on a dead S3, not minutes.
                "METAFLOW_S3_RETRY_COUNT": "1",
                "METAFLOW_S3_TRANSIENT_RETRY_COUNT": "1",
                "METAFLOW_S3_CLIENT_RETRY_CONFIG": '{"max_attempts": 3, "mode": "standard"}',
            }
        )
        if runner.name == "metaflow_local":
            env["METAFLOW_DEFAULT_DATASTORE"] = "local"
    elif runner.name == "dagster":
        # Runs use an ephemeral instance in a temporary folder; this home only
        # keeps Dagster from writing anywhere else, telemetry off.
        home = tmp / "dagster-home"
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env["DAGSTER_HOME"] = str(home)
    elif runner.name == "flyte":
        env["FLYTE_SDK_LOGGING_LEVEL"] = "30"  # warnings only
        # flytekit leaves a local sandbox folder per process in the temp folder: the bench's own.
        env["TMPDIR"] = str(tmp / "flyte-tmp")
        Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    return env


def airflow_db(base: dict[str, str], tmp: Path, timeout: float) -> float:
    """Create the Airflow runner's SQLite database (`airflow db migrate`), timed."""
    home = tmp / "airflow"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    airflow = runner_named("airflow").python.parent / "airflow"
    env = dict(base) | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    t0 = time.perf_counter()
    done = subprocess.run([str(airflow), "db", "migrate"], env=env, capture_output=True, text=True, timeout=timeout)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise MatrixError("`airflow db migrate` failed for the Airflow runner", done.stdout + done.stderr)
    return took


def _run(runner: Runner, script: Path, args: list[str], env: dict[str, str], timeout: float, what: str):
    """One process in the runner's environment; raise with its output unless it exits 0."""
    try:
        done = subprocess.run(
            [str(runner.python), str(script), *args],
            env=env,
            cwd=RUNNERS_DIR,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise MatrixError(f"{what} did not finish in {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise MatrixError(f"{what} failed with exit code {done.returncode}", done.stdout + done.stderr)
    return done


def run_runner(runner: Runner, shape: str, env: dict[str, str], timeout: float) -> dict[str, object]:
    """One run of one runner: its JSON report plus the process's wall clock, its result checked."""
    t0 = time.perf_counter()
    done = _run(runner, runner.script, [shape], env, timeout, f"the {runner.name} runner ({shape})")
    wall = time.perf_counter() - t0
    report = check_report(runner, shape, done.stdout, int(env.get("BENCH_ROUNDS") or workload.ROUNDS))
    return report | {"wall_s": round(wall, 4)}


def check_report(runner: Runner, shape: str, stdout: str, rounds: int) -> dict[str, object]:
    """A runner's JSON report (its last line), refused unless it ran `rounds` rounds
    and its result is plain Python's: a runner that skipped work is never timed."""
    try:
        report = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise MatrixError(f"the {runner.name} runner ({shape}) printed no JSON report", stdout) from None
    if report.get("rounds") != rounds:
        raise MatrixError(f"the {runner.name} runner ({shape}) ran {report.get('rounds')} rounds, not {rounds}", stdout)
    want = workload.expected(shape, rounds)
    if report.get("result") != want:
        raise MatrixError(
            f"the {runner.name} runner ({shape}) returned {report.get('result')!r}, "
            f"not plain Python's {want!r}: it did not do the work it reports",
            stdout,
        )
    return report


def side_by_side(base: dict[str, str], tmp: Path, repeat: int, timeout: float, log=print) -> dict[str, object]:
    """Every runner and shape, interleaved, `repeat` rounds; medians and per-task overhead."""
    tmp.mkdir(parents=True, exist_ok=True)
    envs = {r.name: runner_env(base, r, tmp) for r in RUNNERS}
    samples: dict[str, dict[str, list[dict]]] = {r.name: {s: [] for s in workload.SHAPES} for r in RUNNERS}
    migrate = [airflow_db(base, tmp, timeout)]
    log(f"  airflow db migrate (the Airflow runner's database): {migrate[0]:.1f} s")
    for i in range(repeat):
        for runner in RUNNERS:
            for shape in workload.SHAPES:
                report = run_runner(runner, shape, envs[runner.name], timeout)
                samples[runner.name][shape].append(report)
                log(
                    f"  round {i + 1}/{repeat} {runner.name:8} {shape:6}: process {report['wall_s']:6.2f} s, "
                    f"import {report['import_s']:5.2f} s, run {report['run_s']:6.2f} s"
                )
    rows = []
    plain = {s: statistics.median(r["run_s"] for r in samples["plain"][s]) for s in workload.SHAPES}
    for runner in RUNNERS:
        for shape in workload.SHAPES:
            got = samples[runner.name][shape]
            run_s = statistics.median(r["run_s"] for r in got)
            tasks = workload.task_count(shape)
            rows.append(
                {
                    "runner": runner.name,
                    "title": runner.title,
                    "shape": shape,
                    "tasks": tasks,
                    "process_s": statistics.median(r["wall_s"] for r in got),
                    "import_s": statistics.median(r["import_s"] for r in got),
                    "run_s": run_s,
                    "per_task_overhead_s": (run_s - plain[shape]) / tasks,
                    "samples": got,
                }
            )
    return {
        "workload": {
            "tasks": workload.N,
            "rounds": int(base.get("BENCH_ROUNDS") or workload.ROUNDS),
            "shapes": list(workload.SHAPES),
        },
        "rows": rows,
        "airflow_db_migrate_s": migrate,
    }


# ---- the strengths the guide claims for Dagster and Flyte ---------------------------
DAGSTER_CASES = ("good", "wrong_type", "out_of_contract", "untyped")
FLYTE_ROWS = (2_000, 10_000, 50_000)  # 2, 10 and 50 chunks of 1,000 rows, decided at run time


def _json_lines(runner: Runner, script: str, args: list[str], env: dict[str, str], timeout: float) -> list[dict]:
    what = f"{script} {' '.join(args)}"
    done = _run(runner, RUNNERS_DIR / script, args, env, timeout, what)
    try:
        return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    except json.JSONDecodeError:
        raise MatrixError(f"{what} printed a line that is not JSON", done.stdout) from None


def dagster_contract_holds(case: dict) -> bool:
    """What the guide claims: a bad value stops at the typed output; the downstream step never starts."""
    if case["case"] == "good":
        return case["success"] and case["fit_ran"] and case["steps_succeeded"] == ["fit", "readings"]
    if case["case"] == "untyped":  # the control: without a type, the bad value reaches `fit`
        return not case["success"] and case["fit_ran"] and case["failed_step"] == "fit"
    return (
        not case["success"]
        and case["failed_step"] == "readings"
        and "fit" not in case["steps_started"]
        and not case["fit_ran"]
        and "DagsterTypeCheckDidNotPass" in (case["error"] or "")
    )


def flyte_dynamic_holds(run: dict) -> bool:
    """What the guide claims: the fan-out's width comes from the data, at run time, and every task ran."""
    want = -(-run["rows"] // 1000)
    return (
        run["chunks_decided_at_run_time"] == want and run["step_tasks_run"] == want and run["result_is_plain_pythons"]
    )


def strengths(base: dict[str, str], tmp: Path, repeat: int, timeout: float, log=print) -> dict[str, object]:
    """Dagster's typed contract (each case `repeat` times) and Flyte's dynamic fan-out
    (each size `repeat` times): what happened, how long it took, and whether the
    guide's claim held. A claim that does not hold is reported, not raised."""
    dagster, flyte = runner_named("dagster"), runner_named("flyte")
    d_env, f_env = runner_env(base, dagster, tmp), runner_env(base, flyte, tmp)
    cases: dict[str, list[dict]] = {c: [] for c in DAGSTER_CASES}
    sizes: dict[int, list[dict]] = {r: [] for r in FLYTE_ROWS}
    static = ""
    for i in range(repeat):
        for case in DAGSTER_CASES:
            (got,) = _json_lines(dagster, "dagster_contract.py", [case], d_env, timeout)
            cases[case].append(got)
            log(
                f"  round {i + 1}/{repeat} dagster {case:15}: success={got['success']} "
                f"failed_step={got['failed_step']} fit_ran={got['fit_ran']} {got['run_s']:.2f} s"
            )
        *runs, last = _json_lines(flyte, "flyte_dynamic.py", [str(r) for r in FLYTE_ROWS], f_env, timeout)
        static = last["static_workflow"]
        for run in runs:
            sizes[run["rows"]].append(run)
            log(
                f"  round {i + 1}/{repeat} flyte rows={run['rows']:6}: chunks={run['chunks_decided_at_run_time']} "
                f"steps run={run['step_tasks_run']} correct={run['result_is_plain_pythons']} {run['run_s']:.2f} s"
            )
    return {
        "dagster_contract": [
            samples[-1]
            | {"run_s": statistics.median(s["run_s"] for s in samples), "n": len(samples)}
            | {"claim_holds": all(dagster_contract_holds(s) for s in samples)}
            for samples in cases.values()
        ],
        "flyte_dynamic": [
            samples[-1]
            | {"run_s": statistics.median(s["run_s"] for s in samples), "n": len(samples)}
            | {"claim_holds": all(flyte_dynamic_holds(s) for s in samples)}
            for samples in sizes.values()
        ],
        "flyte_static_workflow": static,
    }


# ---- setup cost -------------------------------------------------------------------
def env_installs(base: dict[str, str], uv: str, tmp: Path, repeat: int, timeout: float, log=print) -> list[dict]:
    """`uv sync --locked` of each environment into a new folder: `repeat` times with
    uv's cache as it is (what a second checkout costs), once with an empty cache
    (every wheel downloaded from the index: the first install on a machine)."""
    rows = []
    for title, project in ENVIRONMENTS.items():
        warm, cold, size = [], None, 0
        for i in range(repeat + 1):
            target = tmp / "venv"
            shutil.rmtree(target, ignore_errors=True)
            env = dict(base) | {"UV_PROJECT_ENVIRONMENT": str(target)}
            env.pop("VIRTUAL_ENV", None)
            empty_cache = i == repeat
            if empty_cache:
                env["UV_CACHE_DIR"] = str(tmp / "uv-cache-empty")
                shutil.rmtree(env["UV_CACHE_DIR"], ignore_errors=True)
            t0 = time.perf_counter()
            done = subprocess.run(
                [uv, "sync", "--locked", "--quiet", "--project", str(project)],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            took = time.perf_counter() - t0
            if done.returncode != 0:
                raise MatrixError(f"`uv sync --locked --project {project}` failed", done.stdout + done.stderr)
            if empty_cache:
                cold = took
                size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file() and not f.is_symlink())
                shutil.rmtree(env["UV_CACHE_DIR"], ignore_errors=True)
            else:
                warm.append(took)
        shutil.rmtree(tmp / "venv", ignore_errors=True)
        row = {
            "environment": title,
            "project": str(project.relative_to(ROOT)) or ".",
            "cached_s": statistics.median(warm),
            "cached_samples_s": warm,
            "empty_cache_s": cold,
            "size_mb": round(size / 1e6),
        }
        rows.append(row)
        log(f"  {title}: cached {row['cached_s']:.1f} s, empty cache {cold:.1f} s, {row['size_mb']} MB")
    return rows


# ---- each pattern's warm run, split ------------------------------------------------
def _t(value: str) -> float:
    """An orchestrator's timestamp (ISO 8601, with or without a zone; UTC) as epoch seconds."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _union(intervals: list[tuple[float, float]]) -> float:
    """Seconds during which at least one interval runs (parallel work counted once)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def split(wall: float, outer: list[tuple[float, float]], work: list[tuple[float, float]], **extra) -> dict:
    """wall = [CD stages +] start-up and exit + orchestration + work, where `outer`
    are the outer orchestrator's run intervals and `work` the units that run model
    code (or the inner tool's runs) inside them; `process_start_s` (in `extra`) is
    time inside the outer runs spent starting processes, counted as start-up."""
    orchestrated = _union(outer)
    worked = _union(work)
    inside = extra.get("process_start_s", 0.0)  # process starts inside the outer runs count as start-up
    return {
        "wall_s": round(wall, 3),
        "startup_exit_s": round(wall - orchestrated - extra.get("cd_stages_s", 0.0) + inside, 3),
        "orchestration_s": round(orchestrated - worked - inside, 3),
        "work_s": round(worked, 3),
        **extra,
    }


def _prefect(env: dict[str, str], method: str, path: str, body: dict | None = None):
    """A Prefect API call with the stack's auth string, and a CSRF token for a write."""
    api = env["PREFECT_API_URL"].rstrip("/")
    auth = base64.b64encode(env.get("PREFECT_API_AUTH_STRING", "").encode()).decode()
    headers = {"Authorization": f"Basic {auth}"}
    if method != "GET":
        client = f"bench-{os.getpid()}"
        token = httpx.get(f"{api}/csrf-token", params={"client": client}, headers=headers, timeout=30)
        if token.status_code == 200:  # 422: the server does not check CSRF tokens
            headers |= {"Prefect-Csrf-Token": token.json()["token"], "Prefect-Csrf-Client": client}
    response = httpx.request(method, f"{api}{path}", json=body, headers=headers, timeout=30)
    response.raise_for_status()
    return response.json()


def _interval(run: dict) -> tuple[float, float]:
    if not run.get("start_time") or not run.get("end_time"):
        state = run.get("state_type")
        raise MatrixError(f"{run.get('name')} ({run.get('id')}) has no start or end time: state {state}")
    return _t(run["start_time"]), _t(run["end_time"])


def _task_runs(env: dict[str, str], flow_run_ids: list[str]) -> list[dict]:
    return _prefect(env, "POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": flow_run_ids}}, "limit": 200})


def _task_name(task_run: dict) -> str:
    return task_run["task_key"].split("-")[0] if task_run.get("task_key") else task_run["name"].rsplit("-", 1)[0]


# Pattern 1: the Prefect flow run; work = its tasks that run model code.
P1_WORK = {"validate", "preprocess", "train", "evaluate_against_champion", "serve_and_score"}


def split_p1(env: dict[str, str], result: dict[str, str], wall: float) -> dict:
    flow_run = _prefect(env, "GET", f"/flow_runs/{result['prefect_flow_run']}")
    work = [_interval(t) for t in _task_runs(env, [flow_run["id"]]) if _task_name(t) in P1_WORK and t.get("end_time")]
    return split(wall, [_interval(flow_run)], work, work_units=sorted(P1_WORK))


# Pattern 2: the Airflow DAG run (its SQLite database), from its first task's start
# to its last task's end (`DAG.test()` records the logical date as the run's
# start_date); work = the submit_pipeline task, i.e. the whole KFP pipeline run
# (KFP's own per-task cost included).
def _p2_db(env: dict[str, str], query: str, *args) -> list[tuple]:
    """Pattern 2's Airflow services' metadata database (SQLite, read-only)."""
    database = Path(env["P2_STATE_DIR"]) / "airflow" / "airflow.db"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return db.execute(query, args).fetchall()


def split_p2(env: dict[str, str], result: dict[str, str], wall: float) -> dict:
    """Orchestration: from the ETL run's first task to the training run's last (the
    handoff through the asset event included); work: submit_pipeline."""
    tasks = _p2_db(
        env,
        "SELECT task_id, start_date, end_date FROM task_instance WHERE dag_id IN ('p2_etl', 'p2_train') "
        "AND run_id IN (?, ?) AND start_date IS NOT NULL AND end_date IS NOT NULL",
        result["etl_run"],
        result["train_run"],
    )
    if not tasks:
        raise MatrixError(f"no finished task of DAG runs {result['etl_run']}, {result['train_run']}")
    run = (min(_t(a) for _, a, _ in tasks), max(_t(b) for _, _, b in tasks))
    work = [(_t(a), _t(b)) for task_id, a, b in tasks if task_id == "submit_pipeline"]
    return split(wall, [run], work, work_units=["submit_pipeline (the KFP pipeline run)"])


def p2_asset_to_training_start(env: dict[str, str], result: dict[str, str]) -> float:
    """Seconds from the ETL run's asset event to the start of the training run the
    scheduler created from it (the scheduler's loop, then the run's queue)."""
    rows = _p2_db(
        env,
        "SELECT e.timestamp, r.start_date FROM asset_event e JOIN dagrun_asset_event d ON d.event_id = e.id "
        "JOIN dag_run r ON r.id = d.dag_run_id WHERE e.source_run_id = ? AND r.run_id = ?",
        result["etl_run"],
        result["train_run"],
    )
    if not rows or rows[0][1] is None:
        raise MatrixError(f"no asset event of {result['etl_run']} that started {result['train_run']}")
    return round(_t(rows[0][1]) - _t(rows[0][0]), 3)


# Pattern 3: the Prefect parent flow run; work = the child deployment runs, each a
# Metaflow run on a worker (Metaflow's own per-task cost included), parallel time once.
def split_p3(env: dict[str, str], result: dict[str, str], wall: float) -> dict:
    parent = _prefect(env, "GET", f"/flow_runs/{result['prefect_flow_run']}")
    children = _prefect(
        env,
        "POST",
        "/flow_runs/filter",
        {"flow_runs": {"parent_flow_run_id": {"any_": [parent["id"]]}}, "limit": 200},
    )
    work = [_interval(c) for c in children if c.get("state_type") == "COMPLETED"]
    return split(wall, [_interval(parent)], work, work_units=["child flow runs (one Metaflow run each)"])


# Pattern 4: the whole CD cycle; its lint/test/build/deploy stages are reported on
# their own, the run stage split like the others: the two flow runs (retrain,
# batch-score) on the worker; work = the retrain's train task (scoring happens
# in batch-score's flow body, so it counts as orchestration here).
def split_p4(env: dict[str, str], result: dict[str, str], wall: float, stages: dict[str, float]) -> dict:
    runs = [_prefect(env, "GET", f"/flow_runs/{result[k]}") for k in ("retrain_run", "score_run")]
    work = [_interval(t) for t in _task_runs(env, [runs[0]["id"]]) if _task_name(t) == "train" and t.get("end_time")]
    cd = sum(v for k, v in stages.items() if k != "run")
    # A deployment run is orchestrated from its creation: it waits in the work
    # pool until the worker polls (orchestration), then the worker starts a new
    # process for it (PENDING -> RUNNING: start-up), then it runs.
    outer, process_start = [], 0.0
    for run in runs:
        states = {
            s["type"]: _t(s["timestamp"]) for s in _prefect(env, "GET", f"/flow_run_states/?flow_run_id={run['id']}")
        }
        outer.append((_t(run["created"]), _interval(run)[1]))
        if "PENDING" in states and "RUNNING" in states:
            process_start += states["RUNNING"] - states["PENDING"]
    return split(
        wall,
        outer,
        work,
        cd_stages_s=round(cd, 3),
        process_start_s=round(process_start, 3),
        work_units=["train task"],
    )


def median_split(splits: list[dict]) -> dict:
    keys = [k for k in ("wall_s", "cd_stages_s", "startup_exit_s", "orchestration_s", "work_s") if k in splits[0]]
    return {k: statistics.median(s[k] for s in splits) for k in keys} | {"work_units": splits[0]["work_units"]}
