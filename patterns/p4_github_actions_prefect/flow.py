"""Pattern 4's flows: what the CI/CD pipeline ships and Prefect runs.

    python flow.py retrain        one retraining run, here, without a deployment
    python flow.py batch-score    score data/batch.csv with the model in service

prefect.yaml declares two deployments of these flows: `p4-retrain` (weekly,
and after every deploy) and `p4-batch-score` (on demand). GitHub Actions (or
`make pattern-4`) builds a release, runs `prefect deploy` and triggers
`p4-retrain` (release.py, deploy.py, verify.py); a worker of the deployment's
work pool runs it.

Who owns what: Prefect owns the schedule and the run state (deployments,
flow runs, retries) and checks each run's parameters against the ranges
declared below; S3 holds the models and predictions (store.py); git owns the
code, and the release id (the git SHA) links the three: it is the
deployment's version, the image tag, a tag on every flow run and a field of
every model card.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import deployment as current_deployment
from prefect.runtime import flow_run as current_flow_run
from pydantic import Field

from errors import P4Error
from settings import PATTERN_DIR, load_settings
from store import ModelStore
from train import fit_and_evaluate, predict, read_csv


# ## Retraining: train, gate on held-out accuracy, publish
@task
def train(data_file: str, n_estimators: int, max_depth: int, test_size: float) -> tuple[Any, dict, Any]:
    data = read_csv(_data_path(data_file))
    model, metrics = fit_and_evaluate(data, n_estimators=n_estimators, max_depth=max_depth, test_size=test_size)
    return model, metrics, data


@task
def publish(model: Any, card: dict[str, Any]) -> dict[str, Any]:
    return ModelStore(load_settings()).save_model(model, card)


@flow(name="p4-retrain", log_prints=True)
def retrain(
    n_estimators: Annotated[int, Field(ge=1, le=2000)] = 200,
    max_depth: Annotated[int, Field(ge=0, le=64)] = 0,  # 0: no depth limit
    test_size: Annotated[float, Field(gt=0.05, lt=0.9)] = 0.25,
    min_accuracy: Annotated[float, Field(ge=0.0, le=1.0)] = 0.85,
    data_file: str = "data/wine.csv",
) -> dict[str, Any]:
    """Retrain the wine classifier, gate it on held-out accuracy, and publish it
    as the model in service. A model below `min_accuracy` is not published."""
    store = ModelStore(load_settings())
    store.check()
    origin = release_of_this_run()
    model, metrics, data = train(data_file, n_estimators, max_depth, test_size)
    if metrics["accuracy"] < min_accuracy:
        raise P4Error(
            f"held-out accuracy {metrics['accuracy']} is below min_accuracy={min_accuracy}; nothing was published",
            "improve the model or lower min_accuracy in prefect.yaml",
        )
    card = publish(
        model,
        origin
        | where_this_runs()
        | {
            "code_dir": str(PATTERN_DIR),
            "data_file": data_file,
            "data_sha256": data.sha256,
            "features": data.features,
            "metrics": metrics,
            "params": {"n_estimators": n_estimators, "max_depth": max_depth, "test_size": test_size},
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    create_markdown_artifact(
        key="p4-model", markdown=model_summary(card), description="The model this run trained and published"
    )
    get_run_logger().info(
        "published %s (accuracy %s, release %s)", card["model_url"], metrics["accuracy"], card["release"]
    )
    return card


# ## Batch scoring
@flow(name="p4-batch-score", log_prints=True)
def batch_score(batch_file: str = "data/batch.csv", expect_release: str | None = None) -> dict[str, Any]:
    """Score a CSV with the model in service; write the predictions next to it.
    `expect_release` makes the run fail unless the model in service comes from
    that release (the CD pipeline passes the release it just deployed)."""
    store = ModelStore(load_settings())
    store.check()
    origin = release_of_this_run()
    card = store.card()
    if expect_release and card["release"] != expect_release:
        raise P4Error(
            f"the model in service comes from release {card['release']}, not {expect_release}",
            "run the p4-retrain deployment of that release first",
        )
    model = store.load_model(card)
    batch = read_csv(_data_path(batch_file), with_target=False)
    labels = predict(model, card["features"], batch)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*batch.features, "prediction"])
    for row, label in zip(batch.X.tolist(), labels.tolist(), strict=True):
        writer.writerow([*row, label])
    url = store.save_predictions(origin["release"], origin["flow_run_id"], out.getvalue())
    counts = {str(k): labels.tolist().count(k) for k in sorted(set(labels.tolist()))}
    print(f"scored {len(labels)} rows of {batch_file} with {card['model_url']}: {counts} -> {url}")
    return origin | {"rows": len(labels), "predictions_url": url, "model_url": card["model_url"], "counts": counts}


# ## Where a run comes from
# A deployed run knows its release from the deployment's version and its
# commit from the `git:` tag prefect.yaml puts on it; an ad hoc run has neither.
def release_of_this_run() -> dict[str, Any]:
    tags = list(current_flow_run.tags or [])
    git = next((t.removeprefix("git:") for t in tags if t.startswith("git:")), None)
    return {
        "release": current_deployment.version or "adhoc",
        "git_sha": git,
        "deployment": current_deployment.name,
        "flow_run_id": str(current_flow_run.id),
        "flow_run_name": current_flow_run.name,
    }


def where_this_runs() -> dict[str, Any]:
    """What the run's code came from: the image (Docker pools) or the source
    snapshot. P4_IMAGE_RELEASE is baked into the image (and only there);
    P4_IMAGE_ID and P4_RELEASE_ARTIFACT come from the deployment."""
    return {
        "artifact": os.environ.get("P4_RELEASE_ARTIFACT", "working copy (ad hoc run)"),
        "image_id": os.environ.get("P4_IMAGE_ID") or None,
        "image_release": os.environ.get("P4_IMAGE_RELEASE"),
        "uid": os.getuid(),
        "python": sys.executable,
    }


def _data_path(relative: str) -> Path:
    # Relative to the release's code (the working directory a worker pulled), so
    # a deployed run reads the data that shipped with its commit.
    path = Path(relative)
    return path if path.is_absolute() else PATTERN_DIR / path


def model_summary(card: dict[str, Any]) -> str:
    """The flow run's artifact in the Prefect UI: where the model came from."""
    metrics = card["metrics"]
    return (
        f"### Model published\n\n| field | value |\n|---|---|\n| release | `{card['release']}` |\n"
        f"| git commit | `{card['git_sha']}` |\n| built as | `{card['artifact']}` |\n"
        f"| image id | `{card['image_id'] or '-'}` |\n"
        f"| data sha256 | `{card['data_sha256'][:16]}…` |\n| accuracy | {metrics['accuracy']} |\n"
        f"| f1 (macro) | {metrics['f1_macro']} |\n| model | `{card['model_url']}` |\n"
    )


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "retrain"
    try:
        if command == "retrain":
            print(retrain())
        elif command == "batch-score":
            print(batch_score())
        else:
            raise SystemExit(f"usage: python flow.py [retrain|batch-score] (got {command!r})")
    except P4Error as exc:
        raise SystemExit(exc.render()) from None
