"""Pattern 3: Prefect workers distribute Metaflow runs; Metaflow keeps versions
and lineage on S3.

Who owns what:
- Prefect owns distribution and run state: a work pool, the workers polling
  it, one deployment (`p3-train-one/p3-train`) per Metaflow training run, the
  fan-out flow that submits N of them, crash detection, and the table
  artifact that summarises the fan-out.
- Metaflow owns versions and lineage: each training run's pathspec, its
  parameters (declared once, with their ranges, in trainflow.py), the exact
  dataset it read (with its sha256) and the model, all stored in the S3
  datastore and read back with the Metaflow Client.
- The two are linked both ways: every Metaflow run is tagged
  `prefect_flow_run_id:<id>`, and every Prefect flow run carries the Metaflow
  pathspec in an artifact.

    python flow.py                 deploy, then fan out a grid over the pool's workers
    python flow.py deploy          only create/update the pool, deployment and crash automation
    python flow.py train-one ...   one training run in this process (no worker), for debugging

Around it: cli.py (the command line), deploy.py (pool, deployment, crash
automation), checks.py (pre-flight), keys.py (grid, logical-run key, tags),
fencing.py (a Metaflow run lives only as long as its flow run), dataset.py,
errors.py, settings.py. Workers: `python worker.py NAME`.
"""

from __future__ import annotations

# `python flow.py ...` is the command line (cli.py). It sets the environment
# from the settings first, since Prefect and Metaflow read it when imported.
if __name__ == "__main__":
    import sys

    from cli import main

    sys.exit(main())

import time

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.deployments import run_deployment

from dataset import publish_dataset
from errors import P3Error, describe_failure, fan_out_failed, not_started
from fencing import die_with_parent, run_metaflow
from keys import LINK_TAG, GridPoint, child_key, child_tags, git_commit, logical_run_key, metaflow_tags, parse_grid
from settings import configure

METAFLOW_FLOW = "P3TrainFlow"  # trainflow.py
CHILD_FLOW = "p3-train-one"
DEFAULT_GRID = "50x8,100x8,50x16,100x0"  # N_ESTIMATORSxMAX_DEPTH,... (0: no depth limit)


