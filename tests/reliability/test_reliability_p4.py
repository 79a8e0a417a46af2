"""Pattern 4 under failure: the Prefect server restarted during the run stage
(while the worker executes p4-retrain), and the run stage triggered twice at
once for the same release (a CI job retried while the first still runs).

Each case ships a release of its own (P4_GIT_SHA: a made-up commit), built
and deployed as the cycle does, so it counts only what it made: one p4-retrain
flow run that completed and one model on S3 per release."""

from __future__ import annotations

import secrets

import pytest
from conftest import PATTERNS, Stack, finish, parse_result, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.reliability]

P4 = PATTERNS / "p4_github_actions_prefect"


def ship(stack: Stack) -> tuple[dict[str, str], str]:
    """Build and deploy a new release and start the worker: stages 3 and 4 of the cycle."""
    env = {"P4_GIT_SHA": secrets.token_hex(20)}
    for target in ("p4-build", "p4-deploy", "p4-worker"):
        done = stack.make(target, env=env, timeout=600)
        assert done.returncode == 0, f"make {target}:\n{done.output[-3000:]}"
    release = stack.prefect_get("deployments/name/p4-retrain/p4-retrain")["version"]
    assert release == env["P4_GIT_SHA"]
    return env, release


def retrain_runs(stack: Stack, release: str) -> list[dict]:
    deployment = stack.prefect_get("deployments/name/p4-retrain/p4-retrain")
    runs = stack.prefect_post("flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}})
    key = f"p4-retrain/p4-retrain:{release}:"  # verify.py's run_key: deployment:release:artifact:attempt
    return [r for r in runs if (r.get("idempotency_key") or "").startswith(key)]


def models(stack: Stack, release: str) -> set[str]:
    """The flow runs that published a model for this release (models/<release>/<flow run>/...)."""
    listed = stack.s3().list_objects_v2(Bucket="p4-models", Prefix=f"models/{release}/")
    return {o["Key"].split("/")[2] for o in listed.get("Contents", [])}


def assert_one_model(stack: Stack, release: str) -> str:
    runs = retrain_runs(stack, release)
    completed = [r for r in runs if r["state_type"] == "COMPLETED"]
    assert len(completed) == 1, [(r["name"], r["state_type"]) for r in runs]
    assert models(stack, release) == {completed[0]["id"]}, "a model published by another run, or none"
    return completed[0]["id"]


def test_prefect_restart_during_the_run_stage_recovers_or_fails_cleanly(stack: Stack) -> None:
    env, release = ship(stack)
    with stack.in_background(P4, "python", "release.py", "run", env=env) as process:
        wait_for(
            lambda: any(r["state_type"] == "RUNNING" for r in retrain_runs(stack, release)),
            600,
            "the p4-retrain flow run RUNNING on the worker",
            process,
        )
        stack.restart("prefect")  # returns once the server answers /health again
        output = finish(process, "the run stage")
    if process.returncode == 0:
        result = parse_result(output)
        assert result["status"] == "ok" and result["release"] == release and result["new_run"] == "true"
    else:
        assert process.returncode == 1, output[-4000:]
        assert "fix:" in output and "Traceback" not in output, output[-4000:]
        again = stack.in_env(P4, "python", "release.py", "run", env=env, timeout=900)
        assert again.returncode == 0, again.output[-4000:]
    run_id = assert_one_model(stack, release)

    # The CI job retried afterwards: the same run, nothing trained twice.
    rerun = stack.in_env(P4, "python", "release.py", "run", env=env, timeout=900)
    assert rerun.returncode == 0, rerun.output[-4000:]
    result = parse_result(rerun.stdout)
    assert result["retrain_run"] == run_id and result["new_run"] == "false"
    assert assert_one_model(stack, release) == run_id


def test_two_run_stages_at_once_run_the_release_once(stack: Stack) -> None:
    env, release = ship(stack)
    with (
        stack.in_background(P4, "python", "release.py", "run", env=env) as first,
        stack.in_background(P4, "python", "release.py", "run", env=env) as second,
    ):
        outputs = [finish(first, "the run stage"), finish(second, "the run stage")]
    assert first.returncode == 0 and second.returncode == 0, "\n----\n".join(o[-3000:] for o in outputs)
    results = [parse_result(o) for o in outputs]
    assert results[0]["retrain_run"] == results[1]["retrain_run"], results
    assert results[0]["score_run"] == results[1]["score_run"], results
    assert assert_one_model(stack, release) == results[0]["retrain_run"]
    assert len(retrain_runs(stack, release)) == 1
