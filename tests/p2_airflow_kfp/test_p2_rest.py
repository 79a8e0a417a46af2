"""Pattern 2 against a running Airflow (P2_AIRFLOW_API_URL): what can be
checked without one. The run id that makes a retry find its run instead of
training again, and the errors a user meets first (nothing listening, a
server that is not Airflow), over real HTTP. The run itself, against the
compose tier's Airflow, is the compose suite's."""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PATTERNS, free_port, in_env

P2 = PATTERNS / "p2_airflow_kfp"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("P2_", "AIRFLOW", "KFP_", "VIRTUAL_ENV"))}
    return env | extra


def run_p2(tmp_path: Path, api_url: str, *args: str):
    env = clean_env(P2_AIRFLOW_API_URL=api_url, P2_STATE_DIR=str(tmp_path / "state"), P2_CONNECT_TIMEOUT="2")
    return in_env(P2, "python", "-m", "harness", *args, env=env, timeout=120)


def test_dag_run_id_is_one_per_logical_date(tmp_path: Path) -> None:
    """The id derives from the logical date alone: the same on every call (a
    retry finds the run), another for another date, Airflow's manual form."""
    code = """
import json
from datetime import UTC, datetime
from harness import rest as airflow_rest
day = datetime(2026, 3, 1, tzinfo=UTC)
ids = [airflow_rest.dag_run_id(day), airflow_rest.dag_run_id(datetime(2026, 3, 1, tzinfo=UTC)),
       airflow_rest.dag_run_id(datetime(2026, 3, 2, tzinfo=UTC))]
try:
    airflow_rest.dag_run_id(datetime(2026, 3, 1))
    naive = "accepted"
except ValueError:
    naive = "refused"
print(json.dumps({"ids": ids, "naive": naive, "xcom": [airflow_rest.decode_xcom('{"a": 1}'),
      airflow_rest.decode_xcom({"a": 1}), airflow_rest.decode_xcom("text")]}))
"""
    done = in_env(P2, "python", "-c", code, env=clean_env(), timeout=120)
    assert done.returncode == 0, done.output[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    first, again, other = answer["ids"]
    assert first == again == "manual__2026-03-01T00:00:00+00:00"
    assert other == "manual__2026-03-02T00:00:00+00:00"
    assert answer["naive"] == "refused"
    assert answer["xcom"] == [{"a": 1}, {"a": 1}, "text"]


def test_unreachable_api_fails_with_the_fix_and_never_imports_airflow(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code = """
import sys
from harness import cli
code = cli.main(["--date", "2026-03-01"])
print("airflow imported:", any(m == "airflow" or m.startswith("airflow.") for m in sys.modules))
sys.exit(code)
"""
    env = clean_env(P2_AIRFLOW_API_URL=url, P2_STATE_DIR=str(tmp_path / "state"))
    done = in_env(P2, "python", "-c", code, env=env, timeout=120)
    assert done.returncode == 1, done.output[-3000:]
    assert f"error: Airflow's API at {url} is unreachable" in done.stderr
    assert "fix: start the Airflow services" in done.stderr and "P2_AIRFLOW_API_URL" in done.stderr
    assert "Result: pattern=p2 status=failed" in done.stderr
    assert "Traceback" not in done.output
    assert "airflow imported: False" in done.stdout
    # In-process mode's machinery was not touched: no SQLite database, no Airflow home.
    assert not (tmp_path / "state" / "airflow").exists()


@pytest.fixture
def not_airflow() -> Iterator[str]:
    """Some other HTTP server on 127.0.0.1 (a plain file server: 501 to a POST)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_is_not_airflow_is_named_as_such(tmp_path: Path, not_airflow: str) -> None:
    done = run_p2(tmp_path, not_airflow, "--date", "2026-03-01")
    assert done.returncode == 1, done.output[-3000:]
    assert f"error: {not_airflow} has no Airflow 3 token endpoint (POST /auth/token answered 501)" in done.stderr
    assert "base URL of an Airflow 3 api-server" in done.stderr
    assert "Result: pattern=p2 status=failed" in done.stderr
    assert "Traceback" not in done.output
