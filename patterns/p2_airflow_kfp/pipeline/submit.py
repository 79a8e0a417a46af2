"""Pattern 2: submit one training run of the KFP pipeline and wait for it.

Airflow calls this in the KFP environment, never imports it: locally as a
subprocess of this folder's interpreter, on a cluster as the command of a
KubernetesPodOperator pod whose image holds this environment.

    python submit.py --mode local   --run-name NAME --dataset-uri s3://... --export-uri s3://... [--params-json '{...}']
    python submit.py --mode cluster --host URL ...   (kfp.Client against a KFP API server)
    python submit.py --mode vertex --project P --region R --pipeline-root gs://... ...
                                                     (the same IR as a Vertex AI PipelineJob)

Every mode gives the same answer: one JSON object, printed on the last line
after `P2_SUBMIT_RESULT ` and, with --result-file, written there too (the pod
writes /airflow/xcom/return.json, which the KubernetesPodOperator turns into
XCom). The metrics themselves live in the run record the pipeline's
evaluate step writes under --export-uri (metrics.json, model.joblib).

Idempotency: the run name is derived by Airflow from the dataset's sha256
and the training parameters (handoff.run_name). On a cluster, KFP's own run
store answers "does a run with this name exist?" (a running one is waited
for, a succeeded one reused); on Vertex AI the name is the job id. kfp.local
keeps no run store, so this script keeps its own record: `run.json` under the
export URI, written only after the run succeeded. Same name, record present:
the run is reused, nothing executes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

RESULT_PREFIX = "P2_SUBMIT_RESULT "
RECORD = "run.json"
# A component's exception, as its traceback's last line prints it.
EXCEPTION_LINE = re.compile(r"^\s*(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception)): (.+)$", re.MULTILINE)
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # kfp.local colours its log lines


class SubmitError(RuntimeError):
    """The run failed or could not be submitted; the message says why."""


# ## S3: the run record
def _split(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri.removeprefix("s3://"):
        raise SubmitError(f"{uri!r} is not an s3://bucket/prefix URI")
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    return bucket, prefix.rstrip("/")


def read_record(export_uri: str) -> dict | None:
    import boto3
    from botocore.exceptions import ClientError

    bucket, prefix = _split(export_uri)
    try:
        body = boto3.client("s3").get_object(Bucket=bucket, Key=f"{prefix}/{RECORD}")["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    return json.loads(body)


def write_record(export_uri: str, record: dict) -> None:
    import boto3

    bucket, prefix = _split(export_uri)
    boto3.client("s3").put_object(
        Bucket=bucket,
        Key=f"{prefix}/{RECORD}",
        Body=json.dumps(record, indent=2).encode(),
        ContentType="application/json",
    )


def check_same_params(record: dict, params: dict, export_uri: str) -> None:
    if record.get("params") != params:
        raise SubmitError(
            f"run {record['run_name']} already exists with other parameters "
            f"({record.get('params')}, asked for {params}); delete {export_uri}/{RECORD} to train again"
        )


# ## Local mode: kfp.local's SubprocessRunner
class _Tee(io.TextIOBase):
    """Keep what the components print (kfp.local relays their output to
    sys.stdout) while still showing it."""

    def __init__(self, stream):
        self.stream, self.buffer = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.buffer.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def component_error(output: str) -> str:
    """The last exception a component raised, as `Type: message`."""
    found = EXCEPTION_LINE.findall(output)
    return f"{found[-1][0]}: {found[-1][1]}" if found else ""


def run_local(args: argparse.Namespace, params: dict) -> dict:
    from kfp import local
    from pipeline import wine_training

    root = Path(args.pipeline_root).resolve() / args.run_name
    root.mkdir(parents=True, exist_ok=True)
    # use_venv=False: components run with this interpreter and its locked
    # packages; nothing is installed at run time.
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    tee = _Tee(sys.stdout)
    try:
        with contextlib.redirect_stdout(tee):
            task = wine_training(dataset_uri=args.dataset_uri, export_uri=args.export_uri, **params)
    except Exception as exc:  # kfp.local raises RuntimeError naming the failed task
        failed = ANSI.sub("", str(exc))
        raise SubmitError(f"{failed} {component_error(ANSI.sub('', tee.buffer.getvalue()))}".strip()) from exc
    metrics = task.output  # the pipeline's output: the evaluate step's Metrics artifact
    return {"run_id": f"local-{uuid.uuid4().hex[:12]}", "state": "SUCCEEDED", "kfp_metrics": dict(metrics.metadata)}


# ## Cluster mode: kfp.Client against a KFP API server
def run_cluster(args: argparse.Namespace, params: dict) -> tuple[dict, bool]:
    import kfp
    from pipeline import compile_pipeline

    client = kfp.Client(host=args.host, namespace=args.namespace or None)
    name_filter = json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": args.run_name}]}
    )
    found = client.list_runs(filter=name_filter, sort_by="created_at desc", page_size=1).runs or []
    active = [r for r in found if r.state in ("PENDING", "RUNNING", "SUCCEEDED", "PAUSED")]
    if active:
        run_id, reused = active[0].run_id, True
        print(f"reusing KFP run {run_id} ({active[0].state}) named {args.run_name}")
    else:
        package = compile_pipeline(Path(tempfile.mkdtemp()) / "p2_pipeline.yaml")
        run = client.create_run_from_pipeline_package(
            str(package),
            arguments={"dataset_uri": args.dataset_uri, "export_uri": args.export_uri, **params},
            run_name=args.run_name,
            experiment_name=args.experiment,
        )
        run_id, reused = run.run_id, False
        print(f"submitted KFP run {run_id} named {args.run_name}")
    finished = wait_for_run(client, run_id, timeout=args.timeout)
    return {"run_id": run_id, "state": finished.state}, reused


# KFP's run states (v2beta1 RuntimeState). kfp.Client.wait_for_run_completion
# (kfp 2.17) stops only on succeeded/failed/skipped/error: a canceled run would
# be waited on until the timeout, so this loop ends on cancelation too.
RUNNING_STATES = frozenset({"RUNTIME_STATE_UNSPECIFIED", "PENDING", "RUNNING", "PAUSED", ""})
CANCELED_STATES = frozenset({"CANCELING", "CANCELED"})


class RunEnded(SubmitError):
    """The KFP run ended without succeeding; `state` is how (FAILED, CANCELED, ...)."""

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state


def wait_for_run(client, run_id: str, timeout: float, poll: float = 5.0, clock=time.monotonic, sleep=time.sleep):
    """Poll `client.get_run` until the run ends: its record when it succeeded,
    RunEnded(state) when it failed, was skipped or was canceled (CANCELING
    counts: nothing will succeed after it), SubmitError past `timeout` seconds."""
    deadline = clock() + timeout
    while True:
        run = client.get_run(run_id)
        state = str(run.state or "")
        if state == "SUCCEEDED":
            return run
        if state in CANCELED_STATES:
            raise RunEnded(f"KFP run {run_id} was canceled ({state}); submit it again to train", "CANCELED")
        if state not in RUNNING_STATES:
            error = getattr(run, "error", None)
            reason = getattr(error, "message", None) or error or ""
            raise RunEnded(f"KFP run {run_id} ended {state}: {reason}".rstrip(": "), state)
        if clock() >= deadline:
            raise SubmitError(f"KFP run {run_id} still {state or 'PENDING'} after {timeout:g} s (--timeout)")
        sleep(poll)


# ## Vertex AI Pipelines: the same compiled IR, submitted with google-cloud-aiplatform
def vertex_job(args: argparse.Namespace, params: dict, package: Path, credentials=None):
    """The PipelineJob for this run: the job id is the run name, so a second submit
    of the same run finds the first one (Vertex refuses a duplicate id). Built
    without a request; `credentials=None` is Application Default Credentials."""
    from google.cloud.aiplatform.pipeline_jobs import PipelineJob

    if not args.pipeline_root.startswith("gs://"):
        raise SubmitError(f"--pipeline-root {args.pipeline_root!r} must be a gs:// URI for Vertex AI Pipelines")
    package = single_document(package)
    return PipelineJob(
        display_name=args.run_name,
        template_path=str(package),
        job_id=args.run_name,
        pipeline_root=args.pipeline_root,
        parameter_values={"dataset_uri": args.dataset_uri, "export_uri": args.export_uri, **params},
        project=args.project,
        location=args.region,
        enable_caching=False,
        labels={"pattern": "p2-airflow-kfp"},
        credentials=credentials,
    )


def single_document(package: Path) -> Path:
    """The IR without its Kubernetes platform section: kfp-kubernetes (the S3 secret
    of cluster mode) writes a second YAML document, which Vertex refuses ("expected
    a single document in the stream"); Vertex has no use for Kubernetes secrets."""
    import yaml

    documents = [d for d in yaml.safe_load_all(package.read_text()) if d is not None]
    if len(documents) == 1:
        return package
    first = package.with_name(f"{package.stem}.vertex.yaml")
    first.write_text(yaml.safe_dump(documents[0], sort_keys=False))
    return first


def run_vertex(args: argparse.Namespace, params: dict) -> tuple[dict, bool]:
    from google.api_core.exceptions import AlreadyExists
    from google.cloud.aiplatform.pipeline_jobs import PipelineJob
    from pipeline import compile_pipeline

    job = vertex_job(args, params, compile_pipeline(Path(tempfile.mkdtemp()) / "p2_pipeline.yaml"))
    try:
        job.submit(service_account=args.service_account or None)
        reused = False
        print(f"submitted Vertex AI pipeline job {job.resource_name}")
    except AlreadyExists:
        name = f"projects/{args.project}/locations/{args.region}/pipelineJobs/{args.run_name}"
        job, reused = PipelineJob.get(name, project=args.project, location=args.region), True
        print(f"reusing Vertex AI pipeline job {name}")
    deadline = time.monotonic() + args.timeout
    while (state := job.state.name) not in VERTEX_ENDED:
        if time.monotonic() >= deadline:
            raise SubmitError(f"Vertex AI job {job.resource_name} still {state} after {args.timeout:g} s (--timeout)")
        time.sleep(15)
    if state != "PIPELINE_STATE_SUCCEEDED":
        ended = "CANCELED" if state in ("PIPELINE_STATE_CANCELLED", "PIPELINE_STATE_CANCELLING") else "FAILED"
        error = job._gca_resource.error.message  # PipelineJob has no `error` property; its resource does
        raise RunEnded(f"Vertex AI job {job.resource_name} ended {state}: {error}".rstrip(": "), ended)
    return {"run_id": job.resource_name, "state": "SUCCEEDED"}, reused


VERTEX_ENDED = frozenset(
    {"PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED", "PIPELINE_STATE_CANCELLING"}
)


# ## Command line
def pipeline_params() -> dict[str, type]:
    """The pipeline's parameters and their types, as its signature declares
    them (dataset_uri and export_uri have options of their own)."""
    import inspect

    from pipeline import wine_training

    signature = inspect.signature(wine_training.pipeline_func)
    return {n: p.annotation for n, p in signature.parameters.items() if n not in ("dataset_uri", "export_uri")}


def parse_params(text: str) -> dict:
    """The pipeline parameters, as JSON: only known names, each of its type."""
    params = json.loads(text or "{}")
    if not isinstance(params, dict):
        raise SubmitError(f"--params-json must be a JSON object, got {text!r}")
    known = pipeline_params()
    for key, value in params.items():
        kind = known.get(key)
        if kind is None:
            raise SubmitError(f"unknown pipeline parameter {key!r}; known: {sorted(known)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
            raise SubmitError(f"pipeline parameter {key}={value!r} must be a {kind.__name__}")
        params[key] = kind(value)
    return params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Submit pattern 2's KFP pipeline and wait for it.")
    parser.add_argument("--mode", choices=["local", "cluster", "vertex"], default="local")
    parser.add_argument("--run-name", required=True)
    parser.add_argument("--dataset-uri", required=True)
    parser.add_argument("--export-uri", required=True)
    parser.add_argument("--params-json", default="{}", help='pipeline parameters, e.g. {"n_estimators": 50}')
    parser.add_argument(
        "--origin-json",
        default="{}",
        help="what submitted the run (DAG run, data sha256, git commit): kept in run.json",
    )
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--pipeline-root", default=str(Path.cwd() / "local_outputs"), help="local mode: a folder; vertex: gs://..."
    )
    parser.add_argument("--project", default="", help="vertex mode: the Google Cloud project")
    parser.add_argument("--region", default="", help="vertex mode: the Vertex AI region, e.g. europe-west4")
    parser.add_argument("--service-account", default="", help="vertex mode: the jobs' service account")
    parser.add_argument("--host", default="", help="cluster mode: the KFP API URL")
    parser.add_argument("--namespace", default="")
    parser.add_argument("--experiment", default="p2-airflow-kfp")
    parser.add_argument("--result-file", type=Path)
    args = parser.parse_args(argv)

    started = time.monotonic()
    result: dict = {
        "run_name": args.run_name,
        "mode": args.mode,
        "export_uri": args.export_uri,
        "dataset_uri": args.dataset_uri,  # lineage: the run record names the data it trained on
    }
    try:
        params = parse_params(args.params_json)
        result["params"] = params
        result["origin"] = json.loads(args.origin_json or "{}")
        with run_lock(args):
            record = read_record(args.export_uri)
            _run_or_reuse(args, params, record, result)
    except Exception as exc:
        result |= {
            "state": exc.state if isinstance(exc, RunEnded) else "FAILED",
            "error": f"{exc}" if isinstance(exc, SubmitError) else f"{type(exc).__name__}: {exc}",
        }
    result["seconds"] = round(time.monotonic() - started, 2)
    text = json.dumps(result)
    if args.result_file:
        args.result_file.parent.mkdir(parents=True, exist_ok=True)
        args.result_file.write_text(text)
    print(RESULT_PREFIX + text, flush=True)
    return 0 if result["state"] == "SUCCEEDED" else 1


@contextlib.contextmanager
def run_lock(args: argparse.Namespace):
    """Local mode: one execution per run name at a time on this machine. A
    second submit of the same run (a double trigger, or the retry of a DAG run
    whose Airflow process died while this one still runs) waits here, then
    finds the first one's record and reuses it. Cluster mode needs no lock:
    KFP's run store answers for running runs."""
    if args.mode != "local":
        yield
        return
    import fcntl

    root = Path(args.pipeline_root).resolve() / args.run_name
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".submit.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"run {args.run_name} is being executed by another submit; waiting for it", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run_or_reuse(args: argparse.Namespace, params: dict, record: dict | None, result: dict) -> None:
    """Reuse the run's record (same parameters only), or execute the run and write it."""
    if record is not None:
        check_same_params(record, params, args.export_uri)
        print(f"run {args.run_name} already succeeded ({record['run_id']}): reusing it, nothing executes")
        result |= {"run_id": record["run_id"], "state": record["state"], "reused": True}
    else:
        if args.mode == "local":
            outcome, reused = run_local(args, params), False
        else:  # cluster or vertex
            outcome, reused = run_remote(args, params)
        result |= outcome | {"reused": reused, "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
        write_record(args.export_uri, result)


def run_remote(args: argparse.Namespace, params: dict) -> tuple[dict, bool]:
    if args.mode == "vertex":
        if not (args.project and args.region):
            raise SubmitError("vertex mode needs --project and --region (P2_VERTEX_PROJECT, P2_VERTEX_REGION)")
        return run_vertex(args, params)
    if not args.host:
        raise SubmitError("cluster mode needs --host (the KFP API URL)")
    return run_cluster(args, params)


if __name__ == "__main__":
    sys.exit(main())
