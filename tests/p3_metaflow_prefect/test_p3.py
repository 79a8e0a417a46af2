"""Pattern 3 against a real local stack: two Prefect workers under the stack's
supervisord, Metaflow on the S3 datastore (SeaweedFS), run the way a user
runs it (`make pattern-3`, `python flow.py`). Asserts on what the pattern
produced: Prefect flow runs, their labels and artifacts, and the Metaflow
runs read back with the Metaflow Client from S3; then a worker killed
mid-run, and each bad input from the issue."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
from pathlib import Path

import pytest
from conftest import PATTERNS, Stack, check_ui, finish, free_port, parse_result, wait_for

pytestmark = pytest.mark.stack

P3 = PATTERNS / "p3_metaflow_prefect"
INSPECT = Path(__file__).with_name("inspect_metaflow.py")
DIGITS_SHA = hashlib.sha256((P3 / "data" / "digits.csv").read_bytes()).hexdigest()
FAN_OUT_URL = re.compile(r"View at \S+/runs/flow-run/([0-9a-f-]{36})")


@pytest.fixture(scope="module")
def p3(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """This module's pattern-3 settings (a metadata folder of its own, a faster
    crash window) and two workers started with them, as `make pattern-3` does."""
    env = {
        "P3_METAFLOW_METADATA_DIR": str(tmp_path_factory.mktemp("metaflow")),
        # Heartbeats come every 30 s; 60 s without one marks a run CRASHED.
        "P3_CRASH_AFTER_SECONDS": "60",
    }
    started = stack.make("p3-workers", env=env, timeout=600)
    assert started.returncode == 0, started.output
    deployed = stack.in_env(P3, "python", "flow.py", "deploy", env=env)
    assert deployed.returncode == 0, deployed.output[-3000:]
    return env


def inspect(stack: Stack, p3: dict[str, str], flow_run_ids: list[str]) -> dict[str, list[dict]]:
    done = stack.in_env(P3, "python", str(INSPECT), json.dumps({"tags": flow_run_ids}), env=p3, timeout=300)
    assert done.returncode == 0, done.output[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def flow_run(stack: Stack, flow_run_id: str) -> dict:
    return stack.prefect_get(f"flow_runs/{flow_run_id}")


def children(stack: Stack, parent_id: str) -> list[dict]:
    return stack.prefect_post("flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [parent_id]}}})


def artifacts(stack: Stack, flow_run_id: str, key: str | None = None) -> list[dict]:
    body: dict = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
    if key:
        body["artifacts"]["key"] = {"any_": [key]}
    return stack.prefect_post("artifacts/filter", body)


def fan_out_id(output: str) -> str:
    match = FAN_OUT_URL.search(output)
    assert match, f"no fan-out flow run URL in the output:\n{output[-3000:]}"
    return match.group(1)


def run_flow(stack: Stack, p3: dict[str, str], *args: str, **env: str):
    return stack.in_env(P3, "python", "flow.py", *args, env={**p3, **env}, timeout=900)


# ---- the fan-out, as a user runs it -----------------------------------------------
@pytest.fixture(scope="module")
def first_fan_out(stack: Stack, p3: dict[str, str]):
    """`make pattern-3`, once for the module: its output and its Result fields."""
    done = stack.make("pattern-3", env=p3, timeout=900)
    assert done.returncode == 0, done.output[-5000:]
    return done, parse_result(done.stdout)


def test_fan_out_runs_on_two_workers_with_lineage_both_ways(stack: Stack, p3: dict[str, str], first_fan_out) -> None:
    done, result = first_fan_out
    assert result["pattern"] == "p3" and result["status"] == "ok"
    assert result["runs"] == "4" and int(result["workers"]) >= 2
    assert result["data_sha256"] == DIGITS_SHA[:12]
    parent = result["prefect_flow_run"]
    assert flow_run(stack, parent)["state_type"] == "COMPLETED"

    # Prefect's table artifact: one row per grid point, each a Metaflow pathspec.
    [table] = artifacts(stack, parent, "p3-fan-out")
    rows = json.loads(table["data"])
    assert sorted(r["grid"] for r in rows) == sorted(["50x8", "100x8", "50x16", "100x0"])
    best = max(rows, key=lambda r: r["cv_accuracy"])
    assert result["best"] == best["metaflow_pathspec"] and result["best_grid"] == best["grid"]

    # Every fanned-out run: a COMPLETED subflow of the fan-out, claimed by a worker
    # (its label), carrying the Metaflow pathspec in its own artifact.
    kids = {c["id"]: c for c in children(stack, parent)}
    assert set(kids) == {r["prefect_flow_run_id"] for r in rows}
    for row in rows:
        child = kids[row["prefect_flow_run_id"]]
        assert child["state_type"] == "COMPLETED", child["state"]
        assert child["labels"]["prefect.worker.name"] == row["worker"]
        assert child["labels"]["prefect.work-pool.name"] == "p3-metaflow"
        assert any(row["metaflow_pathspec"] in (a.get("data") or "") for a in artifacts(stack, child["id"]))
    workers = {r["worker"] for r in rows}
    assert len(workers) >= 2, f"all runs on one worker: {workers}"
    assert all(re.fullmatch(r"p3-worker-[12]-pid\d+", w) for w in workers), workers
    # ... and the make output shows who ran what.
    for row in rows:
        assert re.search(
            rf"{re.escape(row['grid'])}\s+{re.escape(row['worker'])}\s+.*{row['metaflow_pathspec']}", done.stdout
        )

    # Metaflow -> Prefect: each run is found by its Prefect tag, read from S3 by the Client.
    found = inspect(stack, p3, [r["prefect_flow_run_id"] for r in rows])
    for row in rows:
        [run] = found[row["prefect_flow_run_id"]]
        assert run["pathspec"] == row["metaflow_pathspec"] and run["successful"]
        assert f"prefect_worker:{row['worker']}" in run["tags"]
        assert run["datastore"] == "s3" and run["ds_root"].startswith("s3://metaflow/p3/metaflow")
        assert {"model", "cv_accuracy", "fold_scores", "x", "y", "data_sha256", "data_url"} <= set(run["artifacts"])
        assert run["loaded"]["end.model"] == "RandomForestClassifier" and run["loaded"]["start.x"] == "ndarray"
        assert {key.split(".")[0] for key in run["loaded"]} == {"start", "train", "end"}
        n_estimators, max_depth = (int(v) for v in row["grid"].split("x"))
        assert (run["n_estimators"], run["max_depth"]) == (n_estimators, max_depth)
        assert run["cv_accuracy"] == pytest.approx(row["cv_accuracy"], abs=1e-4)
        assert len(run["fold_scores"]) == 3 and 0.85 < run["cv_accuracy"] <= 1.0
        assert run["data_sha256"] == DIGITS_SHA and run["data_url"].endswith(f"digits-{DIGITS_SHA}.csv")
        assert run["rows"] == 1797 and run["predictions"] == 25 and run["correct"] >= 20
    # The artifacts are objects in S3, not local files.
    listed = stack.s3().list_objects_v2(Bucket="metaflow", Prefix="p3/metaflow/P3TrainFlow/data/", MaxKeys=5)
    assert listed.get("KeyCount", 0) > 0


@pytest.mark.failure_mode
def test_killed_worker_crashes_its_run_and_a_resubmission_completes_elsewhere(stack: Stack, p3: dict[str, str]) -> None:
    grid = ["30x4", "40x4"]
    with stack.in_background(P3, "python", "flow.py", "--grid", ",".join(grid), env=p3) as process:
        # Wait until a worker's flow run is inside Metaflow's train step, then kill that worker.
        workers = {name: int(stack.stack_py("pid", name).stdout) for name in ("p3-worker-1", "p3-worker-2")}
        victim = wait_for(lambda: _worker_running_train_step(workers), 300, "a worker running a train step", process)
        name, pid = victim
        os.kill(pid, signal.SIGKILL)
        output = finish(process, "the fan-out", timeout=600)
    assert process.returncode == 0, output[-5000:]
    result = parse_result(output)
    assert result["runs"] == "2"
    parent = result["prefect_flow_run"]

    kids = children(stack, parent)
    crashed = [c for c in kids if c["state_type"] == "CRASHED"]
    assert len(crashed) == 1, [(c["name"], c["state_type"]) for c in kids]
    [dead] = crashed
    assert "no heartbeat" in dead["state"]["message"]
    assert dead["labels"]["prefect.worker.name"] == f"{name}-pid{pid}"
    [grid_tag] = [t for t in dead["tags"] if t.startswith("p3-grid-")]
    retries = [c for c in kids if grid_tag in c["tags"] and c["id"] != dead["id"]]
    assert len(retries) == 1 and retries[0]["state_type"] == "COMPLETED"
    assert retries[0]["labels"]["prefect.worker.name"] != dead["labels"]["prefect.worker.name"]

    [table] = artifacts(stack, parent, "p3-fan-out")
    rows = json.loads(table["data"])
    assert sorted(r["grid"] for r in rows) == sorted(grid), "one row per grid point: none lost, none twice"
    retried = next(r for r in rows if f"p3-grid-{r['grid']}" == grid_tag)
    assert retried["attempts"] == 2 and retried["prefect_flow_run_id"] == retries[0]["id"]

    # Metaflow: the killed attempt's run never finished; exactly one successful run per grid point.
    completed = [c["id"] for c in kids if c["state_type"] == "COMPLETED"]
    found = inspect(stack, p3, [dead["id"], *completed])
    assert not any(run["successful"] for run in found[dead["id"]]), found[dead["id"]]
    for child_id in completed:
        assert [run["successful"] for run in found[child_id]] == [True]


def _worker_running_train_step(workers: dict[str, int]) -> tuple[str, int] | None:
    """(program name, pid) of a p3 worker whose process tree runs a Metaflow train step."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    for name, worker in workers.items():
        for pid, command in commands.items():
            if "trainflow.py" in command and " step train " in command:
                ancestor = pid
                while ancestor > 1 and ancestor != worker:
                    ancestor = parents.get(ancestor, 1)
                if ancestor == worker:
                    return name, worker
    return None


