"""The compose tier, run for real (`make test-compose`): the stack comes up
healthy, patterns 1 to 4 succeed against it (pattern 1 with its loop, through
the p1 profile's containers), and `make down` then `make up` keeps the named
volumes and every piece of data.

The stack: `make up STACK=compose` once for this module, as a compose project
of its own (`hybrid-ml-patterns-test`) on free loopback ports, so a stack you
run on the default ports is never touched.

State the containers must share with the host (pattern 3's Metaflow metadata,
pattern 4's releases) lives under .state/compose-test in the checkout, which
the worker containers mount at the same path. At the end the project is
removed with its volumes (`make compose-reset`); its logs are printed first
if a test failed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from botocore.exceptions import ClientError
from conftest import (
    REPO,
    RESULT_RE,
    Completed,
    Stack,
    free_port,
    free_port_run,
    listening,
    parse_result,
    process_tree,
    read_secrets,
    remove_loop_batches,
    run,
    stack_env,
)

PROJECT = "hybrid-ml-patterns-test"
P1_MODEL = "p1-breast-cancer"
ALL_SERVICES = {
    "postgres",
    "postgres-init",
    "s3",
    "s3-init",
    "prefect-server",
    "mlflow",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "p1-retrain",
    "p1-endpoint",
    "p3-worker-1",
    "p3-worker-2",
    "p4-worker",
}
ONE_SHOT = {"postgres-init", "s3-init", "airflow-init"}

pytestmark = pytest.mark.compose


class ComposeStack(Stack):
    def compose(self, *args: str, timeout: float = 600):
        """`docker compose ARGS` with the tier's files, project and env files."""
        return run(["bash", str(REPO / "infra/compose/compose.sh"), "compose", *args], env=self.env, timeout=timeout)

    def services(self) -> dict[str, dict]:
        """Every container of the project (all profiles), by service name."""
        done = self.compose("ps", "--all", "--format", "json")
        assert done.returncode == 0, done.output
        rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        return {row["Service"]: row for row in rows}

    def volumes(self) -> set[str]:
        label = f"label=com.docker.compose.project={PROJECT}"
        done = run(["docker", "volume", "ls", "--filter", label, "--format", "{{.Name}}"], env=self.env)
        assert done.returncode == 0, done.output
        return set(done.stdout.split())


# Module-wide, not session-wide: removed as soon as these tests are done, so its
# containers do not idle on for the rest of the worker's tests.
@pytest.fixture(scope="module")
def compose_stack(request: pytest.FixtureRequest) -> Iterator[ComposeStack]:
    state = REPO / ".state" / "compose-test"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    env = stack_env(state / "local")
    seaweed = free_port_run(7)
    env.update(
        STACK="compose",
        COMPOSE_PROJECT_NAME=PROJECT,
        COMPOSE_STATE_DIR=str(state),
        STACK_POSTGRES_PORT=str(free_port()),
        STACK_AIRFLOW_PORT=str(free_port()),
        STACK_SEAWEED_PORT_BASE=str(seaweed),
        # What the containers and the host must agree on, inside the mounted checkout.
        P3_METAFLOW_METADATA_DIR=str(state / "p3-metaflow"),
        P4_STATE_DIR=str(state / "p4"),
        # Pattern 1's endpoint container, published here; it reads @champion every 2 s
        # (it keeps reading while the other patterns' tests run).
        P1_ENDPOINT_PORT=str(free_port()),
        P1_ENDPOINT_POLL_SECONDS="2",
    )
    stack = ComposeStack(env=env, state_dir=state)
    # A project left behind by an interrupted session starts from nothing.
    stack.make("compose-reset", timeout=300)
    started = stack.make("up", timeout=2400)
    if started.returncode != 0:
        logs = stack.make("logs", env={"LINES": "60"}).output
        stack.make("compose-reset", timeout=300)
        pytest.fail(f"`make up STACK=compose` failed ({started.returncode}):\n{started.output[-6000:]}\n{logs[-8000:]}")
    stack.env = read_secrets(state / "secrets.env") | stack.env  # the keys make generated
    yield stack
    if request.session.testsfailed:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        logs = stack.make("logs", env={"LINES": "40"}).output
        reporter.write_line("\n---- compose stack logs (a test failed) ----\n" + logs[-20000:])
    reset = stack.make("compose-reset", timeout=300)
    assert reset.returncode == 0, reset.output
    assert stack.volumes() == set(), "compose-reset left volumes behind"


