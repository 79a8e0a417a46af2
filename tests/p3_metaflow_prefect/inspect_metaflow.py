"""Run inside pattern 3's environment by the tests: read Metaflow runs back
through the Metaflow Client (metadata from the shared folder, artifacts from
S3), the way any process would, and print what the tests assert on as JSON.

    python inspect_metaflow.py '{"tags": ["<prefect flow run id>", ...]}'

For each Prefect flow run id: every Metaflow run tagged with it, whether it
succeeded, and for successful runs its artifacts, loaded and used (the model
predicts on the run's own rows).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "patterns" / "p3_metaflow_prefect"))

from settings import P3Settings  # noqa: E402

P3Settings().export_to_environ()

from metaflow import Flow, namespace  # noqa: E402


def describe(run) -> dict:
    out = {"pathspec": run.pathspec, "successful": run.successful, "tags": sorted(run.tags)}
    if not run.successful:
        out["steps"] = sorted(step.id for step in run)
        return out
    end = run["end"].task
    data = end.data
    predictions = data.model.predict(data.x[:25])
    # Every artifact of every step, each loaded from the datastore.
    loaded = {f"{step.id}.{a.id}": type(a.data).__name__ for step in run for a in step.task.artifacts}
    out.update(
        artifacts=sorted(a.id for a in end.artifacts),
        loaded=loaded,
        datastore=end.metadata_dict.get("ds-type"),
        ds_root=end.metadata_dict.get("ds-root"),
        cv_accuracy=float(data.cv_accuracy),
        fold_scores=[float(s) for s in data.fold_scores],
        n_estimators=int(data.n_estimators),
        max_depth=int(data.max_depth),
        data_sha256=data.data_sha256,
        data_url=data.data_url,
        rows=int(data.rows),
        predictions=int(len(predictions)),
        correct=int((predictions == data.y[:25]).sum()),
    )
    return out


def main() -> None:
    request = json.loads(sys.argv[1])
    namespace(None)
    flow = Flow("P3TrainFlow")
    result = {tag: [describe(run) for run in flow.runs(f"prefect_flow_run_id:{tag}")] for tag in request["tags"]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
