"""Pattern 1's loop, end to end: `make pattern-1-loop`.

This script only drives and watches; every decision is made where the pattern
puts it:
- `data.py` publishes a new data version and emits `p1.data.published`;
- Prefect's triggers on the `p1-retrain` deployment (events.py, served by
  `make p1-retrain`) start the retraining on exactly that version;
- the flow's champion gate moves `champion`, or keeps it (flow.py, model.py);
- `flow.py score` checks a batch for drift and emits `p1.drift.detected` (drift.py);
- the endpoint follows `champion` (endpoint.py, `make p1-endpoint`).

The steps: (1) new data like the bundled set: the trigger retrains, the gate
decides; (2) that batch scored: no drift, no event; (3) a batch from a
recalibrated instrument (features x1.5) scored: drift, the event, a retraining
on it, the endpoint on whatever champion the gate left. Then a summary and the
Result line. Each run of the loop publishes new batches, data/batches/loop-N-*.csv
with seed N, one more than the last run's, so a second run retrains too.

    python loop.py [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import httpx

import data
import events
from deploy import DEPLOYMENT
from errors import P1Error, explain
from settings import P1Settings, load_settings

SHIFT = 0.5  # step 3: every feature x1.5
FLOW = "p1-train-register-serve"


def next_run(settings: P1Settings) -> int:
    """N for this run's batches: one more than any loop's so far, in data/batches or in
    the experiment's runs (another checkout, or batches deleted), so step 1 always trains."""
    from mlflow import MlflowClient

    names = [p.name for p in data.BATCHES.glob("loop-*.csv.dvc")]
    experiment = MlflowClient().get_experiment_by_name(settings.experiment_name)
    if experiment is not None:
        runs = MlflowClient().search_runs(
            [experiment.experiment_id], filter_string="tags.dvc_data_path LIKE 'data/batches/loop-%'", max_results=5000
        )
        names += [Path(r.data.tags["dvc_data_path"]).name for r in runs]
    return last_run(names) + 1


def last_run(names: list[str]) -> int:
    return max((int(m.group(1)) for name in names if (m := re.match(r"loop-(\d+)-", name))), default=0)


def claim_run(settings: P1Settings) -> int:
    """next_run's N, claimed: its first batch file created empty, exclusively, so two loops
    started together in one checkout (a local and a compose stack) never share a batch."""
    n = next_run(settings)
    data.BATCHES.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            os.close(os.open(data.BATCHES / f"loop-{n}-fresh.csv", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return n
        except FileExistsError:
            n += 1


def publish(settings: P1Settings, batch: str, seed: int, shift: float, event: bool) -> tuple[str, str, str]:
    """`python data.py publish --batch NAME --seed N --shift S [--no-event]`: (file, md5, event or "")."""
    path = data.BATCHES / f"{batch}.csv"
    data.derive_batch(path, seed, shift)
    version = data.publish_new(path, settings)
    return data.relative_name(version.path), version.md5, data.announce(version) if event else ""


def finished_run(client, deployment_id, event: str, timeout: float):
    """The run of the deployment that the trigger started for `event`, once it completed."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    by_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    deadline = time.monotonic() + timeout
    run = None
    while time.monotonic() < deadline:
        runs = client.read_flow_runs(deployment_filter=by_deployment, limit=50)
        run = next((r for r in runs if r.parameters.get("trigger_event") == event), None)
        if run is not None and run.state is not None and run.state.is_final():
            break
        time.sleep(1)
    else:
        where = f"run {run.id} is {run.state.name}" if run else "no run was created"
        raise P1Error(
            f"the retraining for {event} did not finish within {timeout:.0f} s ({where})",
            "check that p1-retrain is served (`make status`, `make logs SERVICE=p1-retrain`), "
            "or pass a longer --timeout",
        )
    if not run.state.is_completed():
        raise P1Error(
            f"the retraining for {event} ended {run.state.name}: {run.state.message}", "see its logs in the Prefect UI"
        )
    return run


def triggered_run(settings: P1Settings, event: str, timeout: float) -> dict[str, str]:
    """The p1-retrain run the trigger started for `event`, once it ended: its Result line's fields."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"{FLOW}/{DEPLOYMENT}")
        run = finished_run(client, deployment.id, event, timeout)
        by_run = ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]), key=ArtifactFilterKey(any_=["p1-training-summary"])
        )
        artifact = client.read_artifacts(artifact_filter=by_run, limit=1)[0]
    found = re.search(r"^Result: (.*)$", str(artifact.data), re.MULTILINE)
    return dict(field.split("=", 1) for field in found.group(1).split())


def endpoint_on_champion(settings: P1Settings, row_from: str, timeout: float) -> str:
    """Wait until the endpoint serves the registry's champion; one request, answered by it."""
    from mlflow import MlflowClient

    champion = MlflowClient().get_model_version_by_alias(settings.model_name, "champion").version
    base = f"http://127.0.0.1:{settings.endpoint_port}"
    deadline = time.monotonic() + timeout
    serving = None
    while time.monotonic() < deadline:
        try:
            serving = httpx.get(f"{base}/version", timeout=5).json()["version"]
        except (httpx.HTTPError, ValueError, KeyError):
            serving = None
        if serving == champion:
            break
        time.sleep(0.5)
    else:
        raise P1Error(
            f"the endpoint at {base} serves version {serving}, not the champion v{champion}, after {timeout:.0f} s",
            "start it with `make p1-endpoint` (P1_ENDPOINT_PORT), and see `make logs SERVICE=p1-endpoint`",
        )
    import pandas as pd

    row = pd.read_csv(data.PATTERN_DIR / row_from, nrows=1)[data.FEATURES]
    response = httpx.post(
        f"{base}/invocations",
        json={"dataframe_split": {"columns": list(row.columns), "data": row.values.tolist()}},
        timeout=30,
    )
    response.raise_for_status()
    return response.headers["x-model-version"]


