"""Run inside pattern 3's environment by the tests: check the scale-out
configuration without a cluster, and print what the tests assert on as JSON.

- scale_out/k8s_job_variables.json is applied to the Kubernetes work pool's
  default base job template (the one Prefect's server offers for
  `prefect work-pool create --type kubernetes`, shipped inside prefect), the
  way a worker renders a flow run's Job: unknown variables are reported.
- scale_out/metaflow_config_kubernetes.json: every key must be a setting
  Metaflow knows.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import metaflow.metaflow_config as metaflow_config
from prefect.utilities.templating import apply_values

SCALE_OUT = Path(__file__).resolve().parents[2] / "patterns" / "p3_metaflow_prefect" / "scale_out"


def kubernetes_template() -> dict:
    views = importlib.resources.files("prefect.server.api.collections_data") / "views/aggregate-worker-metadata.json"
    workers = json.loads(views.read_text())
    [worker] = [w for collection in workers.values() for name, w in collection.items() if name == "kubernetes"]
    return worker["default_base_job_configuration"]


def main() -> None:
    template = kubernetes_template()
    variables = json.loads((SCALE_OUT / "k8s_job_variables.json").read_text())
    known = template["variables"]["properties"]
    values = {name: spec.get("default") for name, spec in known.items()} | variables
    values |= {"name": "p3-train-one-run", "command": "prefect flow-run execute", "labels": {}}
    rendered = apply_values(template["job_configuration"], values)
    container = rendered["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    metaflow = json.loads((SCALE_OUT / "metaflow_config_kubernetes.json").read_text())
    print(
        json.dumps(
            {
                "unknown_job_variables": sorted(set(variables) - set(known)),
                "manifest": rendered["job_manifest"],
                "container": container,
                "unknown_metaflow_keys": sorted(
                    k for k in metaflow if not hasattr(metaflow_config, k.removeprefix("METAFLOW_"))
                ),
                "metaflow": metaflow,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
