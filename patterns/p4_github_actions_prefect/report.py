"""The pull request's report: what this branch's code and data train, beside the
model in service, as markdown and a confusion-matrix PNG.

    python report.py [--out DIR]     DIR/report.md + DIR/confusion_matrix.png (make p4-report;
                                     default DIR: P4_STATE_DIR/report)

p4-cd.yml's pull-request job runs `make p4-report` and posts report.md as a
comment with CML (`cml comment create`); a reviewer sees the same file locally.
It trains as the p4-retrain deployment would (the flow's defaults under
prefect.yaml's parameters), here, with no Prefect server. The model in service
(the store's latest.json) is scored on the same held-out rows when the store
answers; when it does not (a pull request from a fork gets no secrets), the
report says why instead of failing: the branch's own numbers stand alone.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError
from sklearn.metrics import confusion_matrix

from errors import P4Error, say
from settings import PATTERN_DIR, load_settings
from train import fit_and_evaluate, read_csv, scores, split

REPORT, PICTURE = "report.md", "confusion_matrix.png"


def retrain_parameters() -> dict[str, Any]:
    """What the p4-retrain deployment runs with: its flow's defaults, then prefect.yaml's."""
    from deploy import load_prefect_file
    from flow import retrain

    defaults = {n: p.default for n, p in inspect.signature(retrain.fn).parameters.items()}
    [spec] = [d for d in load_prefect_file()["deployments"] if d["name"] == "p4-retrain"]
    return defaults | (spec.get("parameters") or {})


def in_service(data, X_test: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:
    """The model in service scored on the branch's held-out rows, or why it could not be."""
    from store import ModelStore

    try:
        settings = load_settings()
    except SystemExit as exc:  # no store configured (the job's variables unset): no comparison
        return {"why_not": f"the model store is not configured ({str(exc).splitlines()[0].removeprefix('error: ')})"}
    try:
        store = ModelStore(settings)
        store.check()
        card = store.card()
        if card["features"] != data.features:
            return {"card": card, "why_not": f"its features {card['features']} are not this branch's"}
        predicted = store.load_model(card).predict(X_test)
    except P4Error as exc:
        return {"why_not": exc.problem}
    except (BotoCoreError, ClientError) as exc:
        return {"why_not": f"the model store did not answer ({exc})"}
    return {"card": card, "metrics": scores(y_test, predicted)}


def draw(matrix: np.ndarray, labels: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3.4), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels)
    ax.set(xlabel="predicted", ylabel="true", title="this branch, held-out rows")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def build(out: Path) -> dict[str, Any]:
    params = retrain_parameters()
    data = read_csv(PATTERN_DIR / params["data_file"])
    model, metrics = fit_and_evaluate(
        data, n_estimators=params["n_estimators"], max_depth=params["max_depth"], test_size=params["test_size"]
    )
    _, X_test, _, y_test = split(data, test_size=params["test_size"])
    labels = [str(k) for k in sorted(set(y_test.tolist()))]
    matrix = confusion_matrix(y_test, model.predict(X_test))
    serving = in_service(data, X_test, y_test)
    gate = "passes" if metrics["accuracy"] >= params["min_accuracy"] else "FAILS"
    lines = [
        "## p4-retrain on this branch",
        "",
        f"Data `{params['data_file']}` (sha256 `{data.sha256[:12]}`), {metrics['n_train']} rows to train, "
        f"{metrics['n_test']} held out. Parameters: "
        + ", ".join(f"`{k}={params[k]}`" for k in ("n_estimators", "max_depth", "test_size")),
        "",
        "| model | accuracy | f1_macro |",
        "|---|---|---|",
        f"| this branch | {metrics['accuracy']} | {metrics['f1_macro']} |",
    ]
    if "metrics" in serving:
        card = serving["card"]
        lines.append(
            f"| in service (release `{card['release'][:12]}`) | {serving['metrics']['accuracy']} | "
            f"{serving['metrics']['f1_macro']} |"
        )
    lines += [
        "",
        f"The gate `min_accuracy={params['min_accuracy']}` {gate}.",
        "In service: scored on the same held-out rows."
        if "metrics" in serving
        else f"No comparison with the model in service: {serving['why_not']}.",
        "",
        f"![confusion matrix]({PICTURE})",
        "",
    ]
    out.mkdir(parents=True, exist_ok=True)
    draw(matrix, labels, out / PICTURE)
    (out / REPORT).write_text("\n".join(lines))
    return {
        "accuracy": metrics["accuracy"],
        "gate": gate,
        "in_service": serving.get("metrics"),
        "matrix": matrix.tolist(),
        "report": out / REPORT,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    state = Path(os.environ.get("P4_STATE_DIR") or PATTERN_DIR / ".state")  # read raw: the settings may be unset
    parser.add_argument("--out", type=Path, default=state / "report")
    args = parser.parse_args(argv)
    try:
        done = build(args.out)
    except P4Error as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    say(f"report: {done['report']} and {done['report'].parent / PICTURE}")
    print(
        f"Result: status=ok accuracy={done['accuracy']} gate={done['gate']} "
        f"in_service={done['in_service']['accuracy'] if done['in_service'] else 'none'} report={done['report']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