@pytest.mark.browser
def test_the_pages_the_readme_shows_show_the_fan_out(ui, first_fan_out) -> None:
    """Prefect's UI: the fan-out table with the best Metaflow run, and the work pool with
    both workers (tests/conftest.py check_ui)."""
    _, result = first_fan_out
    fields = check_ui(ui, "p3_metaflow_prefect", result)
    assert fields["best"] == result["best"] and fields["work_pool"] == "p3-metaflow"


# ---- bad input: a clear error naming the Metaflow pathspec, exit 1 ------------------
@pytest.mark.failure_mode
def test_bad_parameter_fails_naming_the_metaflow_task(stack: Stack, p3: dict[str, str]) -> None:
    done = run_flow(stack, p3, "--grid", "0x8")
    assert done.returncode == 1, done.output[-3000:]
    assert re.search(
        r"P3TrainFlow/\d+/start/\d+: ValueError: bad parameter: n_estimators=0 is outside 1-2000", done.stderr
    )
    assert "fix:" in done.stderr and "Result:" not in done.stdout
    parent = fan_out_id(done.output)
    [child] = children(stack, parent)
    assert child["state_type"] == "FAILED" and re.search(r"P3TrainFlow/\d+/start/\d+", child["state"]["message"])
    assert flow_run(stack, parent)["state_type"] == "FAILED"
    assert artifacts(stack, parent, "p3-fan-out") == [], "a failed fan-out publishes no table"


