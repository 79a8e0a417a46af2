"""Pattern 2: the DAGs parse cleanly and cheaply, the KFP pipeline compiles to
the expected IR, the cluster-mode pod renders without a cluster; then, against
a real local stack with Airflow's services, the runs as a user runs them
(`make pattern-2`): the ETL run's dataset in S3 and its asset event, the
training run the scheduler created from that event, the KFP run's metrics in
XCom, the branch, one KFP execution per dataset content. The bad inputs that
need a setting of their own (a source file, an S3 URL, a timeout) run the two
DAGs in the harness's process (`DAG.test()`, no P2_AIRFLOW_API_URL): Airflow's
services keep the settings they started with."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import (
    PATTERNS,
    REPO,
    Stack,
    check_ui,
    commit_of,
    free_port,
    in_env,
    lineage_chain,
    listening,
    parse_result,
    process_tree,
)

P2 = PATTERNS / "p2_airflow_kfp"
PIPELINE = P2 / "pipeline"
INSPECT = Path(__file__).with_name("inspect_dag.py")
BUCKET = "p2-data"
WINE_ROWS = 178
ETL_TASKS = ["extract", "load", "transform"]
TRAIN_TASKS = ["check_threshold", "collect_metrics", "plan", "publish_model", "reject_model", "submit_pipeline"]


def clean_env(base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """An environment (this process's by default) without anything that could
    point pattern 2 or Airflow elsewhere."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith(("P2_", "AIRFLOW", "KFP_", "VIRTUAL_ENV"))}
    return env | extra


def inspect(what: str, tmp_path: Path, **extra: str) -> dict:
    env = clean_env(AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW__CORE__LOAD_EXAMPLES="False", **extra)
    done = in_env(P2, "python", str(INSPECT), what, env=env, timeout=300)
    assert done.returncode == 0, done.output[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- the DAG, parsed as Airflow parses it (no stack) -------------------------------
def test_dag_imports_with_expected_tasks_and_no_heavy_imports(tmp_path: Path) -> None:
    dag = inspect("structure", tmp_path)
    assert dag["import_errors"] == {}
    assert dag["dag_ids"] == ["p2_etl", "p2_train"]
    etl, train = dag["p2_etl"], dag["p2_train"]
    assert etl["tasks"] == ETL_TASKS and train["tasks"] == TRAIN_TASKS
    assert {tuple(e) for e in etl["edges"]} == {("extract", "transform"), ("transform", "load")}
    assert etl["outlets"] == {"load": ["s3://p2-data/datasets/wine"]}  # the Asset, written by load only
    edges = {tuple(e) for e in train["edges"]}
    chain = ["plan", "submit_pipeline", "collect_metrics", "check_threshold"]
    for upstream, downstream in zip(chain, chain[1:], strict=False):
        assert (upstream, downstream) in edges, (upstream, downstream, edges)
    assert {("check_threshold", "publish_model"), ("check_threshold", "reject_model")} <= edges
    assert train["operators"]["check_threshold"] == "_BranchPythonDecoratedOperator"
    assert etl["schedule"] == "0 4 * * *" and etl["catchup"] is False
    assert "p2_wine" in train["schedule"] and "s3://p2-data/datasets/wine" in train["schedule"]  # no clock
    assert etl["params"] == train["params"] == {"n_estimators": 200, "max_depth": 6, "min_accuracy": 0.9}
    # Parsing loads none of kfp, scikit-learn, pandas, boto3 or the Kubernetes client.
    assert dag["heavy_modules"] == []


def test_cluster_mode_renders_the_submit_pod_without_a_cluster(tmp_path: Path) -> None:
    host = "http://ml-pipeline-ui.kubeflow:80"
    pod = inspect("pod", tmp_path, P2_KFP_HOST=host, P2_KFP_IMAGE="registry.example/p2-kfp-python:1")
    assert pod["operator"] == "KubernetesPodOperator"
    assert pod["upstream"] == ["plan"]
    assert pod["namespace"] == "kubeflow"
    assert pod["image"] == "registry.example/p2-kfp-python:1"
    assert pod["command"] == ["python", "/app/pipeline/submit.py"]
    args = pod["args"]
    assert args[:4] == ["--mode", "cluster", "--host", host]
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags["--run-name"] == "p2-wine-1fe63d079def-m6-n200"  # rendered from the plan task's XCom
    assert flags["--dataset-uri"] == "s3://p2-data/datasets/wine/ds=2026-03-01/wine.csv"
    assert flags["--result-file"] == "/airflow/xcom/return.json"
    assert json.loads(flags["--params-json"]) == {"n_estimators": 200, "max_depth": 6}
    assert json.loads(flags["--origin-json"])["dag_id"] == "p2_train"  # lineage
    # S3 as pods reach it (not the host's 127.0.0.1 endpoint), passed on to the components.
    assert pod["env"]["AWS_ENDPOINT_URL_S3"] == "http://seaweedfs.kubeflow:9000"
    assert pod["env"]["P2_CLUSTER_S3_ENDPOINT_URL"] == "http://seaweedfs.kubeflow:9000"
    assert pod["env"]["P2_CLUSTER_S3_SECRET"] == "p2-s3-credentials"
    assert pod["env"]["P2_KFP_IMAGE"] == "registry.example/p2-kfp-python:1"  # the components' image too
    assert pod["env_from"] == ["p2-s3-credentials"]  # the S3 keys come from a Kubernetes secret
    assert pod["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    assert pod["do_xcom_push"] is True and pod["sidecars"] == ["airflow-xcom-sidecar"]


# ---- the KFP pipeline (no stack) -----------------------------------------------------
def _compile_text(tmp_path: Path, **extra: str) -> str:
    """`pipeline.py compile` in the KFP environment; the IR as written."""
    out = tmp_path / "pipeline.yaml"
    done = in_env(PIPELINE, "python", "pipeline.py", "compile", "--output", str(out), env=clean_env(**extra))
    assert done.returncode == 0, done.output[-3000:]
    return out.read_text()


def _compile(tmp_path: Path, **extra: str) -> dict:
    return yaml.safe_load(_compile_text(tmp_path, **extra))


def _artifact_types(definitions: dict) -> dict[str, str]:
    return {k: v["artifactType"]["schemaTitle"] for k, v in definitions.get("artifacts", {}).items()}


def test_pipeline_compiles_to_the_expected_ir(tmp_path: Path) -> None:
    ir = _compile(tmp_path)
    assert ir["pipelineInfo"]["name"] == "p2-wine-training"
    assert set(ir["components"]) == {"comp-validate", "comp-train", "comp-evaluate"}
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert {k: v["parameterType"] for k, v in params.items()} == {
        "dataset_uri": "STRING",
        "export_uri": "STRING",
        "n_estimators": "NUMBER_INTEGER",
        "max_depth": "NUMBER_INTEGER",
        "test_size": "NUMBER_DOUBLE",
        "random_state": "NUMBER_INTEGER",
        "min_rows_per_class": "NUMBER_INTEGER",
    }
    assert params["n_estimators"]["defaultValue"] == 200
    comps = ir["components"]
    assert _artifact_types(comps["comp-validate"]["outputDefinitions"]) == {
        "train_set": "system.Dataset",
        "test_set": "system.Dataset",
    }
    assert _artifact_types(comps["comp-train"]["inputDefinitions"]) == {"train_set": "system.Dataset"}
    assert _artifact_types(comps["comp-train"]["outputDefinitions"]) == {"model": "system.Model"}
    assert _artifact_types(comps["comp-evaluate"]["inputDefinitions"]) == {
        "model": "system.Model",
        "test_set": "system.Dataset",
    }
    assert _artifact_types(comps["comp-evaluate"]["outputDefinitions"]) == {
        "metrics": "system.Metrics",
        "classification": "system.ClassificationMetrics",
    }
    # The pipeline's output is the evaluate step's Metrics.
    assert _artifact_types(ir["root"]["outputDefinitions"]) == {"Output": "system.Metrics"}
    tasks = ir["root"]["dag"]["tasks"]
    assert tasks["train"]["dependentTasks"] == ["validate"]
    assert sorted(tasks["evaluate"]["dependentTasks"]) == ["train", "validate"]
    # Everything runs in the image of the KFP environment; nothing is pip-installed at run time.
    executors = ir["deploymentSpec"]["executors"]
    for executor in executors.values():
        assert executor["container"]["image"] == "p2-kfp-python:0.1.0"
        assert "pip install" not in json.dumps(executor["container"]["command"])
    # Resource requests for the cluster, no accelerator unless asked for.
    resources = executors["exec-train"]["container"]["resources"]
    assert resources["resourceCpuRequest"] == "1" and resources["resourceMemoryLimit"] == "4G"
    assert "accelerator" not in resources


def test_pipeline_declares_an_accelerator_when_asked(tmp_path: Path) -> None:
    ir = _compile(tmp_path, P2_TRAIN_ACCELERATOR="nvidia.com/gpu")
    resources = ir["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "1"


def test_cluster_compile_gives_components_s3_from_a_secret(tmp_path: Path) -> None:
    """What the submit pod compiles: validate and evaluate (the S3 readers and
    writers) get the in-cluster endpoint and the keys from the secret by name."""
    text = _compile_text(
        tmp_path, P2_CLUSTER_S3_SECRET="p2-s3-credentials", P2_CLUSTER_S3_ENDPOINT_URL="http://minio.example:9000"
    )
    pipeline_spec, platform_spec = yaml.safe_load_all(text)
    for executor in ("exec-validate", "exec-evaluate"):
        container = pipeline_spec["deploymentSpec"]["executors"][executor]["container"]
        # Only the endpoint is inlined; the keys come from the secret at run time.
        assert container["env"] == [{"name": "AWS_ENDPOINT_URL_S3", "value": "http://minio.example:9000"}]
    executors = platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert sorted(executors) == ["exec-evaluate", "exec-validate"]
    for config in executors.values():
        (secret,) = config["secretAsEnv"]
        assert secret["secretName"] == "p2-s3-credentials"
        assert {k["envVar"] for k in secret["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_committed_ir_is_up_to_date(tmp_path: Path) -> None:
    """`make pattern-2-compile` writes pipeline/p2_pipeline.yaml; it must match the code."""
    assert _compile(tmp_path) == yaml.safe_load((PIPELINE / "p2_pipeline.yaml").read_text())


# ---- against the local stack ----------------------------------------------------------
@pytest.fixture(scope="module")
def p2(p2_env: dict[str, str]) -> dict[str, str]:
    """Pattern 2's environment on the session stack: its own state folder (tests/conftest.py)."""
    return p2_env


def run_p2(stack: Stack, p2: dict[str, str], *args: str, env: dict[str, str] | None = None):
    """`python -m harness` in the pattern's environment, in-process (p2 has no
    P2_AIRFLOW_API_URL: make sets that), for the settings a run cannot pass on."""
    return stack.in_env(P2, "python", "-m", "harness", *args, env=p2 | (env or {}))


def s3_keys(stack: Stack, prefix: str) -> list[str]:
    listing = stack.s3().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def query(p2: dict[str, str], sql: str, *args, home: str = "airflow") -> list[tuple]:
    """Airflow's metadata database: the services' (`airflow`) or the in-process runs' (`airflow-dag-test`)."""
    db = Path(p2["P2_STATE_DIR"]) / home / "airflow.db"
    with sqlite3.connect(db) as con:
        return con.execute(sql, args).fetchall()


def xcom(p2: dict[str, str], dag_run: str, task_id: str, key: str = "return_value"):
    rows = query(
        p2,
        "select x.value from xcom x join dag_run r on r.id = x.dag_run_id "
        "where r.run_id = ? and x.task_id = ? and x.key = ?",
        dag_run,
        task_id,
        key,
    )
    assert rows, f"no XCom {task_id}/{key} for {dag_run}"
    value = json.loads(rows[0][0])
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value


def task_states(p2: dict[str, str], dag_run: str, home: str = "airflow") -> dict[str, str]:
    return dict(query(p2, "select task_id, state from task_instance where run_id = ?", dag_run, home=home))


def asset_events(p2: dict[str, str], etl_run: str, home: str = "airflow") -> list[tuple]:
    """(event id, extra) of the asset events an ETL run wrote."""
    return query(p2, "select id, extra from asset_event where source_run_id = ?", etl_run, home=home)


def kfp_executions(p2: dict[str, str], run_name: str) -> list[str]:
    """kfp.local writes one folder per pipeline execution under the run's root."""
    root = Path(p2["P2_STATE_DIR"]) / "kfp-local" / run_name
    return sorted(p.name for p in root.glob("p2-wine-training-*")) if root.exists() else []


def make_p2(stack: Stack, p2: dict[str, str], *args: str):
    return stack.make("pattern-2", env=p2 | {"ARGS": " ".join(args)})


SMOKE_DATE = "2026-03-01"


@pytest.fixture(scope="module")
def first_run(stack: Stack, p2: dict[str, str]) -> Iterator[dict[str, str]]:
    """`make pattern-2` for SMOKE_DATE: the first ETL run, the first training run.
    Afterwards Airflow's four services stop, so they do not load the worker's later tests."""
    started = time.perf_counter()
    done = make_p2(stack, p2, "--date", SMOKE_DATE)
    wall = time.perf_counter() - started
    try:
        assert done.returncode == 0, done.output[-5000:]
        yield parse_result(done.stdout) | {"_output": done.output, "_wall": str(wall)}
    finally:
        stopped = stack.make("_p2-airflow-stop", env=p2)
        assert stopped.returncode == 0, stopped.output[-2000:]


@pytest.mark.browser
def test_the_pages_the_readme_shows_show_the_first_run(ui, first_run: dict[str, str]) -> None:
    """Airflow's UI: the training DAG run in state success, and the asset p2_wine with the
    event the ETL run wrote (tests/conftest.py check_ui), while the services still run."""
    fields = check_ui(ui, "p2_airflow_kfp", first_run)
    assert fields["etl_run"] == first_run["etl_run"] and fields["train_run"] == first_run["train_run"]


def test_smoke_the_scheduler_trains_on_the_dataset_the_asset_event_names(
    stack: Stack, p2: dict[str, str], first_run: dict[str, str]
) -> None:
    result = first_run
    assert result["status"] == "ok" and result["decision"] == "published", result["_output"][-3000:]
    assert result["mode"] == "local" and result["reused"] == "false"
    assert result["kfp_run"].startswith("p2-wine-") and result["kfp_run"].endswith("-m6-n200")
    assert result["kfp_run_id"].startswith("local-")

    # The ETL run: the dataset it loaded, under a key derived from the logical date ...
    key = f"datasets/wine/ds={SMOKE_DATE}/wine.csv"
    assert result["dataset"] == f"s3://{BUCKET}/{key}"
    body = stack.s3().get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    assert body.splitlines()[0].endswith(",target") and len(body.splitlines()) == WINE_ROWS + 1
    assert task_states(p2, result["etl_run"]) == {t: "success" for t in ETL_TASKS}
    # ... and the one asset event it wrote, naming that dataset.
    [(event_id, extra)] = asset_events(p2, result["etl_run"])
    extra = json.loads(extra)
    assert extra["dataset_uri"] == result["dataset"] and extra["logical_date"] == SMOKE_DATE
    assert result["kfp_run"] == f"p2-wine-{extra['dataset_sha256'][:12]}-m6-n200"

    # The training run: created by the scheduler from that event, not by the harness.
    [(run_type, triggered_by)] = query(
        p2,
        "select r.run_type, e.event_id from dag_run r join dagrun_asset_event e on e.dag_run_id = r.id "
        "where r.dag_id = 'p2_train' and r.run_id = ?",
        result["train_run"],
    )
    assert (run_type, triggered_by) == ("asset_triggered", event_id)
    plan = xcom(p2, result["train_run"], "plan")
    assert plan["dataset_uri"] == result["dataset"] and plan["asset_event"]["etl_dag_run_id"] == result["etl_run"]

    # The KFP run's metrics came back into Airflow's XCom, and match the run record.
    metrics = xcom(p2, result["train_run"], "collect_metrics")
    assert 0.9 <= metrics["accuracy"] <= 1.0 and metrics["test_rows"] == 45
    assert f"{metrics['accuracy']:.4f}" == result["accuracy"]
    record = json.loads(
        stack.s3().get_object(Bucket=BUCKET, Key=f"runs/{result['kfp_run']}/metrics.json")["Body"].read()
    )
    assert record == metrics
    submitted = xcom(p2, result["train_run"], "submit_pipeline")
    assert submitted["state"] == "SUCCEEDED" and submitted["run_id"] == result["kfp_run_id"]
    assert submitted["kfp_metrics"]["accuracy"] == metrics["accuracy"]  # the Metrics artifact itself

    # The branch chose publish; reject was skipped.
    assert xcom(p2, result["train_run"], "check_threshold", "skipmixin_key") == {"followed": ["publish_model"]}
    states = task_states(p2, result["train_run"])
    assert states == {t: "success" for t in TRAIN_TASKS if t != "reject_model"} | {"reject_model": "skipped"}
    published = f"published/ds={SMOKE_DATE}/"
    assert result["published"] == f"s3://{BUCKET}/{published.rstrip('/')}"
    assert s3_keys(stack, published) == [published + n for n in ("decision.json", "metrics.json", "model.joblib")]
    decision = json.loads(stack.s3().get_object(Bucket=BUCKET, Key=published + "decision.json")["Body"].read())
    assert decision["kfp_run_id"] == result["kfp_run_id"] and decision["metrics"] == metrics
    assert decision["asset_event"]["etl_dag_run_id"] == result["etl_run"]

    assert "Airflow UI" in result["_output"] and "/dags/p2_train/runs/" in result["_output"]
    assert len(kfp_executions(p2, result["kfp_run"])) == 1


def test_lineage_follows_the_model_back_through_the_asset_event_to_the_etl_run(
    stack: Stack, p2: dict[str, str], first_run: dict[str, str]
) -> None:
    """`make lineage` (infra/lineage/lineage.py) from the training run and from the KFP run:
    every link equals what is known independently (the Result line, this checkout's
    commit, the sha256 of the dataset's bytes in S3)."""
    result = first_run
    bucket, key = result["dataset"].removeprefix("s3://").split("/", 1)
    dataset = stack.s3().get_object(Bucket=bucket, Key=key)
    data_sha = hashlib.sha256(dataset["Body"].read()).hexdigest()
    assert dataset["Metadata"]["dataset-sha256"] == data_sha  # the object says its own version
    expected = {
        "pattern": "p2",
        "git_commit": commit_of(P2),
        "data_version": data_sha,
        "orchestrator_run": f"p2_train/{result['train_run']}",
        "tracker_run": result["kfp_run_id"],
        "model_version": f"{result['published']}/model.joblib",
    }
    on = Stack(env=p2, state_dir=stack.state_dir)  # lineage.py reads the services' database
    for given in (f"p2_train/{result['train_run']}", result["kfp_run_id"]):
        found = lineage_chain(on, given)
        assert {k: v for k, v in found.items() if k != "_output"} == expected, (given, found["_output"])
        assert f"written by p2_etl/{result['etl_run']} (ETL run success" in found["_output"]
        assert "asset event of s3://p2-data/datasets/wine" in found["_output"]


def test_the_bench_splits_the_run_and_times_the_handoff(p2: dict[str, str], first_run: dict[str, str]) -> None:
    """bench/matrix.py's readers of this run (`make bench` step 4): start-up, orchestration
    (both DAG runs, the handoff included) and work (the pipeline) add up to the wall
    time; the asset event comes before the training run's start."""
    sys.path.insert(0, str(REPO / "bench"))
    import matrix

    wall = float(first_run["_wall"])
    parts = matrix.split_p2(p2, first_run, wall)
    total = parts["startup_exit_s"] + parts["orchestration_s"] + parts["work_s"]
    assert total == pytest.approx(wall, abs=0.01)
    assert parts["work_s"] > 0 and parts["orchestration_s"] > 0 and parts["startup_exit_s"] > 0, parts
    assert 0 < matrix.p2_asset_to_training_start(p2, first_run) < parts["orchestration_s"]


AIRFLOW_PROGRAMS = ["p2-airflow-api", "p2-airflow-scheduler", "p2-airflow-dag-processor", "p2-airflow-triggerer"]


def test_airflows_services_run_under_the_stack_on_loopback_only(stack: Stack, first_run: dict[str, str]) -> None:
    """The four services `make pattern-2` started, healthy in `stack.py status`; every
    socket they and their children (LocalExecutor workers, tasks) listen on is loopback."""
    status = stack.stack_py("status")
    assert status.returncode == 0, status.output
    for name in AIRFLOW_PROGRAMS:
        assert any(line.split()[:3] == [name, "RUNNING", "healthy"] for line in status.stdout.splitlines()), (
            status.stdout
        )
    pids = [int(stack.stack_py("pid", name).stdout) for name in AIRFLOW_PROGRAMS]
    sockets = listening(process_tree(*pids))
    assert int(stack.env["STACK_AIRFLOW_PORT"]) in {port for _, _, port in sockets}, sockets
    beyond = [(pid, address, port) for pid, address, port in sockets if address not in ("127.0.0.1", "::1")]
    assert beyond == [], f"listening beyond loopback (pid, address, port): {beyond}"


@pytest.mark.failure_mode
def test_the_same_dataset_content_for_another_date_executes_the_pipeline_once(
    stack: Stack, p2: dict[str, str], first_run: dict[str, str]
) -> None:
    record_key = f"runs/{first_run['kfp_run']}/run.json"
    before = stack.s3().head_object(Bucket=BUCKET, Key=record_key)["LastModified"]
    again = make_p2(stack, p2, "--date", "2026-03-02")
    assert again.returncode == 0, again.output[-3000:]
    result = parse_result(again.stdout)
    assert result["reused"] == "true" and result["decision"] == "published"
    assert result["kfp_run"] == first_run["kfp_run"] and result["kfp_run_id"] == first_run["kfp_run_id"]
    assert result["etl_run"] != first_run["etl_run"] and result["train_run"] != first_run["train_run"]
    assert result["published"] == f"s3://{BUCKET}/published/ds=2026-03-02"  # this date's decision
    assert "reusing it, nothing executes" in again.output or "reused=True" in again.output
    assert len(kfp_executions(p2, first_run["kfp_run"])) == 1
    assert stack.s3().head_object(Bucket=BUCKET, Key=record_key)["LastModified"] == before


@pytest.mark.failure_mode
def test_the_same_date_again_follows_its_runs_and_triggers_nothing(
    stack: Stack, p2: dict[str, str], first_run: dict[str, str]
) -> None:
    runs_before = query(p2, "select count(*) from dag_run")
    again = make_p2(stack, p2, "--date", SMOKE_DATE)
    assert again.returncode == 0, again.output[-3000:]
    result = parse_result(again.stdout)
    assert (result["etl_run"], result["train_run"]) == (first_run["etl_run"], first_run["train_run"])
    assert "already exists (success): following it, nothing new is triggered" in again.output
    assert query(p2, "select count(*) from dag_run") == runs_before


def test_weak_model_is_rejected_with_the_reason_and_nothing_published(
    stack: Stack, p2: dict[str, str], first_run: dict[str, str]
) -> None:
    """The params given to the ETL run ride with its asset event to the training run."""
    date = "2026-03-03"
    done = make_p2(stack, p2, "--date", date, "--n-estimators", "1", "--max-depth", "1")
    assert done.returncode != 0, done.output[-3000:]
    result = parse_result(done.stderr)
    assert result["status"] == "failed" and result["decision"] == "rejected"
    assert result["failed_task"] == "reject_model" and result["kfp_run"].endswith("-m1-n1")
    assert float(result["accuracy"]) < 0.9
    assert f"model rejected: accuracy {result['accuracy']} is below the threshold 0.9" in done.output
    assert xcom(p2, result["train_run"], "check_threshold", "skipmixin_key") == {"followed": ["reject_model"]}
    assert task_states(p2, result["train_run"])["publish_model"] == "skipped"
    assert s3_keys(stack, f"published/ds={date}/") == []


@pytest.mark.failure_mode
def test_same_date_with_other_parameters_is_refused(stack: Stack, p2: dict[str, str], first_run) -> None:
    decision_key = f"published/ds={SMOKE_DATE}/decision.json"
    published_before = stack.s3().head_object(Bucket=BUCKET, Key=decision_key)["LastModified"]
    runs_before = query(p2, "select count(*) from dag_run")
    done = make_p2(stack, p2, "--date", SMOKE_DATE, "--n-estimators", "50")
    assert done.returncode != 0, done.output[-3000:]
    assert parse_result(done.stderr)["status"] == "failed"
    assert f"for logical date {SMOKE_DATE} already exists with conf {{}}" in done.output
    assert "fix:" in done.output.lower()
    assert query(p2, "select count(*) from dag_run") == runs_before
    assert len(kfp_executions(p2, first_run["kfp_run"])) == 1
    # The model published for that date by the first run is left as it was.
    assert stack.s3().head_object(Bucket=BUCKET, Key=decision_key)["LastModified"] == published_before


# ---- bad input -------------------------------------------------------------------------
def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _wine_lines() -> list[str]:
    return (P2 / "data" / "wine.csv").read_text().splitlines()


def _assert_failed(done, task: str, expected: str, date: str, stack: Stack) -> dict[str, str]:
    assert done.returncode == 1, done.output[-3000:]
    result = parse_result(done.stderr)
    assert result["status"] == "failed" and result["failed_task"] == task, result
    assert expected in done.output, done.output[-4000:]
    assert result["published"] == "none"
    assert s3_keys(stack, f"published/ds={date}/") == []
    return result


def _assert_no_event_no_training(p2: dict[str, str], result: dict[str, str]) -> None:
    """An ETL run that fails writes no asset event and starts no training run."""
    assert result["train_run"] == "none" and result["kfp_run"] == "none"
    assert asset_events(p2, result["etl_run"], home="airflow-dag-test") == []


def _other_content(tmp_path: Path, name: str, drop: int) -> Path:
    """The wine table without its row `drop`: a dataset of its own (another sha256, another KFP run)."""
    lines = _wine_lines()
    return _write(tmp_path / name, "\n".join(lines[:drop] + lines[drop + 1 :]) + "\n")


@pytest.mark.failure_mode
def test_empty_extract_fails_in_extract(stack: Stack, p2: dict[str, str], first_run, tmp_path: Path) -> None:
    source = _write(tmp_path / "empty.csv", "")
    done = run_p2(stack, p2, "--date", "2026-03-10", env={"P2_SOURCE_FILE": str(source)})
    result = _assert_failed(done, "extract", f"the extract source {source} is empty", "2026-03-10", stack)
    _assert_no_event_no_training(p2, result)


@pytest.mark.failure_mode
def test_malformed_extract_fails_in_transform(stack: Stack, p2: dict[str, str], first_run, tmp_path: Path) -> None:
    lines = _wine_lines()
    lines[5] = lines[5].replace(lines[5].split(",")[2], "abc", 1)
    source = _write(tmp_path / "malformed.csv", "\n".join(lines) + "\n")
    done = run_p2(stack, p2, "--date", "2026-03-11", env={"P2_SOURCE_FILE": str(source)})
    result = _assert_failed(done, "transform", "is malformed: line 6 has a non-numeric value", "2026-03-11", stack)
    assert s3_keys(stack, "datasets/wine/ds=2026-03-11/") == []
    _assert_no_event_no_training(p2, result)


@pytest.mark.failure_mode
def test_unreachable_s3_fails_in_load(stack: Stack, p2: dict[str, str], first_run) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = run_p2(stack, p2, "--date", "2026-03-12", env={"P2_S3_ENDPOINT_URL": url})
    result = _assert_failed(done, "load", f"S3 at {url} is unreachable", "2026-03-12", stack)
    _assert_no_event_no_training(p2, result)


@pytest.mark.failure_mode
def test_component_error_fails_the_submit_task_with_that_error(
    stack: Stack, p2: dict[str, str], first_run, tmp_path: Path
) -> None:
    """Well-formed data that the validate component refuses: a single class."""
    lines = _wine_lines()
    one_class = [lines[0]] + [line for line in lines[1:] if line.endswith(",0")]
    source = _write(tmp_path / "one-class.csv", "\n".join(one_class) + "\n")
    date = "2026-03-13"
    done = run_p2(stack, p2, "--date", date, env={"P2_SOURCE_FILE": str(source)})
    result = _assert_failed(
        done,
        "submit_pipeline",
        f"ValueError: validate: s3://{BUCKET}/datasets/wine/ds={date}/wine.csv has 1 class(es)",
        date,
        stack,
    )
    assert "Inner task failed: 'validate'" in done.output
    assert task_states(p2, result["train_run"], home="airflow-dag-test")["collect_metrics"] == "upstream_failed"
    # No run record: the next attempt for this date runs the pipeline again.
    assert s3_keys(stack, f"runs/{result['kfp_run']}/") == []


@pytest.mark.failure_mode
def test_pipeline_past_its_timeout_fails_the_submit_task(
    stack: Stack, p2: dict[str, str], first_run, tmp_path: Path
) -> None:
    date = "2026-03-14"
    source = _other_content(tmp_path, "timeout.csv", drop=7)  # data never trained: the pipeline runs
    done = run_p2(stack, p2, "--date", date, env={"P2_PIPELINE_TIMEOUT": "3", "P2_SOURCE_FILE": str(source)})
    result = _assert_failed(done, "submit_pipeline", "did not finish within 3 s", date, stack)
    assert s3_keys(stack, f"runs/{result['kfp_run']}/") == []