@pytest.fixture(scope="module")
def p1_loop(compose_stack: ComposeStack) -> Iterator[Completed]:
    """`make pattern-1-loop STACK=compose`, once: `make pattern-1` (the first training,
    on the bundled data), then the loop through the p1 profile's containers."""
    done = compose_stack.make("pattern-1-loop", timeout=900)
    yield done
    remove_loop_batches(done.stdout)


@pytest.fixture(scope="module")
def p1_run(p1_loop: Completed) -> dict[str, str]:
    """The Result line of `make pattern-1`, the loop's first step."""
    first = RESULT_RE.findall(p1_loop.stdout)
    assert first, p1_loop.output[-6000:]
    return dict(field.split("=", 1) for field in first[0].split())


def effective_uids(pids: set[int]) -> set[int]:
    """The effective uids of the processes still there (a healthcheck may end meanwhile)."""
    found = set()
    for pid in pids:
        try:
            found.add(int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[1]))
        except (OSError, IndexError):
            continue
    return found


def unhealthy(stack: ComposeStack) -> list[str]:
    """What keeps the stack from being healthy (nothing: it is): a service missing or
    extra, a one-shot service that did not exit 0, a service not running and healthy."""
    states = stack.services()
    if set(states) != ALL_SERVICES:
        return [f"services: {sorted(states)}"]
    return [
        f"{name}: {row['Status']}"
        for name, row in states.items()
        if not (
            row["State"] == "exited" and row["ExitCode"] == 0
            if name in ONE_SHOT
            else row["State"] == "running" and row["Health"] == "healthy"
        )
    ]


def assert_healthy(stack: ComposeStack) -> None:
    problems = unhealthy(stack)
    assert not problems, problems


# ---- the stack ----------------------------------------------------------------------
def test_stack_comes_up_healthy(compose_stack: ComposeStack) -> None:
    assert_healthy(compose_stack)
    # Each server answers on the loopback port the patterns use.
    assert compose_stack.prefect_get("health") is True
    assert httpx.get(f"{compose_stack.mlflow}/health", timeout=10).status_code == 200
    airflow = f"http://127.0.0.1:{compose_stack.env['STACK_AIRFLOW_PORT']}/api/v2/monitor/health"
    health = httpx.get(airflow, timeout=10).json()
    assert {health[c]["status"] for c in ("metadatabase", "scheduler", "dag_processor", "triggerer")} == {"healthy"}
    # S3 with the bucket initialisation done, and a wrong key refused.
    buckets = {b["Name"] for b in compose_stack.s3().list_buckets()["Buckets"]}
    assert {"dvc", "mlflow", "p2-data", "metaflow", "p4-models"} <= buckets
    with pytest.raises(ClientError):
        compose_stack.s3("not-the-key", "not-the-secret").list_buckets()
    # Prefect and MLflow keep their state in Postgres, not in a file in the container.
    for service, variable in (
        ("prefect-server", "PREFECT_API_DATABASE_CONNECTION_URL"),
        ("mlflow", "MLFLOW_BACKEND_STORE_URI"),
    ):
        done = compose_stack.compose("exec", "-T", service, "printenv", variable)
        assert done.stdout.startswith("postgresql+"), (service, done.output)