@pytest.mark.failure_mode
def test_failing_metaflow_step_fails_naming_the_task(stack: Stack, p3: dict[str, str], tmp_path: Path) -> None:
    # Two rows cannot be split into three folds: Metaflow's train step raises.
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("a,b,target\n1,2,0\n7,8,1\n")
    done = run_flow(stack, p3, "--grid", "20x4", P3_DATA_FILE=str(tiny))
    assert done.returncode == 1, done.output[-3000:]
    assert re.search(r"failed in task P3TrainFlow/\d+/train/\d+: ValueError: Cannot have number of splits", done.stderr)
    assert "python trainflow.py logs" in done.stderr
    parent = fan_out_id(done.output)
    [child] = children(stack, parent)
    assert child["state_type"] == "FAILED" and "/train/" in child["state"]["message"]
    assert artifacts(stack, parent, "p3-fan-out") == [], "a failed fan-out publishes no table"


@pytest.mark.failure_mode
def test_unreachable_s3_fails_before_anything_runs(stack: Stack, p3: dict[str, str]) -> None:
    before = stack.prefect_post("flow_runs/count", {})
    dead = f"http://127.0.0.1:{free_port()}"
    done = run_flow(stack, p3, P3_S3_ENDPOINT_URL=dead, P3_CONNECT_TIMEOUT="2")
    assert done.returncode == 1
    assert f"S3 at {dead} is unreachable" in done.stderr and "fix:" in done.stderr
    assert stack.prefect_post("flow_runs/count", {}) == before, "no flow run may start"


