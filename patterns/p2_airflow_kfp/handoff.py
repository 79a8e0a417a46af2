"""Pattern 2: the handoff from Airflow to the KFP environment, in both modes.

Airflow never imports kfp: the KFP SDK lives in its own environment
(`pipeline/`), because its `kubernetes` pin (<31) and the Airflow Kubernetes
provider's (>=35) cannot be installed together. The DAG's submit task runs
that environment's `pipeline/submit.py` instead:

- local mode (no KFP host): as a subprocess of `pipeline/.venv/bin/python`;
  submit.py runs the pipeline with kfp.local's SubprocessRunner.
- cluster mode (`P2_KFP_HOST` set): as the command of a KubernetesPodOperator
  pod whose image holds the same environment; submit.py submits with
  `kfp.Client` and waits with `wait_for_run_completion`.

Either way the answer is the same JSON object, which becomes the task's XCom.
The KFP run's name (one per dataset content and parameters) is its idempotency key.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from datetime import timedelta

from errors import P2Error
from settings import PIPELINE_DIR, P2Settings

SUBMIT_SCRIPT = PIPELINE_DIR / "submit.py"
# submit.py's last stdout line. Spelled out again here, not imported: submit.py
# lives in the other environment.
RESULT_PREFIX = "P2_SUBMIT_RESULT "
POD_XCOM = "/airflow/xcom/return.json"  # where the KubernetesPodOperator reads a pod's XCom


def run_name(dataset_sha256: str, params: dict) -> str:
    """One name per dataset content and training parameters: the idempotency key
    of the KFP run (the same data written twice, or for two dates, trains once)."""
    knobs = "-".join(f"{k[0]}{params[k]}" for k in sorted(params))  # max_depth=6, n_estimators=200: m6-n200
    return re.sub(r"[^a-z0-9-]+", "-", f"p2-wine-{dataset_sha256[:12]}-{knobs}".lower())


def dataset_event(context, asset, dag_id: str):
    """The asset event a training run trains on, and its params.

    Started by the scheduler from asset events: the newest of them (events that
    queued up while a run was going are all handed to the next one), with the
    params its producer asked for. Started by hand: the newest event of the
    asset (its `inlets`), with this run's own params."""
    triggering = context.get("triggering_asset_events") or {}
    events = list(triggering[asset]) if asset in triggering else []
    if events:
        event = events[-1]
        return event, dict(context["params"]) | dict((event.extra or {}).get("train_params") or {})
    history = list(context["inlet_events"][asset])
    if not history:
        raise P2Error(
            f"the DAG run of {dag_id} has no asset event of {asset.uri} to train on: the ETL DAG "
            "has not loaded a dataset yet",
            "run the ETL DAG first (`make pattern-2`, or trigger p2_etl); its load task's event starts training",
        )
    return history[-1], dict(context["params"])


def export_uri(settings: P2Settings, name: str) -> str:
    """Where the pipeline writes its run record (metrics.json, model.joblib, run.json)."""
    return f"s3://{settings.bucket}/runs/{name}"


def submit_arguments(request: dict, settings: P2Settings) -> list[str]:
    """submit.py's arguments for one run. `request` is the load task's XCom:
    run_name, dataset_uri, export_uri and params_json (the pipeline parameters)."""
    return [
        "--run-name", request["run_name"],
        "--dataset-uri", request["dataset_uri"],
        "--export-uri", request["export_uri"],
        "--params-json", request["params_json"],
        "--origin-json", request.get("origin_json") or "{}",
        "--timeout", str(settings.pipeline_timeout),
    ]  # fmt: skip


def mode_arguments(settings: P2Settings) -> list[str]:
    """Where the subprocess submits: kfp.local, or Vertex AI Pipelines (P2_KFP_MODE=vertex)."""
    if settings.mode == "vertex":
        return [
            "--mode", "vertex",
            "--pipeline-root", settings.vertex_pipeline_root,
            "--project", settings.vertex_project,
            "--region", settings.vertex_region,
            "--service-account", settings.vertex_service_account,
        ]  # fmt: skip
    return ["--mode", "local", "--pipeline-root", str(settings.kfp_local_root)]


