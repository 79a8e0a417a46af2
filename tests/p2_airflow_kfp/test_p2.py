"""Pattern 2: the DAG parses cleanly and cheaply, the KFP pipeline compiles to
the expected IR, the cluster-mode pod renders without a cluster; then, against
a real local stack, the DAG run as a user runs it (`make pattern-2`): the
dataset in S3, the KFP run's metrics in XCom, the branch, idempotency per
logical date, and every bad input from the issue."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
import yaml
from conftest import PATTERNS, Stack, free_port, in_env, parse_result

P2 = PATTERNS / "p2_airflow_kfp"
PIPELINE = P2 / "pipeline"
INSPECT = Path(__file__).with_name("inspect_dag.py")
BUCKET = "p2-data"
WINE_ROWS = 178
TASKS = [
    "check_threshold",
    "collect_metrics",
    "extract",
    "load",
    "publish_model",
    "reject_model",
    "submit_pipeline",
    "transform",
]


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
    assert dag["dag_ids"] == ["p2_airflow_kfp"]
    assert dag["tasks"] == TASKS
    edges = {tuple(e) for e in dag["edges"]}
    chain = ["extract", "transform", "load", "submit_pipeline", "collect_metrics", "check_threshold"]
    for upstream, downstream in zip(chain, chain[1:], strict=False):
        assert (upstream, downstream) in edges, (upstream, downstream, edges)
    assert {("check_threshold", "publish_model"), ("check_threshold", "reject_model")} <= edges
    assert dag["operators"]["check_threshold"] == "_BranchPythonDecoratedOperator"
    assert dag["schedule"] == "0 4 * * *" and dag["catchup"] is False
    assert dag["params"] == {"n_estimators": 200, "max_depth": 6, "min_accuracy": 0.9}
    # Parsing loads none of kfp, scikit-learn, pandas, boto3 or the Kubernetes client.
    assert dag["heavy_modules"] == []


def test_cluster_mode_renders_the_submit_pod_without_a_cluster(tmp_path: Path) -> None:
    host = "http://ml-pipeline-ui.kubeflow:80"
    pod = inspect("pod", tmp_path, P2_KFP_HOST=host, P2_KFP_IMAGE="registry.example/p2-kfp-python:1")
    assert pod["operator"] == "KubernetesPodOperator"
    assert pod["upstream"] == ["load"]
    assert pod["namespace"] == "kubeflow"
    assert pod["image"] == "registry.example/p2-kfp-python:1"
    assert pod["command"] == ["python", "/app/pipeline/submit.py"]
    args = pod["args"]
    assert args[:4] == ["--mode", "cluster", "--host", host]
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags["--run-name"] == "p2-airflow-kfp-20260301t000000"  # rendered from the load task's XCom
    assert flags["--dataset-uri"] == "s3://p2-data/datasets/wine/ds=2026-03-01/wine.csv"
    assert flags["--result-file"] == "/airflow/xcom/return.json"
    assert json.loads(flags["--params-json"]) == {"n_estimators": 200, "max_depth": 6}
    assert json.loads(flags["--origin-json"])["dag_run_id"] == "manual__2026-03-01T00:00:00+00:00"  # lineage
    # S3 as pods reach it (not the host's 127.0.0.1 endpoint), passed on to the components.
    assert pod["env"]["AWS_ENDPOINT_URL_S3"] == "http://minio-service.kubeflow:9000"
    assert pod["env"]["P2_CLUSTER_S3_ENDPOINT_URL"] == "http://minio-service.kubeflow:9000"
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
    """`python -m harness` in the pattern's environment (the bad-input cases skip `make up`)."""
    return stack.in_env(P2, "python", "-m", "harness", *args, env=p2 | (env or {}))


def s3_keys(stack: Stack, prefix: str) -> list[str]:
    listing = stack.s3().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def xcom(p2: dict[str, str], dag_run: str, task_id: str, key: str = "return_value"):
    db = Path(p2["P2_STATE_DIR"]) / "airflow" / "airflow.db"
    with sqlite3.connect(db) as con:
        row = con.execute(
            "select x.value from xcom x join dag_run r on r.id = x.dag_run_id "
            "where r.run_id = ? and x.task_id = ? and x.key = ?",
            (dag_run, task_id, key),
        ).fetchone()
    assert row is not None, f"no XCom {task_id}/{key} for {dag_run}"
    value = json.loads(row[0])
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value