# ## The fan-out: N deployment runs, resubmit the crashed, read results from S3
@flow(name="p3-fan-out", log_prints=True)
def fan_out(grid: str = DEFAULT_GRID, folds: int = 3, seed: int = 0, run_key: str = "") -> dict:
    """One run of the training deployment per grid point, on whichever workers
    poll the pool; the comparison is read back from Metaflow, not from Prefect."""
    s = configure()
    logger = get_run_logger()
    points = parse_grid(grid)
    data_url, data_version = publish_dataset(s)
    logger.info("dataset %s (sha256 %s)", data_url, data_version[:12])
    deployment = f"{CHILD_FLOW}/{s.deployment}"
    parent_id = str(runtime.flow_run.id)
    logical = logical_run_key(s, data_version, points, folds, seed, run_key, deployment)
    logger.info("logical run %s", logical)
    attempts: dict[int, list] = {i: [] for i in range(len(points))}
    next_try = dict.fromkeys(attempts, 0)

    def submit(i: int) -> None:
        point = points[i]
        while True:
            # Prefect returns the existing flow run for an idempotency key it has
            # seen, so two fan-outs of one logical run share each child (one training).
            child = run_deployment(
                deployment,
                parameters=dict(
                    data_url=data_url,
                    data_version=data_version,
                    n_estimators=point.n_estimators,
                    max_depth=point.max_depth,
                    folds=folds,
                    seed=seed,
                ),
                timeout=0,  # submit now, wait below for all of them together
                tags=child_tags(logical, point),
                idempotency_key=child_key(logical, point, next_try[i]),
            )
            next_try[i] += 1
            if not (child.state and child.state.is_final() and not child.state.is_completed()):
                break
            # An earlier fan-out's try that failed or crashed: train it again.
            logger.info(
                "%s: try %s ended %s earlier, submitting the next", point.label, child.name, child.state.type.value
            )
        attempts[i].append(child.id)
        logger.info("submitted %s as flow run %s (attempt %d)", point.label, child.name, len(attempts[i]))

    for i in attempts:
        submit(i)
    final: dict[int, object] = {}
    deadline = time.monotonic() + s.fan_out_timeout
    with get_client(sync_client=True) as client:
        while len(final) < len(points):
            time.sleep(1.0)
            # One request for every run still open: on two cores the API server's
            # CPU is shared with the runs themselves.
            latest = {i: attempts[i][-1] for i in attempts if i not in final}
            ids = FlowRunFilter(id=FlowRunFilterId(any_=list(latest.values())))
            runs = {r.id: r for r in client.read_flow_runs(flow_run_filter=ids)}
            for i, run_id in latest.items():
                child = runs.get(run_id)
                if child is None or not child.state or not child.state.is_final():
                    continue
                if child.state.is_crashed() and len(attempts[i]) <= s.crash_resubmits:
                    logger.warning("%s crashed (%s): resubmitting", child.name, child.state.message)
                    submit(i)  # the heartbeat automation marked it CRASHED: a live worker takes the next try
                else:
                    final[i] = child
            if len(final) < len(points) and time.monotonic() > deadline:
                waiting = [str(attempts[i][-1]) for i in attempts if i not in final]
                raise P3Error(
                    f"{len(waiting)} run(s) not finished after {s.fan_out_timeout:.0f} s: {', '.join(waiting)}",
                    f"check that workers poll the pool {s.work_pool!r} (`python worker.py NAME`), "
                    "or raise P3_FAN_OUT_TIMEOUT",
                )

    failed = {points[i].label: c for i, c in sorted(final.items()) if not c.state.is_completed()}
    if failed:
        raise fan_out_failed(failed, len(points))
    rows = [collect(points[i], final[i], len(attempts[i]), parent_id) for i in sorted(final)]
    best = max(rows, key=lambda r: r["cv_accuracy"])
    create_table_artifact(
        key="p3-fan-out",
        table=rows,
        description=(
            f"Fan-out of {len(rows)} Metaflow runs on dataset sha256 {data_version[:12]}; "
            f"best: {best['metaflow_pathspec']} ({best['cv_accuracy']:.4f})"
        ),
    )
    return {
        "flow_run_id": parent_id,
        "logical_run": logical,
        "data_url": data_url,
        "data_version": data_version,
        "rows": rows,
        "best": best,
    }


