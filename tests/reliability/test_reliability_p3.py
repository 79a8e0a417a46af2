"""Pattern 3 under failure: the Prefect server and S3 restarted in the middle of
a fan-out, while a worker runs a Metaflow training run; and the same fan-out
(one logical run: same data, grid, folds, seed) triggered twice at once.

Whatever happens, per grid point of a logical run there is exactly one
COMPLETED child flow run and one successful Metaflow run: none lost, none
twice. A fan-out that fails does so cleanly (the reason and the fix, exit 1),
and its rerun trains only what did not complete.

"Mid fan-out" is a real signal: a child flow run of this grid is RUNNING in
the Prefect API."""

from __future__ import annotations

import json

import pytest
from conftest import PATTERNS, REPO, Stack, finish, parse_result, wait_for

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


def tagged(stack: Stack, tag: str) -> list[dict]:
    return stack.prefect_post("flow_runs/filter", {"flow_runs": {"tags": {"all_": [tag]}}})


def assert_clean_failure(output: str) -> None:
    """Exit 1 ends with the pattern's error and its fix. Prefect's run log of the
    failed fan-out flow carries a traceback; it must be that same P3Error, not
    an unexpected exception (a crash of the pattern itself)."""
    assert "\nerror: " in output and "fix:" in output.rsplit("\nerror: ", 1)[1], output[-4000:]
    for block in output.split("Traceback (most recent call last):")[1:]:
        raised = next(line for line in block.splitlines() if line and not line[0].isspace())
        assert raised.startswith("errors.P3Error: "), f"an unexpected exception: {raised}\n{output[-4000:]}"


def assert_one_training_per_point(stack: Stack, p3: dict[str, str], grid: list[str], result: dict) -> list[dict]:
    """Over every fan-out of this logical run: one COMPLETED child per grid
    point, one successful Metaflow run per grid point, and the table's rows
    are exactly those runs. Returns the table's rows."""
    assert result["status"] == "ok" and result["runs"] == str(len(grid)), result
    kids = tagged(stack, f"p3-run-{result['logical_run']}")
    for point in grid:
        completed = [k for k in kids if f"p3-grid-{point}" in k["tags"] and k["state_type"] == "COMPLETED"]
        assert len(completed) == 1, (point, [(k["name"], k["state_type"]) for k in kids])
    [table] = stack.prefect_post(
        "artifacts/filter",
        {"artifacts": {"flow_run_id": {"any_": [result["prefect_flow_run"]]}, "key": {"any_": ["p3-fan-out"]}}},
    )
    rows = json.loads(table["data"])
    assert sorted(r["grid"] for r in rows) == sorted(grid), "one row per grid point: none lost, none twice"

    done = stack.in_env(P3, "python", str(INSPECT), json.dumps({"tags": [k["id"] for k in kids]}), env=p3)
    assert done.returncode == 0, done.output[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    successful = [run["pathspec"] for runs in found.values() for run in runs if run["successful"]]
    assert sorted(successful) == sorted(r["metaflow_pathspec"] for r in rows), (found, rows)
    return rows


@pytest.mark.parametrize(("service", "grid"), [("prefect", ["33x3", "43x3"]), ("s3", ["34x3", "44x3"])])
def test_service_restart_mid_fan_out_recovers_or_fails_cleanly(
    stack: Stack, p3: dict[str, str], service: str, grid: list[str]
) -> None:
    tags = [f"p3-grid-{g}" for g in grid]
    with stack.in_background(P3, "python", "flow.py", "--grid", ",".join(grid), env=p3) as process:
        wait_for(
            lambda: any(r["state_type"] == "RUNNING" for t in tags for r in tagged(stack, t)),
            600,
            "a child flow run RUNNING on a worker",
            process,
        )
        stack.restart(service)  # returns once the service answers its health URL again
        output = finish(process, "the fan-out")
    if process.returncode != 0:
        # A clean failure: the reason and the fix; the rerun of the same logical
        # run trains only the points that did not complete (Metaflow's S3 retries
        # are few on purpose, METAFLOW_S3_RETRY_COUNT: an S3 restart fails the
        # runs it interrupts rather than stalling them).
        assert process.returncode == 1, output[-4000:]
        assert_clean_failure(output)
        again = stack.in_env(P3, "python", "flow.py", "--grid", ",".join(grid), env=p3, timeout=900)
        assert again.returncode == 0, again.output[-4000:]
        output = again.stdout
    result = parse_result(output)
    assert_one_training_per_point(stack, p3, grid, result)

    # The workers came back: both online again.
    def online() -> bool:
        workers = stack.prefect_post("work_pools/p3-metaflow/workers/filter", {})
        return sum(w["status"] == "ONLINE" for w in workers) >= 2

    wait_for(online, 300, "both workers ONLINE again")


def test_two_fan_outs_of_one_logical_run_train_once(stack: Stack, p3: dict[str, str]) -> None:
    """Two `flow.py --grid G` started together: one set of child runs and
    Metaflow runs, both fan-outs report the same results; a third, later, reuses
    them all; `--run-key` trains the same grid again as a new logical run."""
    grid = ["35x3", "45x3"]
    args = ("python", "flow.py", "--grid", ",".join(grid))
    with stack.in_background(P3, *args, env=p3) as first, stack.in_background(P3, *args, env=p3) as second:
        outputs = [finish(first, "the fan-out"), finish(second, "the fan-out")]
    assert first.returncode == 0 and second.returncode == 0, "\n----\n".join(o[-3000:] for o in outputs)
    results = [parse_result(o) for o in outputs]
    assert results[0]["logical_run"] == results[1]["logical_run"], results
    assert results[0]["prefect_flow_run"] != results[1]["prefect_flow_run"], "two fan-out flow runs"
    # Each child was submitted by one of the two and reused by the other.
    assert int(results[0]["reused"]) + int(results[1]["reused"]) == len(grid), results
    assert results[0]["best"] == results[1]["best"]
    rows = assert_one_training_per_point(stack, p3, grid, results[0])
    assert len(tagged(stack, f"p3-run-{results[0]['logical_run']}")) == len(grid), "no child submitted twice"

    later = stack.in_env(P3, *args[1:], env=p3, timeout=900)
    assert later.returncode == 0, later.output[-4000:]
    again = parse_result(later.stdout)
    assert again["logical_run"] == results[0]["logical_run"] and again["reused"] == str(len(grid)), again
    assert assert_one_training_per_point(stack, p3, grid, again) == [
        {**r, "reused_from": r["reused_from"] or results[0]["prefect_flow_run"]} for r in rows
    ]

    fresh = stack.in_env(P3, *args[1:], "--run-key", "retrain", env=p3, timeout=900)
    assert fresh.returncode == 0, fresh.output[-4000:]
    new = parse_result(fresh.stdout)
    assert new["logical_run"] != results[0]["logical_run"] and new["reused"] == "0", new
    new_rows = assert_one_training_per_point(stack, p3, grid, new)
    assert not {r["metaflow_pathspec"] for r in new_rows} & {r["metaflow_pathspec"] for r in rows}
