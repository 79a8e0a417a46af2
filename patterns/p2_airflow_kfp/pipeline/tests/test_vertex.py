"""P2_KFP_MODE=vertex: the committed IR as a Vertex AI PipelineJob, built and
checked here without a request (AnonymousCredentials; nothing is submitted,
Google Cloud is never called from these machines)."""

from __future__ import annotations

import argparse

import pytest
import submit
from google.auth.credentials import AnonymousCredentials
from pipeline import IR_PATH
from submit import SubmitError


def _args(**given) -> argparse.Namespace:
    return argparse.Namespace(
        **{
            "run_name": "p2-wine-0123456789ab-m6-n200",
            "dataset_uri": "s3://p2-data/datasets/wine/2026-03-01.csv",
            "export_uri": "s3://p2-data/runs/p2-wine-0123456789ab-m6-n200",
            "pipeline_root": "gs://my-bucket/p2-root",
            "project": "my-project",
            "region": "europe-west4",
        }
        | given
    )


def test_the_committed_ir_becomes_a_vertex_job_with_this_runs_project_region_root_and_parameters() -> None:
    params = {"n_estimators": 200, "max_depth": 6}
    job = submit.vertex_job(_args(), params, IR_PATH, credentials=AnonymousCredentials())
    request = job._gca_resource  # the PipelineJob resource submit() would send
    assert (job.project, job.location) == ("my-project", "europe-west4")
    assert job.job_id == request.display_name == "p2-wine-0123456789ab-m6-n200"  # the id finds a resubmit
    assert request.runtime_config.gcs_output_directory == "gs://my-bucket/p2-root"
    assert dict(request.runtime_config.parameter_values) == {
        "dataset_uri": "s3://p2-data/datasets/wine/2026-03-01.csv",
        "export_uri": "s3://p2-data/runs/p2-wine-0123456789ab-m6-n200",
        "n_estimators": 200,
        "max_depth": 6,
    }
    # the pipeline itself: the committed IR, unchanged
    spec = request.pipeline_spec
    assert spec["pipelineInfo"]["name"] == "p2-wine-training"
    assert set(spec["root"]["dag"]["tasks"]) == {"validate", "train", "evaluate"}
    assert dict(request.labels) == {"pattern": "p2-airflow-kfp"}


def test_vertex_needs_a_gcs_root_a_project_and_a_region() -> None:
    with pytest.raises(SubmitError, match="must be a gs:// URI"):
        submit.vertex_job(_args(pipeline_root="s3://b/root"), {}, IR_PATH, credentials=AnonymousCredentials())
    with pytest.raises(SubmitError, match="vertex mode needs --project and --region"):
        submit.run_remote(_args(mode="vertex", project=""), {})


def test_the_kubernetes_platform_section_is_dropped_for_vertex(tmp_path) -> None:
    """Compiled with cluster mode's S3 secret, the IR has a second document
    (`platforms:`), which Vertex refuses; the job gets the first alone."""
    two = tmp_path / "p2_pipeline.yaml"
    two.write_text(IR_PATH.read_text() + "---\nplatforms:\n  kubernetes:\n    deploymentSpec: {}\n")
    job = submit.vertex_job(_args(), {}, two, credentials=AnonymousCredentials())
    assert job._gca_resource.pipeline_spec["pipelineInfo"]["name"] == "p2-wine-training"
    assert submit.single_document(IR_PATH) == IR_PATH  # the committed IR is one document already
