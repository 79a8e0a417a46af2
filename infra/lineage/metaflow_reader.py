"""Run by lineage.py inside pattern 3's environment (it needs the metaflow
package): read Metaflow runs back with the Metaflow Client, from the shared
metadata folder and the S3 datastore that pattern 3's settings name, and print
what the lineage needs as one JSON line.

    python metaflow_reader.py '{"pathspecs": ["P3TrainFlow/123"]}'
    python metaflow_reader.py '{"tags": ["prefect_flow_run_id:<flow run id>"]}'
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "patterns" / "p3_metaflow_prefect"))

from settings import load_settings  # noqa: E402

load_settings().export_to_environ()

from metaflow import Flow, Run, namespace  # noqa: E402
from metaflow.exception import MetaflowNotFound  # noqa: E402

FLOW = "P3TrainFlow"


def describe(run) -> dict:
    out = {
        "pathspec": run.pathspec,
        "status": "successful" if run.successful else ("finished, failed" if run.finished else "not finished"),
        "tags": sorted(run.user_tags),
        "created_at": str(run.created_at),
    }
    for step in ("start", "train"):
        try:
            task = run[step].task
        except (KeyError, MetaflowNotFound):
            continue
        if task is None or not task.successful:
            continue
        names = {a.id for a in task.artifacts}
        if step == "start" and "data_sha256" in names:
            out["data_sha256"] = task["data_sha256"].data
            out["data_url"] = task["data_url"].data
        if step == "train" and "model" in names:
            artifact = task["model"]
            # Metaflow's content-addressed store: <datastore root>/<flow>/data/<sha[:2]>/<sha>
            root = artifact._object["location"].removeprefix(":root:").rstrip("/")
            location = f"{root}/{run.path_components[0]}/data/{artifact.sha[:2]}/{artifact.sha}"
            out["model"] = {"pathspec": artifact.pathspec, "sha": artifact.sha, "location": location}
    return out


def main() -> None:
    request = json.loads(sys.argv[1])
    namespace(None)
    runs = []
    for pathspec in request.get("pathspecs", []):
        with contextlib.suppress(MetaflowNotFound):
            runs.append(describe(Run(pathspec)))
    for tag in request.get("tags", []):
        with contextlib.suppress(MetaflowNotFound):
            runs += [describe(run) for run in Flow(FLOW).runs(tag)]
    print(json.dumps({"runs": runs}))


if __name__ == "__main__":
    main()
