"""Pattern 2 under failure, with both DAGs run in the harness's process
(`DAG.test()`, `python -m harness` without P2_AIRFLOW_API_URL, SQLite): "restarting
Airflow" is killing the harness while the KFP pipeline runs, then running the
same logical date again; S3 restarted while the pipeline runs; and the same
logical date triggered twice at once. Then, through Airflow's services as
`make pattern-2` runs them, the scheduler restarted while the training run's
pipeline runs.

"Mid-run" is a real signal: kfp.local has created the pipeline execution's
folder for the run name. Each case uses a logical date of its own in a state
folder of this module, and a dataset of its own (the wine table less one row:
the KFP run is named after the data's content, and the table itself was
trained already), and checks one KFP run record, one published model."""

from __future__ import annotations

import json
import subprocess
import zlib
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from conftest import PATTERNS, REPO, Stack, parse_result, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.reliability]

P2 = PATTERNS / "p2_airflow_kfp"
BUCKET = "p2-data"


@pytest.fixture(scope="module")
def p2_state(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    state = tmp_path_factory.mktemp("p2-reliability")
    env = {k: v for k, v in stack.env.items() if not k.startswith(("P2_", "AIRFLOW", "KFP_", "VIRTUAL_ENV"))}
    return env | {"P2_STATE_DIR": str(state)}


@pytest.fixture
def p2(stack: Stack, p2_state: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """The module's state folder, and a dataset of this case's own: the wine table less one row."""
    lines = (P2 / "data" / "wine.csv").read_text().splitlines()
    drop = 1 + zlib.crc32(request.node.name.encode()) % (len(lines) - 1)
    source = tmp_path / "wine.csv"
    source.write_text("\n".join(lines[:drop] + lines[drop + 1 :]) + "\n")
    # The KFP run's name, as the plan task derives it: from the transformed dataset's sha256.
    sha = stack.in_env(P2, "python", "-c", SHA_OF_SOURCE, str(source), env=p2_state)
    assert sha.returncode == 0, sha.output
    return p2_state | {"P2_SOURCE_FILE": str(source), "_RUN_NAME": f"p2-wine-{sha.stdout.strip()[:12]}-m6-n200"}


SHA_OF_SOURCE = """
import sys
from pathlib import Path
import etl
text, _ = etl.transform(Path(sys.argv[1]).read_text())
print(etl.data_sha256(text))
"""


def run_name(p2: dict[str, str]) -> str:
    return p2["_RUN_NAME"]


def executions(p2: dict[str, str], date: str) -> list[str]:
    root = Path(p2["P2_STATE_DIR"]) / "kfp-local" / run_name(p2)
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


def assert_published_once(stack: Stack, p2: dict[str, str], date: str, kfp_run_id: str) -> None:
    """One run record for the case's KFP run, and the date's published model is that run's."""
    s3 = stack.s3()
    record = json.loads(s3.get_object(Bucket=BUCKET, Key=f"runs/{run_name(p2)}/run.json")["Body"].read())
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
    assert_published_once(stack, p2, date, result["kfp_run_id"])

    # Once more: nothing executes.
    rerun = run_p2(stack, p2, date)
    assert rerun.returncode == 0, rerun.output[-4000:]
    assert parse_result(rerun.stdout)["reused"] == "true"
    assert parse_result(rerun.stdout)["kfp_run_id"] == result["kfp_run_id"]
    assert_published_once(stack, p2, date, result["kfp_run_id"])


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
    assert_published_once(stack, p2, date, result["kfp_run_id"])


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
    assert_published_once(stack, p2, date, results[0]["kfp_run_id"])


# ---- Airflow's services (make pattern-2): the scheduler restarted mid-training -----------
def test_scheduler_restart_mid_training_survives_or_fails_cleanly_and_publishes_once(
    stack: Stack, p2_env: dict[str, str], tmp_path: Path
) -> None:
    """`stack.py restart p2-airflow-scheduler` while the training run's KFP pipeline runs:
    supervisord stops the scheduler with its LocalExecutor workers and the running task.
    The new scheduler resets the orphaned task and runs it again (measured: it then
    reuses the pipeline's record), or, had it failed, nothing is published and clearing
    the training run (what the fix says) trains or reuses once: one run record, one model."""
    date = "2026-05-10"
    # Parameters of its own: a KFP run of its own (the wine table itself was trained already).
    args = f"--date {date} --n-estimators 150"
    root = Path(p2_env["P2_STATE_DIR"]) / "kfp-local"
    log = tmp_path / "pattern-2.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "pattern-2", f"ARGS={args}"],
            cwd=REPO,
            env=stack.env | p2_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_for(lambda: list(root.glob("*-n150/p2-wine-training-*")), 600, "the training run's KFP execution", process)
    stack.restart("p2-airflow-scheduler")
    output = wait(process, log)
    result = parse_result(output)
    if process.returncode != 0:
        assert result["status"] == "failed" and result["published"] == "none", output[-4000:]
        listed = stack.s3().list_objects_v2(Bucket=BUCKET, Prefix=f"published/ds={date}/")
        assert listed.get("KeyCount", 0) == 0, "a failed run published a model"
        # The fix the harness gives: clear the training run, and follow it again.
        base = f"http://127.0.0.1:{stack.env['STACK_AIRFLOW_PORT']}"
        token = httpx.post(
            f"{base}/auth/token", json={"username": "admin", "password": stack.env["P2_AIRFLOW_PASSWORD"]}, timeout=30
        ).json()["access_token"]
        cleared = httpx.post(
            f"{base}/api/v2/dags/p2_train/dagRuns/{quote(result['train_run'], safe='')}/clear",
            json={"dry_run": False},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert cleared.status_code == 200, cleared.text
        again = stack.make("pattern-2", env=p2_env | {"ARGS": args})
        assert again.returncode == 0, again.output[-4000:]
        result = parse_result(again.stdout)
    assert result["status"] == "ok" and result["decision"] == "published", output[-3000:]
    [run] = [p for p in root.iterdir() if p.name.endswith("-n150")]
    assert len(list(run.glob("p2-wine-training-*"))) <= 2  # the interrupted execution, at most one more
    s3 = stack.s3()
    record = json.loads(s3.get_object(Bucket=BUCKET, Key=f"runs/{run.name}/run.json")["Body"].read())
    assert record["state"] == "SUCCEEDED" and record["run_id"] == result["kfp_run_id"], record
    decision = json.loads(s3.get_object(Bucket=BUCKET, Key=f"published/ds={date}/decision.json")["Body"].read())
    assert decision["kfp_run_id"] == result["kfp_run_id"] and decision["dag_run_id"] == result["train_run"]
