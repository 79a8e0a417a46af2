"""The local stack's own contract: idempotent `up`, honest `status`, a clear
error on a busy port, and `down` touching only what its state folder started."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from conftest import Stack, stack_env

pytestmark = pytest.mark.stack


def _pids(stack: Stack) -> dict[str, str]:
    done = stack.make("status")
    assert done.returncode == 0, done.output
    return {line.split()[0]: line.split()[-1] for line in done.stdout.splitlines() if "pid" in line}


def test_up_is_idempotent(stack: Stack) -> None:
    before = _pids(stack)
    assert {"SeaweedFS", "Prefect", "MLflow"} <= set(before), before
    again = stack.make("up")
    assert again.returncode == 0, again.output
    assert _pids(stack) == before, "a second `make up` must not restart anything"


def test_status_reports_every_service_healthy(stack: Stack) -> None:
    done = stack.make("status")
    assert done.returncode == 0
    for name in ("SeaweedFS S3", "Prefect server", "MLflow server"):
        line = next(line for line in done.stdout.splitlines() if line.startswith(name))
        assert "RUNNING" in line and " healthy" in line


def test_services_bind_loopback_only(stack: Stack) -> None:
    for url in (stack.env["S3_ENDPOINT_URL"], stack.mlflow, stack.prefect):
        port = int(url.split(":")[2].split("/")[0])
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))  # another loopback address: nothing must answer there
            assert probe.connect_ex(("127.0.0.2", port)) != 0, f"port {port} answers beyond 127.0.0.1"


def test_buckets_exist_and_wrong_keys_are_rejected(stack: Stack) -> None:
    names = {b["Name"] for b in stack.s3().list_buckets()["Buckets"]}
    assert {"dvc", "mlflow"} <= names
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as caught:
        stack.s3("nobody", "nothing").list_objects_v2(Bucket="dvc")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_busy_port_fails_clearly_and_starts_nothing(stack: Stack, tmp_path: Path) -> None:
    env = stack_env(tmp_path / "other")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(env["STACK_MLFLOW_PORT"])))
        squatter.listen()
        other = Stack(env=env, state_dir=tmp_path / "other")
        done = other.make("up", timeout=120)
    assert done.returncode != 0
    assert (
        f"ports in use by another process: {env['STACK_MLFLOW_PORT']} (MLflow server; move it with "
        "STACK_MLFLOW_PORT)" in done.stderr
    )
    assert not (tmp_path / "other" / "supervisord.pid").exists()


def test_down_of_another_state_folder_leaves_this_stack_alone(stack: Stack, tmp_path: Path) -> None:
    other = Stack(env=stack_env(tmp_path / "never-started"), state_dir=tmp_path / "never-started")
    done = other.make("down")
    assert done.returncode == 0 and "not running" in done.stdout
    assert httpx.get(f"{stack.mlflow}/health", timeout=5).status_code == 200
    assert {"SeaweedFS", "Prefect", "MLflow"} <= set(_pids(stack))


def test_prefect_server_accepts_the_null_paging_its_client_sends(stack: Stack) -> None:
    """`flow.deploy()` and `prefect deploy` list a pool's workers with
    `"limit": null`; fastapi 0.151+ under this Prefect answers 422 (test_pins)."""
    if not _pool(stack, "pins-probe"):
        stack.prefect_post("work_pools/", {"name": "pins-probe", "type": "process"})
    assert stack.prefect_post("work_pools/pins-probe/workers/filter", {"limit": None, "offset": None}) == []


def _pool(stack: Stack, name: str) -> bool:
    return httpx.get(f"{stack.prefect}/work_pools/{name}", headers=stack.prefect_headers, timeout=10).status_code == 200


def test_added_program_runs_under_supervisord_and_is_removed(stack: Stack, tmp_path: Path) -> None:
    """`stack.py add` (how pattern 3 starts its workers): a program restarted when
    it dies, listed by status, idempotent, gone after remove."""
    script = tmp_path / "sleeper.sh"
    script.write_text('#!/bin/sh\necho "started with PROBE_VALUE=$PROBE_VALUE"\nexec sleep 600\n')
    script.chmod(0o755)
    env = {"PROBE_VALUE": "42", "UNRELATED_SECRET": "no"}
    add = ["add", "probe-sleeper", "--cwd", str(tmp_path), "--pass-env", "PROBE_*", "--", str(script)]
    first = stack.stack_py(*add, env=env)
    assert first.returncode == 0, first.output
    pid = int(stack.stack_py("pid", "probe-sleeper").stdout)
    again = stack.stack_py(*add, env=env)
    assert again.returncode == 0 and f"pid {pid}" in again.stdout, "an unchanged program must be left running"
    status = stack.make("status").stdout
    assert any(line.startswith("probe-sleeper") and "RUNNING" in line for line in status.splitlines()), status
    log = (stack.state_dir / "logs" / "probe-sleeper.log").read_text()
    assert "PROBE_VALUE=42" in log
    conf = (stack.state_dir / "programs" / "probe-sleeper.conf").read_text()
    assert "UNRELATED_SECRET" not in conf, "only the variables asked for are handed over"

    import os
    import signal
    import time

    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        now = stack.stack_py("pid", "probe-sleeper")
        if now.returncode == 0 and now.stdout.strip() not in ("", str(pid)):
            break
        assert time.monotonic() < deadline, f"supervisord did not restart the killed program: {now.output}"
        time.sleep(0.5)

    removed = stack.stack_py("remove", "probe-sleeper")
    assert removed.returncode == 0, removed.output
    gone = stack.stack_py("pid", "probe-sleeper")
    assert gone.returncode == 1 and "no program named 'probe-sleeper'" in gone.stderr
    assert not (stack.state_dir / "programs" / "probe-sleeper.conf").exists()
    bad = stack.stack_py("add", "Bad_Name", "--cwd", str(tmp_path), "--", str(script))
    assert bad.returncode == 1 and "lowercase letters, digits and dashes" in bad.stderr
