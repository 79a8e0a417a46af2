"""Pattern 3's scale-out path, checked without a cluster: the Kubernetes work
pool's job variables render into a Job through Prefect's own default
Kubernetes base job template, and the Metaflow profile for @kubernetes names
only settings Metaflow knows."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import PATTERNS, in_env

P3 = PATTERNS / "p3_metaflow_prefect"
RENDER = Path(__file__).with_name("render_scale_out.py")


def test_kubernetes_job_and_metaflow_profile_render() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("P3_", "METAFLOW_", "VIRTUAL_ENV"))}
    done = in_env(P3, "python", str(RENDER), env=env, timeout=300)
    assert done.returncode == 0, done.output[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["unknown_job_variables"] == [], "job variables the Kubernetes pool's template does not define"
    manifest, container = out["manifest"], out["container"]
    assert manifest["kind"] == "Job" and manifest["metadata"]["namespace"] == "prefect"
    assert manifest["spec"]["backoffLimit"] == 0, "Prefect resubmits; Kubernetes must not retry the pod itself"
    spec = manifest["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "prefect-worker" and spec["restartPolicy"] == "Never"
    assert container["image"].endswith(":<git sha>")
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    # Crash detection and the shared store travel with every pod.
    assert container["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"
    assert container["env"]["METAFLOW_PROFILE"] == "k8s"
    assert {"P3_S3_ENDPOINT_URL", "P3_METAFLOW_S3_ROOT"} <= set(container["env"])

    assert out["unknown_metaflow_keys"] == [], "settings Metaflow would ignore"
    metaflow = out["metaflow"]
    assert metaflow["METAFLOW_DEFAULT_METADATA"] == "service", "local metadata only works on one machine"
    assert metaflow["METAFLOW_DEFAULT_DATASTORE"] == "s3"
    assert metaflow["METAFLOW_KUBERNETES_CONTAINER_IMAGE"] == container["image"]
