"""Pattern 1 under failure: the MLflow server, the Prefect server and S3
restarted while a training run is in flight, and the same training triggered
twice at once. Each case trains a model of its own name, so what it counts is
what it made: exactly one registered version per logical run, whatever
happened to the services in between.

"Mid-run" is a real signal: the flow's MLflow run is RUNNING (the training
has started and nothing is registered yet) when the service is restarted."""

from __future__ import annotations

import time

import httpx
import pytest
from conftest import PATTERNS, Stack, finish, parse_result, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.reliability]

P1 = PATTERNS / "p1_prefect_mlflow"


@pytest.fixture(scope="module", autouse=True)
def published(stack: Stack) -> None:
    """The data version in the DVC remote on S3, as `make pattern-1` does first."""
    done = stack.in_env(P1, "python", "data.py", "publish")
    assert done.returncode == 0, done.output[-3000:]


def names(case: str) -> dict[str, str]:
    stamp = time.time_ns()
    return {"P1_MODEL_NAME": f"p1-rel-{case}-{stamp}", "P1_EXPERIMENT_NAME": f"p1-rel-{case}-{stamp}"}


def runs(stack: Stack, experiment: str) -> list[dict]:
    """The experiment's MLflow runs; none while it does not exist yet (or while
    the server restarts)."""
    try:
        return stack.runs(experiment)
    except httpx.HTTPError:
        return []


def running(stack: Stack, experiment: str) -> bool:
    return any(r["info"]["status"] == "RUNNING" for r in runs(stack, experiment))


def assert_one_model(stack: Stack, env: dict[str, str]) -> str:
    """Exactly one registered version, the champion, made by the one FINISHED
    training run; no run left RUNNING."""
    model, experiment = env["P1_MODEL_NAME"], env["P1_EXPERIMENT_NAME"]
    versions = stack.model_versions(model)
    assert [v["version"] for v in versions] == ["1"], f"expected one version, found {versions}"
    assert stack.alias_version(model, "champion") == "1"
    all_runs = runs(stack, experiment)
    finished = [r for r in all_runs if r["info"]["status"] == "FINISHED"]
    assert len(finished) == 1, [(r["info"]["run_id"], r["info"]["status"]) for r in all_runs]
    tags = {t["key"]: t["value"] for t in finished[0]["data"].get("tags", [])}
    assert tags.get("p1.model_version") == "1", tags
    assert not [r for r in all_runs if r["info"]["status"] == "RUNNING"], "a run was left RUNNING"
    return finished[0]["info"]["run_id"]


@pytest.mark.parametrize("service", ["mlflow", "prefect", "s3"])
def test_service_restart_mid_training_recovers_or_fails_cleanly(stack: Stack, service: str) -> None:
    env = names(service)
    with stack.in_background(P1, "python", "flow.py", env=env) as process:
        wait_for(lambda: running(stack, env["P1_EXPERIMENT_NAME"]), 600, "an MLflow run in RUNNING state", process)
        stack.restart(service)  # returns once the service answers its health URL again
        output = finish(process, "the run")
    if process.returncode == 0:
        result = parse_result(output)
        assert result["status"] == "ok" and result["decision"] == "promoted", output[-3000:]
        assert result["version"] == "1"
    else:
        # A clean failure: the reason and the fix, no traceback, nothing registered...
        assert process.returncode == 1, output[-4000:]
        assert "Result: pattern=p1 status=failed" in output and "fix:" in output, output[-4000:]
        assert "Traceback" not in output, output[-4000:]
        assert stack.model_versions(env["P1_MODEL_NAME"]) == []
        # ... and the rerun trains once.
        again = stack.in_env(P1, "python", "flow.py", env=env, timeout=900)
        assert again.returncode == 0, again.output[-4000:]
        assert parse_result(again.stdout)["decision"] == "promoted"
    run_id = assert_one_model(stack, env)

    # A rerun after all this reuses the one training: no second version.
    rerun = stack.in_env(P1, "python", "flow.py", env=env, timeout=900)
    assert rerun.returncode == 0, rerun.output[-4000:]
    result = parse_result(rerun.stdout)
    assert result["decision"] == "reused" and result["mlflow_run"] == run_id
    assert_one_model(stack, env)


def test_two_triggers_at_once_train_once(stack: Stack) -> None:
    """Two `flow.py` runs of the same training (same data, same parameters)
    started together: one trains and registers, the other waits for the
    training slot and reuses that run."""
    env = names("double")
    with (
        stack.in_background(P1, "python", "flow.py", env=env) as first,
        stack.in_background(P1, "python", "flow.py", env=env) as second,
    ):
        outputs = [finish(first, "the run"), finish(second, "the run")]
    assert first.returncode == 0 and second.returncode == 0, "\n----\n".join(o[-3000:] for o in outputs)
    results = [parse_result(o) for o in outputs]
    assert sorted(r["decision"] for r in results) == ["promoted", "reused"], "\n----\n".join(o[-4000:] for o in outputs)
    assert results[0]["mlflow_run"] == results[1]["mlflow_run"]
    assert assert_one_model(stack, env) == results[0]["mlflow_run"]