@pytest.mark.security
def test_services_refuse_requests_without_credentials(compose_stack: ComposeStack) -> None:
    """The compose half of the security battery (tests/security has the local tier's):
    no credentials and wrong ones are refused, and nothing listens beyond loopback."""
    version = f"{compose_stack.prefect}/admin/version"
    assert httpx.get(version, timeout=10).status_code == 401
    assert httpx.get(version, auth=("admin", "wrong"), timeout=10).status_code == 401
    assert httpx.get(version, headers=compose_stack.prefect_headers, timeout=10).status_code == 200
    body = {"name": "intruder", "flow_id": "00000000-0000-0000-0000-000000000000", "work_pool_name": "p4-process"}
    assert httpx.post(f"{compose_stack.prefect}/deployments/", json=body, timeout=10).status_code in (401, 403)
    search = f"{compose_stack.mlflow}/api/2.0/mlflow/experiments/search?max_results=1"
    assert httpx.get(search, timeout=10).status_code == 401
    assert httpx.get(search, auth=("admin", "wrong"), timeout=10).status_code == 401
    assert httpx.get(search, auth=compose_stack.mlflow_auth, timeout=10).status_code == 200
    airflow = f"http://127.0.0.1:{compose_stack.env['STACK_AIRFLOW_PORT']}/api/v2/dags"
    assert httpx.get(airflow, timeout=10).status_code == 401
    # Postgres: MLflow's role opens its own database, and not Prefect's.
    probe = (
        "import os, sys, psycopg2\n"
        "url = os.environ['MLFLOW_BACKEND_STORE_URI']\n"
        "user, rest = url.split('://', 1)[1].split(':', 1)\n"
        "password, address = rest.split('@', 1)\n"
        "host, port = address.split('/')[0].split(':')\n"
        "for db in ('mlflow', 'prefect'):\n"
        "    try:\n"
        "        psycopg2.connect(host=host, port=port, user=user, password=password, dbname=db).close()\n"
        "        print(db, user, 'connected')\n"
        "    except psycopg2.OperationalError as exc:\n"
        "        print(db, user, 'refused:', str(exc).strip())\n"
    )
    done = compose_stack.compose("exec", "-T", "mlflow", "python", "-c", probe)
    assert "mlflow mlflow connected" in done.stdout, done.output
    assert "prefect mlflow refused: " in done.stdout and "permission denied for database" in done.stdout, done.output
    # Every listening socket of every container's processes (host network here), or,
    # on a bridge network, every published port: on loopback only.
    ids = compose_stack.compose("ps", "-q").stdout.split()
    inspect = run(["docker", "inspect", *ids], env=compose_stack.env)
    containers = json.loads(inspect.stdout)
    host_network = [c for c in containers if c["HostConfig"]["NetworkMode"] == "host"]
    sockets = listening(process_tree(*(c["State"]["Pid"] for c in host_network)))
    if host_network:
        assert int(compose_stack.env["STACK_PREFECT_PORT"]) in {port for _, _, port in sockets}, sockets
        # SeaweedFS's filer (its HTTP API would bypass the S3 identities) wants a signed request.
        filer = f"http://127.0.0.1:{int(compose_stack.env['STACK_SEAWEED_PORT_BASE']) + 4}/buckets/"
        assert httpx.get(filer, timeout=10).status_code == 401
    beyond = [s for s in sockets if s[1] not in ("127.0.0.1", "::1")]
    for c in containers:
        for binding in [b for bs in (c["HostConfig"]["PortBindings"] or {}).values() for b in bs or []]:
            if binding["HostIp"] != "127.0.0.1":
                beyond.append((c["Name"], binding["HostIp"], binding["HostPort"]))
    assert beyond == [], f"listening beyond loopback: {beyond}"
    # Who the processes run as: nobody as root (docker-init included); pattern code as
    # the user who ran make (10001 when that is root).
    uids = {
        c["Config"]["Labels"]["com.docker.compose.service"]: effective_uids(process_tree(c["State"]["Pid"]))
        for c in containers
        if c["State"]["Running"]
    }
    assert len(uids) >= 11 and all(found and 0 not in found for found in uids.values()), uids
    code = [name for name in uids if name.startswith(("airflow-", "p1-", "p3-worker", "p4-worker"))]
    assert code and all(uids[name] == {os.getuid() or 10001} for name in code), uids
    # Pattern code reads the checkout from a read-only mount; pattern 3's metadata folder it writes.
    metadata = compose_stack.env["P3_METAFLOW_METADATA_DIR"]
    probe = (
        "import os, pathlib, sys\n"
        "for path in sys.argv[1:]:\n"
        "    print(path, 'read-only' if os.statvfs(path).f_flag & os.ST_RDONLY else 'writable')\n"
        "p = pathlib.Path(sys.argv[-1], '.probe'); p.write_text('x'); p.unlink()\n"
    )
    for name in ("airflow-scheduler", "p1-retrain", "p3-worker-1", "p4-worker"):
        done = compose_stack.compose("exec", "-T", name, "python", "-c", probe, str(REPO), metadata)
        assert f"{REPO} read-only" in done.stdout, (name, done.output)
        if name.startswith("p3-worker"):
            assert done.returncode == 0 and f"{metadata} writable" in done.stdout, (name, done.output)