# ## Local and Vertex modes: a subprocess of the KFP environment
def submit_local(request: dict, settings: P2Settings) -> dict:
    name = request["run_name"]
    python = settings.kfp_python
    if not python.exists():
        raise P2Error(
            f"the KFP environment's interpreter {python} does not exist",
            f"run `uv sync --locked --project {PIPELINE_DIR}` (`make pattern-2` does), or set P2_KFP_PYTHON",
        )
    command = [str(python), str(SUBMIT_SCRIPT), *mode_arguments(settings), *submit_arguments(request, settings)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV", "PYTHONPATH"))}
    # The components are lightweight Python components run with this
    # environment's interpreter; its bin first on PATH covers any `python3`.
    env |= settings.s3_env() | {"PATH": f"{python.parent}{os.pathsep}{env.get('PATH', '')}"}
    print(f"Submitting {name} locally: {' '.join(command)}", flush=True)
    process = subprocess.Popen(
        command,
        cwd=PIPELINE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so a timeout can stop the components too
    )
    # The components' logs go to the Airflow task log as they come; the wait
    # is bounded by the timeout.
    lines: list[str] = []

    def relay() -> None:
        for line in process.stdout:
            lines.append(line)
            print(line, end="", flush=True)

    reader = threading.Thread(target=relay, name="kfp-log-relay", daemon=True)
    reader.start()
    try:
        process.wait(timeout=settings.pipeline_timeout)
    except subprocess.TimeoutExpired as exc:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise P2Error(
            f"the KFP run {name} did not finish within {settings.pipeline_timeout:.0f} s",
            "raise P2_PIPELINE_TIMEOUT, or look at the component logs above for a hang",
        ) from exc
    finally:
        reader.join(timeout=10)
    output = "".join(lines)
    return parse_result(output, name)


def parse_result(output: str, name: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise P2Error(
            f"submit.py gave no result for {name}; its output ends:\n{output[-2000:]}",
            "look at the error above; run `uv sync --locked --project pipeline` if an import failed",
        )
    result = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    check_result(result)
    return result


def check_result(result: dict) -> None:
    if result.get("state") != "SUCCEEDED":
        raise P2Error(
            f"the KFP run {result.get('run_name')} failed: {result.get('error', result.get('state'))}",
            "fix the cause the component names; nothing was published",
        )


# ## Cluster mode: a pod that submits with kfp.Client
def submit_pod(settings: P2Settings, task_id: str, upstream: str):
    """A KubernetesPodOperator that runs submit.py against the KFP API server.

    Its arguments are templates on the upstream task's XCom (the dataset URI,
    run name and parameters), rendered by Airflow when the task runs. The pod
    writes the result to /airflow/xcom/return.json; `do_xcom_push` returns it
    as this task's XCom, just as the local task's return value."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.cncf.kubernetes.secret import Secret
    from kubernetes.client import models as k8s

    # Rendered by Airflow when the task runs: the plan task's XCom fields.
    request = {
        field: f"{{{{ ti.xcom_pull(task_ids='{upstream}')['{field}'] }}}}"
        for field in ("run_name", "dataset_uri", "export_uri", "params_json", "origin_json")
    }
    arguments = ["--mode", "cluster", "--host", settings.kfp_host, "--experiment", settings.kfp_experiment]
    arguments += ["--result-file", POD_XCOM, *submit_arguments(request, settings)]
    return KubernetesPodOperator(
        task_id=task_id,
        name="p2-kfp-submit",
        namespace=settings.k8s_namespace,
        image=settings.kfp_image,
        cmds=["python", "/app/pipeline/submit.py"],
        arguments=arguments,
        env_vars={
            "AWS_ENDPOINT_URL_S3": settings.k8s_s3_endpoint_url,
            "AWS_DEFAULT_REGION": "us-east-1",
            # submit.py compiles the pipeline in the pod: its components run in
            # this image too, and get the same S3 endpoint and secret.
            "P2_KFP_IMAGE": settings.kfp_image,
            "P2_CLUSTER_S3_SECRET": settings.k8s_s3_secret,
            "P2_CLUSTER_S3_ENDPOINT_URL": settings.k8s_s3_endpoint_url,
        },
        secrets=[Secret("env", None, settings.k8s_s3_secret)],  # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "100m", "memory": "256Mi"}, limits={"cpu": "500m", "memory": "512Mi"}
        ),
        labels={"app.kubernetes.io/part-of": "p2-airflow-kfp"},
        do_xcom_push=True,
        get_logs=True,
        on_finish_action="delete_pod",
        execution_timeout=timedelta(seconds=settings.pipeline_timeout + 300),
    )