def preflight(settings: P1Settings, timeout: float) -> None:
    """What the loop needs before it publishes anything: a champion whose training data a
    drift check can compare with, the endpoint, and the deployment with both triggers (the
    last two just started by make: waited for)."""
    import drift
    from checks import check_mlflow, check_prefect
    from model import champion_version

    check_prefect(settings)
    check_mlflow.fn(settings)
    drift.reference_of(settings, champion_version(settings))
    deadline = time.monotonic() + timeout
    while True:
        try:
            missing = _not_ready(settings)
        except httpx.HTTPError as exc:
            missing = (
                f"the live endpoint does not answer on 127.0.0.1:{settings.endpoint_port} ({exc})",
                "start it with `make p1-endpoint`",
            )
        if missing is None:
            return
        if time.monotonic() > deadline:
            raise P1Error(*missing)
        time.sleep(1)


def _not_ready(settings: P1Settings) -> tuple[str, str] | None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    httpx.get(f"http://127.0.0.1:{settings.endpoint_port}/version", timeout=5).raise_for_status()
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(f"{FLOW}/{DEPLOYMENT}")
        except ObjectNotFound:
            return f"the deployment {FLOW}/{DEPLOYMENT} does not exist", "serve it with `make p1-retrain`"
        automations = client.read_resource_related_automations(f"prefect.deployment.{deployment.id}")
    expected = {events.DATA_PUBLISHED, events.DRIFT_DETECTED}
    triggered_by = {e for a in automations if a.enabled for e in getattr(a.trigger, "expect", set())}
    if not expected <= triggered_by:
        return (
            f"the deployment {DEPLOYMENT} has no trigger on {', '.join(sorted(expected - triggered_by))}",
            "restart it so it registers this flow.py's triggers: `make down && make pattern-1-loop`",
        )
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Pattern 1's loop: new data, drift, retraining, the endpoint following."
    )
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds to wait for each run and swap (default 300)"
    )
    timeout = parser.parse_args(argv).timeout
    settings = load_settings()
    from flow import scoring_flow  # a flow run of its own, in this process: `python flow.py score`

    try:
        preflight(settings, min(timeout, 60))  # the endpoint and the deployment, just started
        n = claim_run(settings)
        print(f"1. New data like the bundled set: data.py publishes it, the trigger retrains on it (loop run {n}).")
        fresh_file, fresh_md5, data_event = publish(settings, f"loop-{n}-fresh", seed=n, shift=0.0, event=True)
        print(f"   {fresh_file} md5={fresh_md5}: emitted {data_event}")
        first = triggered_run(settings, data_event, timeout)
        print(f"   p1-retrain run {first['prefect_flow_run']}: {first['decision']}, champion v{first['champion']}")
        first_answer = endpoint_on_champion(settings, fresh_file, timeout)
        print(f"   the endpoint answers with v{first_answer}")

        print("2. That batch scored: like the champion's training data, no event.")
        calm = scoring_flow(data_file=fresh_file, data_md5=fresh_md5)
        print(f"   drift share {calm['drift']['share']:.0%}: event {calm['event'] or 'none'}")
        if calm["event"]:
            raise P1Error(
                f"the batch like the bundled data drifted from the champion's training data "
                f"(share {calm['drift']['share']:.0%}): champion v{first['champion']} was trained on other data",
                'make a champion trained on data like the bundled set (`make pattern-1 ARGS="--random-state 1"`, '
                "then move @champion in the MLflow UI if the gate keeps the old one), or raise P1_DRIFT_SHARE",
            )

        print("3. A batch from a recalibrated instrument (features x1.5) scored: drift, the event, a retraining.")
        shifted_file, shifted_md5, _ = publish(settings, f"loop-{n}-shifted", seed=n, shift=SHIFT, event=False)
        shifted = scoring_flow(data_file=shifted_file, data_md5=shifted_md5)
        print(
            f"   {shifted_file}: drift share {shifted['drift']['share']:.0%}: emitted {shifted['event'] or 'nothing'}"
        )
        if not shifted["event"]:
            raise P1Error(
                f"the shifted batch did not drift by P1_DRIFT_SHARE={settings.drift_share}", "lower P1_DRIFT_SHARE"
            )
        second = triggered_run(settings, shifted["event"], timeout)
        print(f"   p1-retrain run {second['prefect_flow_run']}: {second['decision']}, champion v{second['champion']}")
        answer = endpoint_on_champion(settings, shifted_file, timeout)
        print(f"   the endpoint answers with v{answer}")
    except Exception as exc:
        error = explain(exc, settings.mlflow_tracking_uri)  # the errors a user can fix, as error/fix
        if error is None:
            raise
        print(error.render(), file=sys.stderr)
        print("Result: pattern=p1 step=loop status=failed", file=sys.stderr)
        return 1
    fields = {
        "pattern": "p1",
        "step": "loop",
        "status": "ok",
        "batches": f"loop-{n}",
        "data_event": data_event,
        "data_run": first["prefect_flow_run"],
        "data_decision": first["decision"],
        "data_endpoint": first_answer,
        "calm_drift": calm["drift"]["share"],
        "drift_share": shifted["drift"]["share"],
        "drift_event": shifted["event"],
        "drift_run": second["prefect_flow_run"],
        "drift_decision": second["decision"],
        "champion": second["champion"],
        "endpoint": answer,
    }
    print(
        "\nPattern 1's loop closed: new data and drift each started a p1-retrain run through its trigger "
        f"(decisions: {first['decision']}, {second['decision']}); the endpoint serves v{answer}."
    )
    print("Result: " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