def task_states(p2: dict[str, str], dag_run: str) -> dict[str, str]:
    db = Path(p2["P2_STATE_DIR"]) / "airflow" / "airflow.db"
    with sqlite3.connect(db) as con:
        rows = con.execute("select task_id, state from task_instance where run_id = ?", (dag_run,)).fetchall()
    return dict(rows)


def kfp_executions(p2: dict[str, str], run_name: str) -> list[str]:
    """kfp.local writes one folder per pipeline execution under the run's root."""
    root = Path(p2["P2_STATE_DIR"]) / "kfp-local" / run_name
    return sorted(p.name for p in root.glob("p2-wine-training-*")) if root.exists() else []


SMOKE_DATE = "2026-03-01"


@pytest.fixture(scope="module")
def first_run(stack: Stack, p2: dict[str, str]) -> dict[str, str]:
    """`make pattern-2` for SMOKE_DATE, the first run of that date."""
    done = stack.make("pattern-2", env=p2 | {"ARGS": f"--date {SMOKE_DATE}"})
    assert done.returncode == 0, done.output[-5000:]
    return parse_result(done.stdout) | {"_output": done.output}


def test_smoke_dataset_in_s3_metrics_in_xcom_model_published(
    stack: Stack, p2: dict[str, str], first_run: dict[str, str]
) -> None:
    result = first_run
    assert result["status"] == "ok" and result["decision"] == "published", result["_output"][-3000:]
    assert result["mode"] == "local" and result["reused"] == "false"
    assert result["kfp_run"] == "p2-airflow-kfp-20260301t000000"
    assert result["kfp_run_id"].startswith("local-")

    # The dataset Airflow loaded, under a key derived from the logical date.
    key = f"datasets/wine/ds={SMOKE_DATE}/wine.csv"
    assert result["dataset"] == f"s3://{BUCKET}/{key}"
    body = stack.s3().get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    assert body.splitlines()[0].endswith(",target") and len(body.splitlines()) == WINE_ROWS + 1

    # The KFP run's metrics came back into Airflow's XCom, and match the run record.
    metrics = xcom(p2, result["dag_run"], "collect_metrics")
    assert 0.9 <= metrics["accuracy"] <= 1.0 and metrics["test_rows"] == 45
    assert f"{metrics['accuracy']:.4f}" == result["accuracy"]
    record = json.loads(
        stack.s3().get_object(Bucket=BUCKET, Key=f"runs/{result['kfp_run']}/metrics.json")["Body"].read()
    )
    assert record == metrics
    submitted = xcom(p2, result["dag_run"], "submit_pipeline")
    assert submitted["state"] == "SUCCEEDED" and submitted["run_id"] == result["kfp_run_id"]
    assert submitted["kfp_metrics"]["accuracy"] == metrics["accuracy"]  # the Metrics artifact itself

    # The branch chose publish; reject was skipped.
    assert xcom(p2, result["dag_run"], "check_threshold", "skipmixin_key") == {"followed": ["publish_model"]}
    states = task_states(p2, result["dag_run"])
    assert states == {t: "success" for t in TASKS if t != "reject_model"} | {"reject_model": "skipped"}
    published = f"published/ds={SMOKE_DATE}/"
    assert result["published"] == f"s3://{BUCKET}/{published.rstrip('/')}"
    assert s3_keys(stack, published) == [published + n for n in ("decision.json", "metrics.json", "model.joblib")]
    decision = json.loads(stack.s3().get_object(Bucket=BUCKET, Key=published + "decision.json")["Body"].read())
    assert decision["kfp_run_id"] == result["kfp_run_id"] and decision["metrics"] == metrics

    assert "inspect" in result["_output"] and "api-server" in result["_output"]
    assert len(kfp_executions(p2, result["kfp_run"])) == 1


@pytest.mark.failure_mode
def test_same_logical_date_twice_executes_the_pipeline_once(
    stack: Stack, p2: dict[str, str], first_run: dict[str, str]
) -> None:
    record_key = f"runs/{first_run['kfp_run']}/run.json"
    before = stack.s3().head_object(Bucket=BUCKET, Key=record_key)["LastModified"]
    again = stack.make("pattern-2", env=p2 | {"ARGS": f"--date {SMOKE_DATE}"})
    assert again.returncode == 0, again.output[-3000:]
    result = parse_result(again.stdout)
    assert result["reused"] == "true" and result["decision"] == "published"
    assert result["kfp_run"] == first_run["kfp_run"] and result["kfp_run_id"] == first_run["kfp_run_id"]
    assert result["dag_run"] != first_run["dag_run"]  # a new Airflow run, the same KFP run
    assert "reusing it, nothing executes" in again.output
    assert len(kfp_executions(p2, first_run["kfp_run"])) == 1
    assert stack.s3().head_object(Bucket=BUCKET, Key=record_key)["LastModified"] == before