# ## One training run: the deployment's flow, executed by a worker
@flow(name=CHILD_FLOW, log_prints=True)
def train_one(
    data_url: str,
    data_version: str = "",
    n_estimators: int | None = None,
    max_depth: int | None = None,
    folds: int | None = None,
    seed: int | None = None,
) -> dict:
    """Run trainflow.py with Metaflow's CLI and tag the run with this flow run's
    id. A parameter left out takes its default from the Metaflow flow, which
    declares each one with its range and rejects a bad value in `start`."""
    s = configure()  # before Metaflow is imported: it reads its settings then
    from metaflow import Run, namespace

    logger = get_run_logger()
    flow_run_id = str(runtime.flow_run.id)
    worker = worker_of(flow_run_id)
    if worker:
        # A process worker's flow runs are its children: they die with it, as
        # on a lost host, instead of crashing at their next log line after the
        # work is done. Heartbeats stop, the automation marks the run CRASHED
        # and the fan-out resubmits it to a live worker.
        die_with_parent()
    commit = git_commit()
    given = dict(n_estimators=n_estimators, max_depth=max_depth, folds=folds, seed=seed)
    params = {name: value for name, value in given.items() if value is not None}
    logger.info("worker %s starts Metaflow %s with %s", worker or "(none: run in-process)", METAFLOW_FLOW, params)
    status, stdout, stderr, run_id = run_metaflow(
        s,
        dict(data_url=data_url, data_version=data_version, **params),
        metaflow_tags(flow_run_id, commit, worker),
        flow_run_id,
        METAFLOW_FLOW,
    )
    if run_id is None:  # the CLI exited before Metaflow allocated a run id
        raise not_started(METAFLOW_FLOW, stderr)
    namespace(None)
    run = Run(f"{METAFLOW_FLOW}/{run_id}")
    if f"{LINK_TAG}:{flow_run_id}" not in run.tags:
        raise P3Error(
            f"Metaflow run {run.pathspec} does not carry this flow run's tag {LINK_TAG}:{flow_run_id}: "
            "another run was given the same run id",
            "give every process the same P3_METAFLOW_METADATA_DIR (run starts are serialised there)",
        )
    for line in stdout.splitlines()[-8:]:
        logger.info("metaflow: %s", line)
    if status != 0 or not run.successful:
        raise describe_failure(run.pathspec, stderr, s.s3_endpoint_url)
    data = run.data
    create_markdown_artifact(
        markdown=(
            f"**Metaflow run** `{run.pathspec}` (tag `{LINK_TAG}:{flow_run_id}`)\n\n"
            f"| field | value |\n|---|---|\n| cv_accuracy | {data.cv_accuracy:.4f} |\n"
            f"| n_estimators | {data.n_estimators} |\n| max_depth | {data.max_depth} |\n| folds | {data.folds} |\n"
            f"| data | `{data_url}` |\n| data sha256 | `{data.data_sha256}` |\n| worker | {worker or '-'} |\n"
            f"| git commit | `{commit}` |\n"
        ),
        description=f"Metaflow run {run.pathspec}",
    )
    return {"pathspec": run.pathspec, "cv_accuracy": data.cv_accuracy, "data_sha256": data.data_sha256}


# ## Reading results back: Metaflow holds them, found by their Prefect tag
def collect(point: GridPoint, child, attempts: int, parent_id: str) -> dict:
    """Read one finished run back through the Metaflow Client (artifacts from S3),
    found by its Prefect tag: exactly one successful Metaflow run per flow run.
    `reused_from`: the fan-out that submitted the child, when it is another one."""
    from metaflow import Flow, namespace

    submitted_by = ""
    if child.parent_task_run_id:
        with get_client(sync_client=True) as client:
            submitted_by = str(client.read_task_run(child.parent_task_run_id).flow_run_id)

    namespace(None)
    runs = [r for r in Flow(METAFLOW_FLOW).runs(f"{LINK_TAG}:{child.id}") if r.successful]
    if len(runs) != 1:
        raise P3Error(
            f"flow run {child.name} ({child.id}) has {len(runs)} successful Metaflow runs tagged {LINK_TAG}:{child.id}",
            "expected exactly one: check that every process shares P3_METAFLOW_METADATA_DIR and P3_METAFLOW_S3_ROOT",
        )
    data = runs[0].data
    return {
        "grid": point.label,
        "metaflow_pathspec": runs[0].pathspec,
        "n_estimators": data.n_estimators,
        "max_depth": data.max_depth,
        "cv_accuracy": round(float(data.cv_accuracy), 4),
        "data_sha256": data.data_sha256,
        "prefect_flow_run": child.name,
        "prefect_flow_run_id": str(child.id),
        "worker": (child.labels or {}).get("prefect.worker.name", ""),
        "attempts": attempts,
        "reused_from": submitted_by if submitted_by and submitted_by != parent_id else "",
    }


def worker_of(flow_run_id: str) -> str:
    """The worker that claimed this flow run (its label); empty when none did."""
    with get_client(sync_client=True) as client:
        labels = client.read_flow_run(flow_run_id).labels or {}
    return str(labels.get("prefect.worker.name", ""))
