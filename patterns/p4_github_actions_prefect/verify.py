"""The run stage: trigger this release's deployments, wait for a worker to
run them, and verify what they produced; a run that fails fails the stage
(and the CI job).

    python release.py run    p4-retrain, wait, check the model card; then p4-batch-score

A retry of the pipeline for the same release does not retrain twice: each
run is created with an idempotency key (deployment, release, what ships it:
the source snapshot or the image by its id, attempt), so a
retry finds the run that exists; one that ended FAILED, CRASHED or CANCELLED
gets a new attempt. Prefect owns the runs; S3 holds what they published.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from deploy import check_prefect, prefect_client
from errors import P4Error, say
from release import recorded
from settings import P4Settings

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


# ## Trigger a deployment for this release and wait
def run_key(name: str, built: dict[str, Any], attempt: int) -> str:
    """The idempotency key of a run: the deployment, the release and what ships it.
    One commit can ship as a source snapshot or as an image (and an image can be
    rebuilt): each is a run of its own, so a run of the snapshot never stands in
    for the image's."""
    artifact = f"image-{built['image_id'].removeprefix('sha256:')[:12]}" if built.get("image_id") else "source"
    return f"{name}:{built['release']}:{artifact}:{attempt}"


def run_and_wait(
    settings: P4Settings, name: str, built: dict[str, Any], parameters: dict[str, Any] | None = None
) -> tuple[Any, bool]:
    """One run of `name` for the built release. A retry of the pipeline (same
    release, same artifact) gets the run that already exists, unless it ended
    badly: then a new attempt."""
    release = built["release"]
    started = datetime.now(UTC) - timedelta(seconds=5)
    with prefect_client() as client:
        deployment = client.read_deployment_by_name(name)
        if deployment.version != release:
            raise P4Error(
                f"deployment {name} is at release {deployment.version}, not {release}",
                "deploy this release first (`python release.py deploy`)",
            )
        for attempt in range(1, 4):
            run = client.create_flow_run_from_deployment(
                deployment.id, parameters=parameters or {}, idempotency_key=run_key(name, built, attempt)
            )
            if run.state.type.value not in ("FAILED", "CRASHED", "CANCELLED"):
                break
            say(f"run: attempt {attempt} of {name} for release {release} ended {run.state.type.value}; trying again")
        new = run.created is not None and run.created >= started
        if not new and run.state.type.value == "COMPLETED":
            say(f"run: {name} already ran for release {release} (flow run {run.name}); not running it twice")
            return run, False
        pool = deployment.work_pool_name
        say(f"run: {name} flow run {run.name} ({run.id}) for release {release}; waiting for a worker of {pool}")
        deadline = time.monotonic() + settings.run_timeout
        while run.state.type.value not in FINAL:
            if time.monotonic() > deadline:
                raise P4Error(
                    f"flow run {run.name} is still {run.state.name} after {settings.run_timeout:.0f} s",
                    f"start a worker for pool {pool!r} (`python worker.py p4-worker`), or raise P4_RUN_TIMEOUT",
                )
            time.sleep(1)
            run = client.read_flow_run(run.id)
    if run.state.type.value != "COMPLETED":
        raise P4Error(
            f"flow run {run.name} ({run.id}) of {name} ended {run.state.name}: {run.state.message}",
            "read the flow run's logs in the Prefect UI; nothing was published by a failed run",
        )
    return run, new


# ## The run stage: retrain, check the model, then score with it
def run(settings: P4Settings) -> dict[str, Any]:
    from store import ModelStore  # boto3 and joblib: only the run stage needs them

    check_prefect(settings)
    built = recorded(settings)
    release = built["release"]
    store = ModelStore(settings)
    store.check()
    retrain_run, new = run_and_wait(settings, settings.run_deployment, built)
    card = store.card(release, str(retrain_run.id))
    problems = card_problems(card, built, str(retrain_run.id))
    if not store.exists(card["model_url"]):
        problems.append(f"{card['model_url']} is missing")
    if problems:
        raise P4Error(f"the model of flow run {retrain_run.name} does not check out: {'; '.join(problems)}", "rerun")
    say(f"run: model {card['model_url']} (accuracy {card['metrics']['accuracy']}) from flow run {retrain_run.name}")
    score_run, _ = run_and_wait(settings, settings.score_deployment, built, parameters={"expect_release": release})
    predictions = store.predictions_url(release, str(score_run.id))
    if not store.exists(predictions):
        raise P4Error(f"batch scoring wrote no {predictions}", "read the p4-batch-score run's logs")
    rows = len(store.read_text(predictions).splitlines()) - 1
    return {
        "release": release,
        "mode": built["mode"],
        "retrain_run": retrain_run,
        "new_run": new,
        "card": card,
        "score_run": score_run,
        "predictions": predictions,
        "rows": rows,
    }


def card_problems(card: dict[str, Any], built: dict[str, Any], flow_run_id: str) -> list[str]:
    """What a model card must say when it comes from `flow_run_id` of the release
    the build stage recorded: that release, its commit and, for an image
    release, that the run ran in that image (its id from the deployment, the
    release the image itself carries from its build)."""
    expected = {"release": built["release"], "flow_run_id": flow_run_id, "git_sha": built["git_sha"]}
    expected["image_id"] = built.get("image_id") or None
    if built["mode"] == "image":
        expected["image_release"] = built["release"]
    return [
        f"card field {key}={card.get(key)!r}, expected {want!r}"
        for key, want in expected.items()
        if card.get(key) != want
    ]
