"""The pipeline compiles to the IR a KFP server runs: three components with
typed artifacts, the parameters with their types and defaults (declared
once, on the pipeline's signature), one image and nothing pip-installed at
run time, and the committed IR (p2_pipeline.yaml) matches the code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pipeline import IR_PATH, compile_pipeline


@pytest.fixture(scope="module")
def ir(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return yaml.safe_load(compile_pipeline(tmp_path_factory.mktemp("ir") / "p2_pipeline.yaml").read_text())


def _artifacts(definitions: dict) -> dict[str, str]:
    return {k: v["artifactType"]["schemaTitle"] for k, v in definitions.get("artifacts", {}).items()}


def test_parameters_types_and_defaults(ir: dict) -> None:
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert {k: (v["parameterType"], v.get("defaultValue")) for k, v in params.items()} == {
        "dataset_uri": ("STRING", None),
        "export_uri": ("STRING", None),
        "n_estimators": ("NUMBER_INTEGER", 200),
        "max_depth": ("NUMBER_INTEGER", 6),  # 0: no depth limit
        "test_size": ("NUMBER_DOUBLE", 0.25),
        "random_state": ("NUMBER_INTEGER", 42),
        "min_rows_per_class": ("NUMBER_INTEGER", 5),
    }


def test_components_pass_typed_artifacts(ir: dict) -> None:
    comps = ir["components"]
    assert set(comps) == {"comp-validate", "comp-train", "comp-evaluate"}
    assert _artifacts(comps["comp-validate"]["outputDefinitions"]) == {
        "train_set": "system.Dataset",
        "test_set": "system.Dataset",
    }
    assert _artifacts(comps["comp-train"]["inputDefinitions"]) == {"train_set": "system.Dataset"}
    assert _artifacts(comps["comp-train"]["outputDefinitions"]) == {"model": "system.Model"}
    assert _artifacts(comps["comp-evaluate"]["inputDefinitions"]) == {
        "model": "system.Model",
        "test_set": "system.Dataset",
    }
    assert _artifacts(comps["comp-evaluate"]["outputDefinitions"]) == {
        "metrics": "system.Metrics",
        "classification": "system.ClassificationMetrics",
    }
    assert _artifacts(ir["root"]["outputDefinitions"]) == {"Output": "system.Metrics"}
    tasks = ir["root"]["dag"]["tasks"]
    assert tasks["train"]["dependentTasks"] == ["validate"]
    assert sorted(tasks["evaluate"]["dependentTasks"]) == ["train", "validate"]


def test_one_image_nothing_installed_at_run_time(ir: dict) -> None:
    executors = ir["deploymentSpec"]["executors"]
    for executor in executors.values():
        assert executor["container"]["image"] == "p2-kfp-python:0.1.0"
        assert "pip install" not in json.dumps(executor["container"]["command"])
    resources = executors["exec-train"]["container"]["resources"]
    assert resources["resourceCpuRequest"] == "1" and resources["resourceMemoryLimit"] == "4G"
    assert "accelerator" not in resources


def test_committed_ir_is_up_to_date(ir: dict) -> None:
    """`make pattern-2-compile` (`python pipeline.py compile`) writes it; it must match the code."""
    assert ir == yaml.safe_load(Path(IR_PATH).read_text())
