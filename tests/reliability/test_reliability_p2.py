"""Pattern 2 under failure, on the local tier where Airflow runs in-process
(`DAG.test()` in the harness, `python -m harness`, SQLite): "restarting
Airflow" is killing the harness while the KFP pipeline runs, then running the
same logical date again; S3 restarted while the pipeline runs; and the same
logical date triggered twice at once.

"Mid-run" is a real signal: kfp.local has created the pipeline execution's
folder for the run name. Each case uses a logical date of its own in a state
folder of this module, and checks one KFP run record, one published model."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import PATTERNS, Stack, parse_result, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.reliability]

P2 = PATTERNS / "p2_airflow_kfp"
BUCKET = "p2-data"


@pytest.fixture(scope="module")
def p2(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    state = tmp_path_factory.mktemp("p2-reliability")
    env = {k: v for k, v in stack.env.items() if not k.startswith(("P2_", "AIRFLOW", "KFP_", "VIRTUAL_ENV"))}
    return env | {"P2_STATE_DIR": str(state)}


def run_name(date: str) -> str:
    return f"p2-airflow-kfp-{date.replace('-', '')}t000000"


def executions(p2: dict[str, str], date: str) -> list[str]:
    root = Path(p2["P2_STATE_DIR"]) / "kfp-local" / run_name(date)
    return sorted(p.name for p in root.glob("p2-wine-training-*")) if root.exists() else []


def start(p2: dict[str, str], date: str, log: Path) -> subprocess.Popen:
    """The harness in the pattern's interpreter itself (not `uv run`), so that killing
    it kills the Airflow process, as a crashed Airflow worker would die."""
    with log.open("w") as out:
        return subprocess.Popen(
            [str(P2 / ".venv" / "bin" / "python"), "-m", "harness", "--date", date],
            cwd=P2,
            env=p2,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait(process: subprocess.Popen, log: Path, timeout: float = 900) -> str:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the harness did not end within {timeout:.0f} s:\n{log.read_text()[-4000:]}")
    return log.read_text()


def run_p2(stack: Stack, p2: dict[str, str], date: str):
    return stack.in_env(P2, "python", "-m", "harness", "--date", date, env=p2, timeout=900)


def assert_published_once(stack: Stack, date: str, kfp_run_id: str) -> None:
    """One run record for the date's KFP run, and the published model is that run's."""
    s3 = stack.s3()
    record = json.loads(s3.get_object(Bucket=BUCKET, Key=f"runs/{run_name(date)}/run.json")["Body"].read())
    assert record["state"] == "SUCCEEDED" and record["run_id"] == kfp_run_id, record
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"published/ds={date}/")
    keys = sorted(o["Key"].rsplit("/", 1)[1] for o in listed.get("Contents", []))
    assert keys == ["decision.json", "metrics.json", "model.joblib"], keys
    decision = json.loads(s3.get_object(Bucket=BUCKET, Key=f"published/ds={date}/decision.json")["Body"].read())
    assert decision["kfp_run_id"] == kfp_run_id, decision


def test_airflow_killed_mid_pipeline_then_the_same_date_runs_once(stack: Stack, p2: dict[str, str], tmp_path) -> None:
    date = "2026-05-01"
    log = tmp_path / "killed.log"
    process = start(p2, date, log)
    try:
        wait_for(lambda: executions(p2, date), 600, "kfp.local's pipeline execution", process)
    finally:
        process.kill()  # SIGKILL: Airflow's process dies mid-run, as on a lost host
        process.wait()
    killed = executions(p2, date)

    again = run_p2(stack, p2, date)
    assert again.returncode == 0, again.output[-4000:]
    result = parse_result(again.stdout)
    assert result["status"] == "ok" and result["decision"] == "published", result
    if result["reused"] == "true":
        # The orphaned submit finished the pipeline: the retry waited for it and reused it.
        assert executions(p2, date) == killed
    else:
        # The killed attempt never finished (no record): exactly one more execution.
        assert len(executions(p2, date)) == len(killed) + 1
    assert_published_once(stack, date, result["kfp_run_id"])

    # Once more: nothing executes.
    rerun = run_p2(stack, p2, date)
    assert rerun.returncode == 0, rerun.output[-4000:]
    assert parse_result(rerun.stdout)["reused"] == "true"
    assert parse_result(rerun.stdout)["kfp_run_id"] == result["kfp_run_id"]
    assert_published_once(stack, date, result["kfp_run_id"])


def test_s3_restart_mid_pipeline_recovers_or_fails_cleanly(stack: Stack, p2: dict[str, str], tmp_path) -> None:
    date = "2026-05-02"
    log = tmp_path / "s3.log"
    process = start(p2, date, log)
    wait_for(lambda: executions(p2, date), 600, "kfp.local's pipeline execution", process)
    stack.restart("s3")
    output = wait(process, log)
    if process.returncode == 0:
        result = parse_result(output)
        assert result["status"] == "ok" and result["decision"] == "published", output[-3000:]
    else:
        assert process.returncode == 1, output[-4000:]
        result = parse_result(output)
        assert result["status"] == "failed" and result["published"] == "none", result
        assert "fix:" in output or "failed:" in output, output[-4000:]
        listed = stack.s3().list_objects_v2(Bucket=BUCKET, Prefix=f"published/ds={date}/")
        assert listed.get("KeyCount", 0) == 0, "a failed run published a model"
        again = run_p2(stack, p2, date)
        assert again.returncode == 0, again.output[-4000:]
        result = parse_result(again.stdout)
        assert result["decision"] == "published" and result["reused"] == "false"
    assert_published_once(stack, date, result["kfp_run_id"])


def test_two_triggers_of_one_date_at_once_execute_the_pipeline_once(stack: Stack, p2: dict[str, str], tmp_path) -> None:
    date = "2026-05-03"
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    processes = [start(p2, date, log) for log in logs]
    outputs = [wait(process, log) for process, log in zip(processes, logs, strict=True)]
    assert [p.returncode for p in processes] == [0, 0], "\n----\n".join(o[-3000:] for o in outputs)
    results = [parse_result(o) for o in outputs]
    assert sorted(r["reused"] for r in results) == ["false", "true"], results
    assert results[0]["kfp_run_id"] == results[1]["kfp_run_id"]
    assert len(executions(p2, date)) == 1
    assert_published_once(stack, date, results[0]["kfp_run_id"])