# ---- the patterns, with environment changes only ----------------------------------------
def test_pattern_1_registers_a_model(compose_stack: ComposeStack, p1_run: dict[str, str]) -> None:
    assert p1_run["status"] == "ok" and p1_run["decision"] == "promoted" and p1_run["version"] == "1", p1_run
    first = [v for v in compose_stack.model_versions(P1_MODEL) if v["version"] == "1"]
    assert first and first[0]["run_id"] == p1_run["mlflow_run"], first
    # Its files went to the compose S3, through the MLflow server: the run's
    # plot, and the logged model (MLflow 3 keeps it under models/m-<id>).
    version = compose_stack.mlflow_get("model-versions/get", name=P1_MODEL, version=p1_run["version"])
    model_id = version["model_version"]["source"].removeprefix("models:/")
    listing = compose_stack.s3().list_objects_v2(Bucket="mlflow", Prefix="artifacts/").get("Contents", [])
    keys = [o["Key"] for o in listing]
    assert any(p1_run["mlflow_run"] in k and k.endswith("confusion_matrix.png") for k in keys), keys[:20]
    assert any(f"/{model_id}/" in k and k.endswith("MLmodel") for k in keys), (model_id, keys[:20])


def test_pattern_1_loop_runs_in_the_p1_containers(compose_stack: ComposeStack, p1_loop: Completed) -> None:
    """The loop on the compose tier: the triggers on the compose Prefect server start each
    retraining in the p1-retrain container (the checkout read-only there: the data version
    is fetched into the container), and the p1-endpoint container follows the champion on
    the published loopback port."""
    assert p1_loop.returncode == 0, p1_loop.output[-6000:]
    loop = parse_result(p1_loop.stdout)
    assert loop["data_event"].startswith("p1.data.published:") and loop["drift_event"].startswith("p1.drift.detected:")
    assert float(loop["calm_drift"]) < 0.5 <= float(loop["drift_share"]), loop
    champion = compose_stack.alias_version(P1_MODEL, "champion")
    assert loop["drift_decision"] == "promoted" and loop["champion"] == loop["endpoint"] == champion, loop
    retrain_log = compose_stack.compose("logs", "p1-retrain").stdout
    for flow_run_id in (loop["data_run"], loop["drift_run"]):
        flow_run = compose_stack.prefect_get(f"flow_runs/{flow_run_id}")
        assert flow_run["state_type"] == "COMPLETED" and flow_run["created_by"]["type"] == "AUTOMATION", flow_run
        assert flow_run_id in retrain_log, "the run was not executed by the p1-retrain container"
    served = compose_stack.compose("logs", "p1-endpoint").stdout
    assert f"serving models:/{P1_MODEL}/{champion} (@champion)" in served, served[-3000:]


def test_pattern_2_runs_both_dags_in_the_compose_airflow(compose_stack: ComposeStack) -> None:
    done = compose_stack.make("pattern-2", timeout=1200)
    assert done.returncode == 0, done.output[-4000:]
    result = parse_result(done.stdout)
    assert result["status"] == "ok" and result["decision"] == "published", result
    # The runs are the Airflow scheduler's (LocalExecutor), not an in-process DAG.test():
    # the ETL run the harness triggered, the training run the scheduler created from its asset event.
    base = f"http://127.0.0.1:{compose_stack.env['STACK_AIRFLOW_PORT']}"
    headers = {"Authorization": f"Bearer {airflow_token(compose_stack, base)}"}
    for dag_id, run_id, run_type in (
        ("p2_etl", result["etl_run"], "manual"),
        ("p2_train", result["train_run"], "asset_triggered"),
    ):
        run = httpx.get(f"{base}/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}", headers=headers, timeout=30)
        assert run.status_code == 200 and run.json()["state"] == "success", run.text
        assert run.json()["run_type"] == run_type, run.json()
    # The model the scheduler's tasks published, in the compose S3.
    assert result["published"] == f"s3://p2-data/published/ds={result['logical_date']}"
    prefix = result["published"].removeprefix("s3://p2-data/") + "/"
    listing = compose_stack.s3().list_objects_v2(Bucket="p2-data", Prefix=prefix).get("Contents", [])
    assert sorted(o["Key"].removeprefix(prefix) for o in listing) == ["decision.json", "metrics.json", "model.joblib"]