def test_weak_model_is_rejected_with_the_reason_and_nothing_published(
    stack: Stack, p2: dict[str, str], first_run: dict[str, str]
) -> None:
    date = "2026-03-02"
    done = run_p2(stack, p2, "--date", date, "--n-estimators", "1", "--max-depth", "1")
    assert done.returncode == 1, done.output[-3000:]
    result = parse_result(done.stderr)
    assert result["status"] == "failed" and result["decision"] == "rejected"
    assert result["failed_task"] == "reject_model"
    assert float(result["accuracy"]) < 0.9
    assert f"model rejected: accuracy {result['accuracy']} is below the threshold 0.9" in done.output
    assert xcom(p2, result["dag_run"], "check_threshold", "skipmixin_key") == {"followed": ["reject_model"]}
    assert task_states(p2, result["dag_run"])["publish_model"] == "skipped"
    assert s3_keys(stack, f"published/ds={date}/") == []


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


@pytest.mark.failure_mode
def test_empty_extract_fails_in_extract(stack: Stack, p2: dict[str, str], first_run, tmp_path: Path) -> None:
    source = _write(tmp_path / "empty.csv", "")
    done = run_p2(stack, p2, "--date", "2026-03-10", env={"P2_SOURCE_FILE": str(source)})
    _assert_failed(done, "extract", f"the extract source {source} is empty", "2026-03-10", stack)


@pytest.mark.failure_mode
def test_malformed_extract_fails_in_transform(stack: Stack, p2: dict[str, str], first_run, tmp_path: Path) -> None:
    lines = _wine_lines()
    lines[5] = lines[5].replace(lines[5].split(",")[2], "abc", 1)
    source = _write(tmp_path / "malformed.csv", "\n".join(lines) + "\n")
    done = run_p2(stack, p2, "--date", "2026-03-11", env={"P2_SOURCE_FILE": str(source)})
    _assert_failed(done, "transform", "is malformed: line 6 has a non-numeric value", "2026-03-11", stack)
    assert s3_keys(stack, "datasets/wine/ds=2026-03-11/") == []


@pytest.mark.failure_mode
def test_unreachable_s3_fails_in_load(stack: Stack, p2: dict[str, str], first_run) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = run_p2(stack, p2, "--date", "2026-03-12", env={"P2_S3_ENDPOINT_URL": url})
    _assert_failed(done, "load", f"S3 at {url} is unreachable", "2026-03-12", stack)


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
    assert task_states(p2, result["dag_run"])["collect_metrics"] == "upstream_failed"
    # No run record: the next attempt for this date runs the pipeline again.
    assert s3_keys(stack, f"runs/{result['kfp_run']}/") == []


@pytest.mark.failure_mode
def test_same_date_with_other_parameters_is_refused(stack: Stack, p2: dict[str, str], first_run) -> None:
    decision_key = f"published/ds={SMOKE_DATE}/decision.json"
    published_before = stack.s3().head_object(Bucket=BUCKET, Key=decision_key)["LastModified"]
    done = run_p2(stack, p2, "--date", SMOKE_DATE, "--n-estimators", "50")
    assert done.returncode == 1, done.output[-3000:]
    result = parse_result(done.stderr)
    assert result["failed_task"] == "submit_pipeline" and result["published"] == "none"
    assert f"run {first_run['kfp_run']} already exists for this logical date with other parameters" in done.output
    assert len(kfp_executions(p2, first_run["kfp_run"])) == 1
    # The model published for that date by the first run is left as it was.
    assert stack.s3().head_object(Bucket=BUCKET, Key=decision_key)["LastModified"] == published_before


@pytest.mark.failure_mode
def test_pipeline_past_its_timeout_fails_the_submit_task(stack: Stack, p2: dict[str, str], first_run) -> None:
    date = "2026-03-14"
    done = run_p2(stack, p2, "--date", date, env={"P2_PIPELINE_TIMEOUT": "3"})
    result = _assert_failed(done, "submit_pipeline", "did not finish within 3 s", date, stack)
    assert s3_keys(stack, f"runs/{result['kfp_run']}/") == []
