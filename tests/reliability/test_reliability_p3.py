"""Pattern 3 under failure: the Prefect server restarted in the middle of a
fan-out, while a worker runs a Metaflow training run. The workers and the
fan-out must reconnect; a child whose heartbeats were lost may be marked
CRASHED and resubmitted (its Metaflow run is then fenced). Either way: the
fan-out completes or fails cleanly, and there is exactly one successful
Metaflow run per grid point, none lost, none twice.

"Mid fan-out" is a real signal: a child flow run of this grid is RUNNING in
the Prefect API.

Not covered here (see the report of the reliability battery): two fan-outs of
the same grid at once. Pattern 3 has no logical run key (each fan-out is its
own run, keyed by its flow run id), so two triggers are two runs by design."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import PATTERNS, REPO, Stack, parse_result, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.reliability]

P3 = PATTERNS / "p3_metaflow_prefect"
INSPECT = REPO / "tests" / "p3_metaflow_prefect" / "inspect_metaflow.py"


@pytest.fixture(scope="module")
def p3(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two workers and the deployment, as `make pattern-3` starts them."""
    env = {"P3_METAFLOW_METADATA_DIR": str(tmp_path_factory.mktemp("metaflow-reliability"))}
    started = stack.make("p3-workers", env=env, timeout=600)
    assert started.returncode == 0, started.output
    deployed = stack.in_env(P3, "python", "flow.py", "deploy", env=env)
    assert deployed.returncode == 0, deployed.output[-3000:]
    return env


def grid_runs(stack: Stack, tag: str) -> list[dict]:
    return stack.prefect_post("flow_runs/filter", {"flow_runs": {"tags": {"all_": [tag]}}})


def test_prefect_restart_mid_fan_out_recovers_or_fails_cleanly(stack: Stack, p3: dict[str, str]) -> None:
    grid = ["33x3", "43x3"]
    tags = [f"p3-grid-{g}" for g in grid]
    with stack.in_background(P3, "python", "flow.py", "--grid", ",".join(grid), env=p3) as process:
        wait_for(
            lambda: any(r["state_type"] == "RUNNING" for t in tags for r in grid_runs(stack, t)),
            600,
            "a child flow run RUNNING on a worker",
            process,
        )
        stack.restart("prefect")  # returns once the server answers /health again
        try:
            output, _ = process.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"the fan-out did not end within 900 s:\n{process.communicate()[0][-4000:]}")
    if process.returncode != 0:
        assert process.returncode == 1 and "fix:" in output and "Traceback" not in output, output[-4000:]
        again = stack.in_env(P3, "python", "flow.py", "--grid", ",".join(grid), env=p3, timeout=900)
        assert again.returncode == 0, again.output[-4000:]
        output = again.stdout
    result = parse_result(output)
    assert result["status"] == "ok" and result["runs"] == str(len(grid)), result
    parent = result["prefect_flow_run"]

    kids = stack.prefect_post("flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [parent]}}})
    [table] = stack.prefect_post(
        "artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [parent]}, "key": {"any_": ["p3-fan-out"]}}}
    )
    rows = json.loads(table["data"])
    assert sorted(r["grid"] for r in rows) == sorted(grid), "one row per grid point: none lost, none twice"

    # Metaflow: across every attempt of this fan-out, one successful run per grid point.
    done = stack.in_env(P3, "python", str(INSPECT), json.dumps({"tags": [k["id"] for k in kids]}), env=p3)
    assert done.returncode == 0, done.output[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    successful = [run["pathspec"] for runs in found.values() for run in runs if run["successful"]]
    assert sorted(successful) == sorted(r["metaflow_pathspec"] for r in rows), (found, rows)
    for tag in tags:
        completed = [k for k in kids if tag in k["tags"] and k["state_type"] == "COMPLETED"]
        assert len(completed) == 1, [(k["name"], k["state_type"]) for k in kids if tag in k["tags"]]

    # The workers came back: both online again.
    def online() -> bool:
        workers = stack.prefect_post("work_pools/p3-metaflow/workers/filter", {})
        return sum(w["status"] == "ONLINE" for w in workers) >= 2

    wait_for(online, 300, "both workers ONLINE again")