@pytest.mark.failure_mode
def test_unreachable_s3_inside_a_worker_run_names_the_metaflow_run(stack: Stack, p3: dict[str, str]) -> None:
    """S3 reachable for the fan-out but not where the flow runs: a deployment run
    whose job variables point Metaflow at a dead endpoint."""
    deployment = stack.prefect_get("deployments/name/p3-train-one/p3-train")
    dead = f"http://127.0.0.1:{free_port()}"
    run = stack.prefect_post(
        f"deployments/{deployment['id']}/create_flow_run",
        {
            "parameters": {"data_url": f"s3://metaflow/p3/datasets/digits-{DIGITS_SHA}.csv", "n_estimators": 10},
            "job_variables": {"env": {"P3_S3_ENDPOINT_URL": dead}},
        },
    )

    ended = stack.final_flow_run(run["id"], "the deployment run to finish")
    assert ended["state_type"] == "FAILED"
    message = ended["state"]["message"]
    assert re.search(r"Metaflow run P3TrainFlow/\d+ failed", message), message
    assert "Could not connect to the endpoint URL" in message and f"cannot reach S3 at {dead}" in message


@pytest.mark.failure_mode
def test_grid_typo_bad_setting_and_missing_workers_fail_clearly(stack: Stack, p3: dict[str, str]) -> None:
    before = stack.prefect_post("flow_runs/count", {})
    typo = run_flow(stack, p3, "--grid", "50by8")
    assert typo.returncode == 1
    assert stack.prefect_post("flow_runs/count", {}) == before, "a typo must start no flow run"
    assert "grid item '50by8' is not N_ESTIMATORSxMAX_DEPTH" in typo.stderr and "fix:" in typo.stderr
    bad_setting = run_flow(stack, p3, "deploy", P3_METAFLOW_S3_ROOT="metaflow/p3")
    assert bad_setting.returncode == 1 and "Traceback" not in bad_setting.stderr
    assert "P3_METAFLOW_S3_ROOT='metaflow/p3' must be an s3://bucket/prefix URL" in bad_setting.stderr
    refused = run_flow(stack, p3, PREFECT_API_AUTH_STRING="admin:not-the-password")
    assert refused.returncode == 1 and "refused the request (401, wrong auth string)" in refused.stderr
    assert "fix: set PREFECT_API_AUTH_STRING" in refused.stderr and "Traceback" not in refused.stderr
    assert stack.prefect_post("flow_runs/count", {}) == before, "a refused login must start no flow run"
    lonely = run_flow(stack, p3, P3_WORK_POOL="p3-nobody-polls", P3_DEPLOYMENT="p3-lonely")
    assert lonely.returncode == 1
    assert "no worker is polling the work pool 'p3-nobody-polls'" in lonely.stderr
    assert stack.prefect_get("work_pools/p3-nobody-polls")["name"] == "p3-nobody-polls"


@pytest.mark.failure_mode
def test_redeploy_is_idempotent(stack: Stack, p3: dict[str, str]) -> None:
    def deployments() -> list[dict]:
        return stack.prefect_post("deployments/filter", {"deployments": {"name": {"any_": ["p3-train"]}}})

    first = run_flow(stack, p3, "deploy")
    assert first.returncode == 0, first.output[-3000:]
    second = run_flow(stack, p3, "deploy")
    assert second.returncode == 0, second.output[-3000:]
    assert len(deployments()) == 1
    automations = stack.prefect_post("automations/filter", {})
    assert [a["name"] for a in automations].count("p3-train-crash-detection") == 1