def test_pattern_3_runs_on_the_compose_workers(compose_stack: ComposeStack) -> None:
    done = compose_stack.make("pattern-3", timeout=1200)
    assert done.returncode == 0, done.output[-4000:]
    result = parse_result(done.stdout)
    assert result["status"] == "ok" and int(result["runs"]) == 4 and int(result["workers"]) == 2, result
    # The flow runs were executed by the two containers' workers.
    children = {"flow_runs": {"parent_flow_run_id": {"any_": [result["prefect_flow_run"]]}}, "limit": 50}
    runs = compose_stack.prefect_post("flow_runs/filter", children)
    workers = {r.get("labels", {}).get("prefect.worker.name", "") for r in runs}
    assert {w.split("-pid")[0] for w in workers if w} == {"p3-worker-1", "p3-worker-2"}, workers


def test_pattern_4_cycle_deploys_and_runs_on_the_compose_worker(compose_stack: ComposeStack) -> None:
    done = compose_stack.make("pattern-4", timeout=1200)
    assert done.returncode == 0, done.output[-4000:]
    result = parse_result(done.stdout)
    assert result["status"] == "ok" and result["mode"] == "source" and result["rows"] == "40", result
    run = compose_stack.prefect_get(f"flow_runs/{result['retrain_run']}")
    assert run["state_type"] == "COMPLETED"
    assert run["labels"].get("prefect.worker.name", "").startswith("p4-worker-pid"), run["labels"]


# ---- data survives `down` and `up` ------------------------------------------------
def test_down_and_up_keep_the_named_volumes_and_every_piece_of_data(
    compose_stack: ComposeStack, p1_run: dict[str, str]
) -> None:
    """`make down` removes the containers and keeps the volumes; `make up` brings every
    service back healthy on the same data: the model versions and the champion (MLflow in
    Postgres), the files behind them (S3), the flow runs (Prefect in Postgres), and the
    endpoint serving that champion again."""
    flow_run = p1_run["prefect_flow_run"]
    versions = compose_stack.model_versions(P1_MODEL)
    champion = compose_stack.alias_version(P1_MODEL, "champion")  # the loop's
    volumes = compose_stack.volumes()
    expected = {f"{PROJECT}_{v}" for v in ("postgres-data", "s3-data", "airflow-home", "mlflow-auth")}
    assert expected <= volumes, volumes
    down = compose_stack.make("down", timeout=300)
    assert down.returncode == 0, down.output
    assert compose_stack.services() == {}
    assert compose_stack.volumes() == volumes
    up = compose_stack.make("up", timeout=900)
    assert up.returncode == 0, up.output[-4000:]
    assert_healthy(compose_stack)
    assert compose_stack.model_versions(P1_MODEL) == versions
    assert compose_stack.alias_version(P1_MODEL, "champion") == champion
    assert compose_stack.prefect_get(f"flow_runs/{flow_run}")["state_type"] == "COMPLETED"
    # The model's files come back from S3 through MLflow.
    files = compose_stack.mlflow_get("artifacts/list", run_id=p1_run["mlflow_run"], path="plots")["files"]
    png = httpx.get(
        f"{compose_stack.mlflow}/get-artifact",
        params={"path": files[0]["path"], "run_uuid": p1_run["mlflow_run"]},
        auth=compose_stack.mlflow_auth,
        timeout=30,
    )
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    # The endpoint container loads @champion before it answers.
    port = compose_stack.env["P1_ENDPOINT_PORT"]
    assert httpx.get(f"http://127.0.0.1:{port}/version", timeout=10).json()["version"] == champion


def airflow_token(stack: ComposeStack, base: str) -> str:
    response = httpx.post(
        f"{base}/auth/token",
        json={"username": "admin", "password": stack.env["AIRFLOW_ADMIN_PASSWORD"]},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["access_token"]
